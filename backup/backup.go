// Package backup writes and restores a consistent snapshot of a CA: its
// directory (metadata, certificates, keys as stored, CRLs, profiles, audit
// log), its store copied in one read transaction, and the front-ends'
// state from the data dir. It works while `qpki serve` runs: the server
// supplies the snapshots of the files it holds.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Snapshotter writes a consistent copy of a file that a process holds
// open (a bbolt database), by its name relative to its directory.
type Snapshotter func(w io.Writer) error

// Sources are what goes into a backup.
type Sources struct {
	CADir   string
	DataDir string // optional
	// Held maps "ca/<file>" or "data/<file>" to the snapshotter of a file
	// that must not be copied raw (ca/ca.db, data/acme.db, ...).
	Held map[string]Snapshotter
}

// skipped are never backed up: sockets, the queue's own store (jobs in
// flight are recorded in the CA store and resubmitted by their clients),
// temporary files.
func skipped(rel string) bool {
	base := path.Base(rel)
	return strings.HasSuffix(base, ".sock") || strings.HasPrefix(base, ".") ||
		rel == "data/queue" || strings.HasPrefix(rel, "data/queue/") || strings.HasPrefix(rel, "data/tls/")
}

// Write writes a gzip-compressed tar archive of the sources.
func Write(w io.Writer, src Sources) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := time.Now()
	if err := addTree(tw, "ca", src.CADir, src.Held, now); err != nil {
		return err
	}
	if src.DataDir != "" {
		if _, err := os.Stat(src.DataDir); err == nil {
			if err := addTree(tw, "data", src.DataDir, src.Held, now); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addTree(tw *tar.Writer, prefix, dir string, held map[string]Snapshotter, now time.Time) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := path.Join(prefix, filepath.ToSlash(rel))
		if rel == "." {
			return nil
		}
		if skipped(name) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		if snap, ok := held[name]; ok {
			// Snapshot to a temporary file first: tar needs the size.
			tmp, err := os.CreateTemp("", "qpki-backup-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			if err := snap(tmp); err != nil {
				return fmt.Errorf("snapshot of %s: %w", name, err)
			}
			size, _ := tmp.Seek(0, io.SeekCurrent)
			tmp.Seek(0, io.SeekStart)
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(info.Mode().Perm()), Size: size, ModTime: now}); err != nil {
				return err
			}
			_, err = io.Copy(tw, tmp)
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, info.Size())
		return err
	})
}

// maxFile bounds one restored file.
const maxFile = 16 << 30

// Restore unpacks a backup into caDir and dataDir, which must not exist
// or be empty. Everything is unpacked into a staging directory first, so
// a bad archive leaves nothing behind.
func Restore(r io.Reader, caDir, dataDir string) error {
	for _, d := range []string{caDir, dataDir} {
		if d == "" {
			continue
		}
		if entries, err := os.ReadDir(d); err == nil && len(entries) > 0 {
			return fmt.Errorf("%s exists and is not empty", d)
		}
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(caDir)), 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Clean(caDir)), ".qpki-restore-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a qpki backup: %v", err)
	}
	tr := tar.NewReader(gz)
	sawMeta := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("corrupt backup: %v", err)
		}
		name := path.Clean(h.Name)
		if path.IsAbs(name) || strings.HasPrefix(name, "..") || !(strings.HasPrefix(name, "ca/") || strings.HasPrefix(name, "data/") || name == "ca" || name == "data") {
			return fmt.Errorf("corrupt backup: unexpected entry %q", h.Name)
		}
		dst := filepath.Join(stage, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxFile {
				return fmt.Errorf("corrupt backup: entry %s of %d bytes", name, h.Size)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode).Perm()|0o600)
			if err != nil {
				return err
			}
			_, err = io.CopyN(f, tr, h.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("corrupt backup: %s: %v", name, err)
			}
			os.Chmod(dst, os.FileMode(h.Mode).Perm())
			if name == "ca/ca.meta.json" {
				sawMeta = true
			}
		default:
			return fmt.Errorf("corrupt backup: entry %s has an unsupported type", name)
		}
	}
	if !sawMeta {
		return errors.New("not a qpki backup: no ca/ca.meta.json")
	}
	// The archive's own mode for the CA dir does not count: a CA dir is
	// its owner's alone (ca.DirMode).
	if err := os.Chmod(filepath.Join(stage, "ca"), 0o700); err != nil {
		return err
	}
	if err := moveInto(filepath.Join(stage, "ca"), caDir); err != nil {
		return err
	}
	if dataDir != "" {
		if _, err := os.Stat(filepath.Join(stage, "data")); err == nil {
			return moveInto(filepath.Join(stage, "data"), dataDir)
		}
	}
	return nil
}

func moveInto(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dst)), 0o755); err != nil {
		return err
	}
	os.Remove(dst) // an empty directory
	return os.Rename(src, dst)
}
