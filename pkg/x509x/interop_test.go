package x509x

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	der, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, der)
}

// Every trust anchor made by OpenSSL 3.5 and Bouncy Castle parses and its
// self-signature verifies.
func TestInteropTrustAnchors(t *testing.T) {
	tas, err := filepath.Glob(filepath.Join(interopDir, "*", "*_ta.der"))
	if err != nil || len(tas) != 21 {
		t.Fatalf("found %d trust anchors (%v), want 21", len(tas), err)
	}
	for _, path := range tas {
		base := filepath.Base(path)
		t.Run(base, func(t *testing.T) {
			ta := readCert(t, path)
			a, err := KeyAlgorithm(ta)
			if err != nil {
				t.Fatal(err)
			}
			// File names carry the algorithm's OID.
			if info := a.Info(); info.OID != nil && !strings.Contains(base, info.OID.String()) {
				t.Errorf("key algorithm %s (%s) does not match the file name", a, info.OID)
			}
			if err := CheckSignatureFrom(ta, ta); err != nil {
				t.Fatalf("self-signature: %v", err)
			}
			chain, err := Verify(ta, nil, []*x509.Certificate{ta}, fixedNow)
			if err != nil || len(chain) != 1 {
				t.Fatalf("Verify: %v", err)
			}
			if strings.HasPrefix(base, "catalyst") {
				primary, alt := VerifyCatalyst(ta, ta)
				if primary != nil || alt != nil {
					t.Fatalf("catalyst: primary %v, alternative %v", primary, alt)
				}
				altPub, err := AltPublicKey(ta)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := algo.Of(altPub); got != algo.MLDSA44 {
					t.Fatalf("alternative key is %s, want ml-dsa-44", got)
				}
			} else if _, alt := VerifyCatalyst(ta, ta); !errors.Is(alt, ErrNotCatalyst) {
				t.Fatalf("non-Catalyst TA: alternative result %v", alt)
			}
		})
	}
}

// The ML-KEM end-entity certificates chain to the ML-DSA trust anchors.
func TestInteropMLKEMEndEntities(t *testing.T) {
	for _, c := range []struct{ kem, dsa string }{
		{"ml-kem-512", "ml-dsa-44"}, {"ml-kem-768", "ml-dsa-65"}, {"ml-kem-1024", "ml-dsa-87"},
	} {
		ees, _ := filepath.Glob(filepath.Join(interopDir, "ossl35", c.kem+"-*_ee.der"))
		tas, _ := filepath.Glob(filepath.Join(interopDir, "ossl35", c.dsa+"-*_ta.der"))
		if len(ees) != 1 || len(tas) != 1 {
			t.Fatalf("%s: missing files", c.kem)
		}
		ee, ta := readCert(t, ees[0]), readCert(t, tas[0])
		if a, err := KeyAlgorithm(ee); err != nil || string(a) != c.kem {
			t.Fatalf("EE key %s, %v", a, err)
		}
		chain, err := Verify(ee, nil, []*x509.Certificate{ta}, fixedNow)
		if err != nil || len(chain) != 2 {
			t.Fatalf("%s: %v", c.kem, err)
		}
		// At a time outside the TA's validity the chain is refused.
		if _, err := Verify(ee, nil, []*x509.Certificate{ta}, fixedNow.AddDate(-2, 0, 0)); err == nil || !strings.Contains(err.Error(), "not valid before") {
			t.Fatalf("before validity: %v", err)
		}
	}
}
