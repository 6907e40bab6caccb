package profile

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// pqBuiltinWant is what each post-quantum and hybrid built-in must
// produce; builtinWant holds the classical ones.
var pqBuiltinWant = map[string]struct {
	alg      algo.Algorithm
	algs     []algo.Algorithm
	mode     Mode
	ca       bool
	pathLen  int
	validity time.Duration
	ku       x509.KeyUsage
	eku      []x509.ExtKeyUsage
	vars     map[string]string
}{
	"ml/root-ca":                  {"ml-dsa-87", nil, "", true, -1, 20 * 365 * day, caKU, nil, map[string]string{"cn": "PQ Root"}},
	"ml/issuing-ca":               {"ml-dsa-65", nil, "", true, 0, 10 * 365 * day, caKU, nil, map[string]string{"cn": "PQ Issuing"}},
	"ml/tls-server":               {"ml-dsa-65", nil, "", false, -1, 365 * day, x509.KeyUsageDigitalSignature, serverAuth, map[string]string{"cn": "www.example.com"}},
	"ml/tls-client":               {"ml-dsa-65", nil, "", false, -1, 365 * day, x509.KeyUsageDigitalSignature, clientAuth, map[string]string{"cn": "alice"}},
	"ml/signing":                  {"ml-dsa-65", nil, "", false, -1, 365 * day, x509.KeyUsageDigitalSignature, codeSigning, map[string]string{"cn": "Release Signing"}},
	"ml/encryption":               {"ml-kem-768", nil, "", false, -1, 365 * day, x509.KeyUsageKeyEncipherment, nil, map[string]string{"cn": "alice", "emails": "alice@example.com"}},
	"slh/root-ca":                 {"slh-dsa-sha2-256s", nil, "", true, -1, 20 * 365 * day, caKU, nil, map[string]string{"cn": "SLH Root"}},
	"slh/issuing-ca":              {"slh-dsa-sha2-128f", nil, "", true, 0, 10 * 365 * day, caKU, nil, map[string]string{"cn": "SLH Issuing"}},
	"slh/tls-server":              {"slh-dsa-sha2-128f", nil, "", false, -1, 365 * day, x509.KeyUsageDigitalSignature, serverAuth, map[string]string{"cn": "www.example.com"}},
	"slh/signing":                 {"slh-dsa-sha2-128s", nil, "", false, -1, 365 * day, x509.KeyUsageDigitalSignature, codeSigning, map[string]string{"cn": "Release Signing"}},
	"hybrid/catalyst/root-ca":     {"ecdsa-p384", []algo.Algorithm{"ecdsa-p384", "ml-dsa-87"}, ModeCatalyst, true, -1, 20 * 365 * day, caKU, nil, map[string]string{"cn": "Hybrid Root"}},
	"hybrid/catalyst/issuing-ca":  {"ecdsa-p384", []algo.Algorithm{"ecdsa-p384", "ml-dsa-65"}, ModeCatalyst, true, 0, 10 * 365 * day, caKU, nil, map[string]string{"cn": "Hybrid Issuing"}},
	"hybrid/catalyst/tls-server":  {"ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeCatalyst, false, -1, 365 * day, x509.KeyUsageDigitalSignature, serverAuth, map[string]string{"cn": "www.example.com"}},
	"hybrid/catalyst/tls-client":  {"ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeCatalyst, false, -1, 365 * day, x509.KeyUsageDigitalSignature, clientAuth, map[string]string{"cn": "alice"}},
	"hybrid/catalyst/signing":     {"ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeCatalyst, false, -1, 365 * day, x509.KeyUsageDigitalSignature, codeSigning, map[string]string{"cn": "Release Signing"}},
	"hybrid/composite/root-ca":    {"composite-mldsa87-ecdsa-p384", []algo.Algorithm{"ecdsa-p384", "ml-dsa-87"}, ModeComposite, true, -1, 20 * 365 * day, caKU, nil, map[string]string{"cn": "Composite Root"}},
	"hybrid/composite/issuing-ca": {"composite-mldsa65-ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeComposite, true, 0, 10 * 365 * day, caKU, nil, map[string]string{"cn": "Composite Issuing"}},
	"hybrid/composite/tls-server": {"composite-mldsa65-ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeComposite, false, -1, 365 * day, x509.KeyUsageDigitalSignature, serverAuth, map[string]string{"cn": "www.example.com"}},
	"hybrid/composite/tls-client": {"composite-mldsa65-ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeComposite, false, -1, 365 * day, x509.KeyUsageDigitalSignature, clientAuth, map[string]string{"cn": "alice"}},
	"hybrid/composite/encryption": {"composite-mlkem768-x25519", nil, "", false, -1, 365 * day, x509.KeyUsageKeyEncipherment, nil, map[string]string{"cn": "alice", "emails": "alice@example.com"}},
	"hybrid/composite/signing":    {"composite-mldsa65-ecdsa-p256", []algo.Algorithm{"ecdsa-p256", "ml-dsa-65"}, ModeComposite, false, -1, 365 * day, x509.KeyUsageDigitalSignature, codeSigning, map[string]string{"cn": "Release Signing"}},
}

const caKU = x509.KeyUsageCertSign | x509.KeyUsageCRLSign

var (
	serverAuth  = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientAuth  = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	codeSigning = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
)

var (
	pqKeysMu sync.Mutex
	pqKeys   = map[algo.Algorithm]crypto.PublicKey{}
)

// pqKey returns a public key of algorithm a, made once per test binary.
func pqKey(t *testing.T, a algo.Algorithm) crypto.PublicKey {
	t.Helper()
	pqKeysMu.Lock()
	defer pqKeysMu.Unlock()
	if k, ok := pqKeys[a]; ok {
		return k
	}
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pqKeys[a] = pub
	return pub
}

func TestPQBuiltins(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for name, w := range pqBuiltinWant {
		t.Run(name, func(t *testing.T) {
			p := mustLoad(t, name)
			if fs := Lint(p); len(fs) > 0 {
				t.Errorf("lint findings: %v", fs)
			}
			if p.Algorithm != w.alg || p.IsCA() != w.ca || p.PathLen() != w.pathLen || p.Validity != w.validity || p.Mode != w.mode {
				t.Errorf("algorithm %s mode %q ca %v pathLen %d validity %s", p.Algorithm, p.Mode, p.IsCA(), p.PathLen(), p.Validity)
			}
			if w.algs != nil && !reflect.DeepEqual(p.Algorithms, w.algs) {
				t.Errorf("algorithms %v, want %v", p.Algorithms, w.algs)
			}
			if p.Lint.Enabled != p.IsCA() || p.Lint.CABF {
				t.Errorf("lint %+v, want enabled for CA profiles only, without cabf", p.Lint)
			}
			for _, std := range []string{VarCN, VarO, VarOU, VarC, VarValidity} {
				if p.Var(std) == nil {
					t.Errorf("standard variable %s not declared", std)
				}
			}
			// Every allowed algorithm is of the default algorithm's kind.
			for _, a := range p.AllowedAlgorithms {
				if a.Family() != p.Algorithm.Family() {
					t.Errorf("allowed algorithm %s is not of the %s family", a, p.Algorithm.Family())
				}
			}

			vals, err := p.Resolve(w.vars)
			if err != nil {
				t.Fatal(err)
			}
			in := Input{Values: vals, PublicKey: pqKey(t, p.Algorithm), Now: now}
			if p.Mode == ModeCatalyst {
				in.AltPublicKeyAlgorithm = p.Algorithms[1]
			}
			tmpl, err := p.Apply(in)
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.KeyUsage != w.ku {
				t.Errorf("key usage %b, want %b", tmpl.KeyUsage, w.ku)
			}
			if !reflect.DeepEqual(tmpl.ExtKeyUsage, w.eku) {
				t.Errorf("EKU %v, want %v", tmpl.ExtKeyUsage, w.eku)
			}
			if !tmpl.BasicConstraintsValid || tmpl.IsCA != w.ca {
				t.Errorf("basic constraints valid %v isCA %v", tmpl.BasicConstraintsValid, tmpl.IsCA)
			}
			if w.ca && w.pathLen == 0 && !(tmpl.MaxPathLen == 0 && tmpl.MaxPathLenZero) {
				t.Errorf("pathLen %d zero %v, want 0", tmpl.MaxPathLen, tmpl.MaxPathLenZero)
			}
			if got := tmpl.NotAfter.Sub(tmpl.NotBefore) + time.Second; got != w.validity {
				t.Errorf("validity %s, want %s", got, w.validity)
			}
			if len(tmpl.SubjectKeyId) != 20 {
				t.Errorf("subject key id %x", tmpl.SubjectKeyId)
			}
		})
	}
}

// The profiles refuse keys of other kinds, naming the algorithm.
func TestPQBuiltinsRefuseOtherKeys(t *testing.T) {
	for _, c := range []struct {
		profile string
		key     algo.Algorithm
		alt     algo.Algorithm
		want    string
	}{
		{"ml/encryption", algo.MLDSA65, "", "ml-dsa-65 is not allowed"},
		{"hybrid/composite/encryption", algo.MLKEM768, "", "ml-kem-768 is not allowed"},
		{"ml/tls-server", algo.MLKEM768, "", "ml-kem-768 is not allowed"},
		{"ml/tls-server", algo.ECDSAP256, "", "ecdsa-p256 is not allowed"},
		{"slh/tls-server", algo.MLDSA65, "", "ml-dsa-65 is not allowed"},
		{"hybrid/composite/tls-server", algo.MLDSA65, "", "ml-dsa-65 is not allowed"},
		{"hybrid/catalyst/tls-server", algo.MLDSA65, "", "ml-dsa-65 is not allowed"},
		{"hybrid/catalyst/tls-server", algo.ECDSAP256, algo.MLKEM768, "alternative key algorithm ml-kem-768 is not allowed"},
		{"ml/tls-server", algo.MLDSA65, algo.MLDSA44, "needs a catalyst profile"},
	} {
		p := mustLoad(t, c.profile)
		vals, err := p.Resolve(map[string]string{"cn": "x.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Apply(Input{Values: vals, PublicKey: pqKey(t, c.key), AltPublicKeyAlgorithm: c.alt})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %s/%q: %v, want %q", c.profile, c.key, c.alt, err, c.want)
		}
	}
}
