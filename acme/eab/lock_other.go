//go:build !unix

package eab

import "os"

// Without flock, the CLI and the server must not change keys at the same
// moment; writes stay atomic.
func lock(*os.File) error   { return nil }
func unlock(*os.File) error { return nil }
