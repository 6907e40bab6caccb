package ca

import (
	"os"
	"testing"

	"github.com/qpki/qpki/pkg/hsm/hsmtest"
)

// TestMain declares the SoftHSM2 tokens of the HSM tests: "ca-hsm" for most,
// and two tokens labelled alike for token selection. hsmtest creates them
// on first use only, so the other tests run without SoftHSM2.
func TestMain(m *testing.M) {
	os.Exit(hsmtest.Run(m, "ca-hsm", "ca-twin", "ca-twin"))
}
