package server

import (
	"io"
	"net/http"

	"github.com/qpki/qpki/backup"
	"github.com/qpki/qpki/pkg/ca"
)

// Snapshotter is a front-end that holds files in the data dir open (a
// bbolt database) and can copy them consistently for a backup. Keys are
// "data/<file>".
type Snapshotter interface {
	Snapshots() map[string]backup.Snapshotter
}

// BackupSources are what a backup of this CA contains, with the files the
// process holds open snapshotted instead of copied.
func BackupSources(c *ca.CA, dataDir string, fronts ...Frontend) backup.Sources {
	held := map[string]backup.Snapshotter{"ca/" + ca.StoreFile: c.SnapshotStore}
	for _, f := range fronts {
		if s, ok := f.(Snapshotter); ok {
			for k, v := range s.Snapshots() {
				held[k] = v
			}
		}
	}
	return backup.Sources{CADir: c.Dir, DataDir: dataDir, Held: held}
}

// backupHandler streams a backup of the served CA and data dir.
func (s *Server) backupHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/gzip")
	src := BackupSources(s.Core.CA, s.Core.cfg.DataDir, s.fronts...)
	if err := backup.Write(w, src); err != nil {
		// The status line is gone; cut the stream so the client sees a
		// broken archive rather than a short one.
		s.Core.cfg.Log.Error("backup failed", "error", err)
		panic(http.ErrAbortHandler)
	}
}

// Backup streams a backup from the server into w.
func (c *Client) Backup(w io.Writer) error {
	resp, err := c.hc.Get("http://qpki/v1/backup")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errorFrom(resp)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
