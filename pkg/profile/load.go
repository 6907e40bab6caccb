package profile

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// builtins holds builtin/<family>/<name>.yaml; adding a file adds a
// profile.
//
//go:embed builtin
var builtins embed.FS

const (
	builtinDir = "builtin"
	ext        = ".yaml"
	// ProfilesDir is the folder of a CA directory whose files override the
	// built-in profiles.
	ProfilesDir = "profiles"
	// SourceBuiltin marks a profile embedded in the binary.
	SourceBuiltin = "builtin"
)

// Load finds a profile by name ("ec/tls-server"):
// <caDir>/profiles/<name>.yaml overrides the embedded built-in. caDir may
// be empty. A file whose name: field disagrees with its path is an error.
func Load(name, caDir string) (*Profile, error) {
	if !profileNameRE.MatchString(name) {
		return nil, fmt.Errorf("profile name %q: want family/name, e.g. ec/tls-server", name)
	}
	if caDir != "" {
		file := filepath.Join(caDir, ProfilesDir, filepath.FromSlash(name)+ext)
		p, err := loadFile(file)
		if err == nil {
			return named(p, name)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	data, err := Builtin(name)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("built-in %w", err)
	}
	p.Source = SourceBuiltin
	return named(p, name)
}

func named(p *Profile, name string) (*Profile, error) {
	if p.Name != "" && p.Name != name {
		return nil, fmt.Errorf("profile %s (%s) says its name is %q", name, p.Source, p.Name)
	}
	p.Name = name
	return p, nil
}

// LoadFile reads a profile file, e.g. for `qpki profile lint FILE`. A
// profile without a name: field is named after the file.
func LoadFile(file string) (*Profile, error) {
	p, err := loadFile(file)
	if err != nil {
		return nil, err
	}
	if p.Name == "" {
		p.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	return p, nil
}

func loadFile(file string) (*Profile, error) {
	data, err := readLimited(file, MaxProfileSize)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	p.Source = file
	return p, nil
}

func readLimited(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", file)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, limit)
	}
	return data, nil
}

// Builtin returns the YAML of a built-in profile.
func Builtin(name string) ([]byte, error) {
	if !profileNameRE.MatchString(name) {
		return nil, fmt.Errorf("profile name %q: want family/name, e.g. ec/tls-server", name)
	}
	data, err := builtins.ReadFile(path.Join(builtinDir, name+ext))
	if err != nil {
		return nil, fmt.Errorf("unknown profile %q (see `qpki profile list`)", name)
	}
	return data, nil
}

// BuiltinNames lists the built-in profiles, sorted.
func BuiltinNames() []string {
	var names []string
	_ = fs.WalkDir(builtins, builtinDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ext) {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(p, builtinDir+"/"), ext))
		}
		return nil
	})
	return names // WalkDir visits in lexical order
}

// List describes the built-in profiles and those of caDir's profiles
// folder (when caDir is not empty), sorted by name. A profile that does
// not parse is listed with its error.
func List(caDir string) ([]Summary, error) {
	byName := map[string]Summary{}
	for _, name := range BuiltinNames() {
		data, _ := Builtin(name)
		p, err := Parse(data)
		byName[name] = summarize(name, SourceBuiltin, false, p, err)
	}
	if caDir != "" {
		root := filepath.Join(caDir, ProfilesDir)
		err := filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
			if err != nil {
				if file == root && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(file, ext) {
				return nil
			}
			rel, err := filepath.Rel(root, file)
			if err != nil {
				return err
			}
			name := strings.TrimSuffix(filepath.ToSlash(rel), ext)
			if !profileNameRE.MatchString(name) {
				return nil // not a loadable name; Load would refuse it too
			}
			_, builtin := byName[name]
			p, err := loadFile(file)
			if err == nil {
				p, err = named(p, name)
			}
			byName[name] = summarize(name, file, builtin, p, err)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]Summary, 0, len(byName))
	for _, s := range byName {
		out = append(out, s)
	}
	sortSummaries(out)
	return out, nil
}
