package server

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// The pipeline's runtime settings apply unless the environment sets them.
func TestRuntimeSettings(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	reserveProcsForSync()
	tuneGC()
	if defaultProcs > 0 && runtime.GOMAXPROCS(0) != defaultProcs+syncProcs {
		t.Errorf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), defaultProcs+syncProcs)
	}
	got := debug.SetGCPercent(100)
	if want := gcPercent; gcFromEnv {
		t.Logf("GOGC comes from the environment: GC percent %d", got)
	} else if got != want {
		t.Errorf("GC percent %d, want %d", got, want)
	}
}
