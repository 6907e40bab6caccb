//go:build unix && !linux

package atomicfile

import "syscall"

// SyncFS makes durable everything written so far (all file systems: there
// is no per-file-system call here).
func SyncFS(dir string) error {
	syscall.Sync()
	return nil
}
