//go:build unix

// Package cpuclock reads the CPU time the process has used, for
// benchmarks that report CPU per operation next to their rate.
package cpuclock

import (
	"syscall"
	"time"
)

// Used is the CPU time the process has used so far, user and system,
// across all its threads (a PKCS#11 module loaded in-process included).
func Used() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
