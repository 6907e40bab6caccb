package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// SyncFS makes durable everything written to the file system that holds
// dir, in one call: the files WriteUnsynced wrote there among them.
func SyncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
