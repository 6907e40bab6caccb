package keyfile

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/qpki/qpki/pkg/algo"
)

// Info describes one key file found by List.
type Info struct {
	File      string `json:"file"`
	Algorithm string `json:"algorithm,omitempty"`
	Encrypted bool   `json:"encrypted"`
	Error     string `json:"error,omitempty"`
}

// List describes the private key files (*.key, *.pem holding a private
// key) under dir. Encrypted keys are listed without decrypting them.
func List(dir string) ([]Info, error) {
	var out []Info
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (filepath.Ext(path) != ".key" && filepath.Ext(path) != ".pem") {
			return nil
		}
		fi, err := d.Info()
		if err != nil || fi.Size() > 4*algo.MaxKeyDER {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		info := Info{File: rel, Encrypted: IsEncrypted(data)}
		if info.Encrypted {
			out = append(out, info)
			return nil
		}
		key, err := Decode(data, nil)
		if err != nil {
			if filepath.Ext(path) == ".pem" {
				return nil // a certificate or CSR, not a key
			}
			info.Error = err.Error()
		} else if pub, err := algo.PublicKey(key); err == nil {
			if a, err := algo.Of(pub); err == nil {
				info.Algorithm = string(a)
			}
		}
		out = append(out, info)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, err
}
