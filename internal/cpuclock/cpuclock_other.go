//go:build !unix

package cpuclock

import "time"

// Used is not measured here: it is always 0.
func Used() time.Duration { return 0 }
