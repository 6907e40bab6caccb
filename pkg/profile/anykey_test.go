package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

var (
	anyKeysOnce sync.Once
	anyKeys     map[string]crypto.Signer
)

// rsaAndECKeys are one key of each type the any/ profiles take, and two
// they refuse.
func rsaAndECKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	anyKeysOnce.Do(func() {
		anyKeys = map[string]crypto.Signer{}
		for _, bits := range []int{2048, 3072, 4096} {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			anyKeys["rsa-"+strconv.Itoa(bits)] = k
		}
		p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		anyKeys["ecdsa-p256"], anyKeys["ecdsa-p384"], anyKeys["ecdsa-p521"], anyKeys["ed25519"] = p256, p384, p521, ed
	})
	return anyKeys
}

// TestAnyProfilesKeyUsageByKeyType: one profile issues for RSA and ECDSA
// keys from a CSR, with keyEncipherment for RSA server keys only, and refuses
// other key types naming the allowed algorithms.
func TestAnyProfilesKeyUsageByKeyType(t *testing.T) {
	keys := rsaAndECKeys(t)
	for _, name := range []string{"any/tls-server", "any/tls-client"} {
		p := mustLoad(t, name)
		for _, alg := range []string{"rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"} {
			t.Run(name+"/"+alg, func(t *testing.T) {
				csr := testCSR(t, keys[alg], "host.example.com")
				tmpl, err := p.Apply(Input{CSR: csr})
				if err != nil {
					t.Fatal(err)
				}
				want := x509.KeyUsageDigitalSignature
				if strings.HasPrefix(alg, "rsa-") && name == "any/tls-server" {
					want |= x509.KeyUsageKeyEncipherment
				}
				c := sign(t, tmpl, keys[alg].Public())
				if c.KeyUsage != want {
					t.Fatalf("key usage %b for a %s key, want %b", c.KeyUsage, alg, want)
				}
				if e := findExt(c, oidKeyUsage); e == nil || !e.Critical {
					t.Fatal("keyUsage missing or not critical")
				}
			})
		}
		for _, alg := range []string{"ed25519", "ecdsa-p521"} {
			t.Run(name+"/refuses-"+alg, func(t *testing.T) {
				_, err := p.Apply(Input{CSR: testCSR(t, keys[alg], "host.example.com")})
				if err == nil {
					t.Fatalf("a %s key was accepted", alg)
				}
				for _, allowed := range []algo.Algorithm{algo.RSA2048, algo.RSA3072, algo.RSA4096, algo.ECDSAP256, algo.ECDSAP384} {
					if !strings.Contains(err.Error(), string(allowed)) {
						t.Errorf("error %q does not name the allowed %s", err, allowed)
					}
				}
			})
		}
	}
}

func testCSR(t *testing.T, key crypto.Signer, cn string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
