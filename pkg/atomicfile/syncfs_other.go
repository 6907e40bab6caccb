//go:build !linux

package atomicfile

import "os"

// Without syncfs(2), WriteUnsynced syncs each file as Write does, and
// SyncFS has only the directory left to sync.
const haveSyncFS = false

func syncfs(d *os.File) error { return d.Sync() }
