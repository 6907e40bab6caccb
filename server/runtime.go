package server

import (
	"os"
	"runtime"
	"runtime/debug"
)

// syncProcs is how many Ps the pipeline adds for goroutines blocked in
// fsync: the store's commit of new jobs and the recorder's commit of
// results (with its audit append) sync at the same time under load.
const syncProcs = 2

// defaultProcs is GOMAXPROCS as the runtime chose it (the usable CPUs),
// or 0 when the GOMAXPROCS environment variable set it.
var defaultProcs = func() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return runtime.GOMAXPROCS(0)
}()

// reserveProcsForSync sets GOMAXPROCS to syncProcs more than the runtime's
// default, unless the GOMAXPROCS environment variable sets it. A goroutine
// blocked in fsync keeps its P until the scheduler takes it back, which it
// does late when other Ps look idle; with two commits syncing on a
// two-core machine, nothing else ran meanwhile and a core sat idle about
// a fifth of the time. BenchmarkPipeline measured 1,450 to 1,730
// certificates/s at the default and 2,000 to 2,300 with two more Ps.
func reserveProcsForSync() {
	if defaultProcs > 0 && runtime.GOMAXPROCS(0) != defaultProcs+syncProcs {
		runtime.GOMAXPROCS(defaultProcs + syncProcs)
	}
}

// gcPercent is the GOGC the pipeline runs with unless the GOGC
// environment variable sets it. The pipeline allocates much and keeps
// little (a job's messages, records and certificate are garbage once it is
// recorded), so collecting half as often saves CPU for a bounded cost in
// memory. BenchmarkPipeline (4 runs each, alternating): 1,026 µs of CPU
// per certificate at GOGC=100 and 950 at 200; BenchmarkServeBatch: peak
// RSS 176 MB and 247 MB. GOMEMLIMIT caps the heap for those who need it.
const gcPercent = 200

var gcFromEnv = os.Getenv("GOGC") != ""

func tuneGC() {
	if !gcFromEnv {
		debug.SetGCPercent(gcPercent)
	}
}
