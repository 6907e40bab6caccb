package jobspec

import (
	"crypto/sha256"
	"sync"
)

// A worker checks every signature it makes before it publishes the
// result; the recorder checks the result's signatures again, since a
// result may come from any process that can publish results. When both
// run in one process (serve with --workers), the second check of the same
// signature only halves the rate of fast signers: the worker vouches for
// the result payloads it checked, and the recorder of the same process
// skips the signature check (never the check of what the result says)
// for a payload vouched for. The set lives in memory only: nothing that
// travels over the queue can put a payload into it.

// maxVouched bounds the set (results not recorded here, when the recorder
// runs elsewhere, would otherwise accumulate).
const maxVouched = 4096

var vouched = struct {
	sync.Mutex
	m map[[32]byte]struct{}
}{m: map[[32]byte]struct{}{}}

// Vouch records that this process made and checked the signatures in a
// result payload.
func Vouch(payload []byte) {
	k := sha256.Sum256(payload)
	vouched.Lock()
	defer vouched.Unlock()
	if len(vouched.m) >= maxVouched {
		for old := range vouched.m {
			delete(vouched.m, old)
			break
		}
	}
	vouched.m[k] = struct{}{}
}

// Vouched reports, once, whether this process vouched for payload.
func Vouched(payload []byte) bool {
	k := sha256.Sum256(payload)
	vouched.Lock()
	defer vouched.Unlock()
	_, ok := vouched.m[k]
	delete(vouched.m, k)
	return ok
}
