// Command gen writes N batch lines for hsmbench.sh: one P-256 CSR, N ids.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
)

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "bench.example.com"}, DNSNames: []string{"bench.example.com"}}, key)
	if err != nil {
		panic(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	enc := json.NewEncoder(os.Stdout)
	for i := 0; i < n; i++ {
		enc.Encode(map[string]any{"id": fmt.Sprintf("line-%d", i), "profile": "ec/tls-server", "csr": csr})
	}
}
