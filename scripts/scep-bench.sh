#!/usr/bin/env bash
# SCEP PKIOperation enrollments/s and p50/p99 with 32 concurrent clients
# (scep.BenchmarkPKIOperation: RSA-2048 client keys, AES-256-CBC,
# SHA-256, a static challenge): qpki serve, then step-ca's SCEP
# provisioner driven by the same client in the same run, both with an
# ECDSA P-384 CA and an RSA-2048 decrypter (the RA). step-ca is built with
# `go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2`
# (CGO_ENABLED=0) unless STEP_CA points at a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== qpki serve (scep/, $n enrollments)"
go test -run '^$' -bench BenchmarkPKIOperation -benchtime "${n}x" ./scep/ | grep -E 'Benchmark|ok'

step=${STEP_CA:-}
if [ -z "$step" ]; then
	GOBIN="$work/bin" CGO_ENABLED=0 go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2
	step="$work/bin/step-ca"
fi
d="$work/step"
mkdir -p "$d"
openssl ecparam -name secp384r1 -genkey -noout -out "$d/root.key" 2>/dev/null
openssl req -new -x509 -key "$d/root.key" -subj "/CN=step bench root" -days 30 -out "$d/root.crt" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl ecparam -name secp384r1 -genkey -noout -out "$d/int.key" 2>/dev/null
openssl req -new -key "$d/int.key" -subj "/CN=step bench intermediate" -out "$d/int.csr"
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$d/int.ext"
openssl x509 -req -in "$d/int.csr" -CA "$d/root.crt" -CAkey "$d/root.key" -CAcreateserial -days 30 -extfile "$d/int.ext" -out "$d/int.crt" 2>/dev/null
openssl genrsa -traditional -out "$d/ra.key" 2048 2>/dev/null
openssl req -new -key "$d/ra.key" -subj "/CN=step bench SCEP RA" -out "$d/ra.csr"
printf 'keyUsage=critical,digitalSignature,keyEncipherment\n' >"$d/ra.ext"
openssl x509 -req -in "$d/ra.csr" -CA "$d/int.crt" -CAkey "$d/int.key" -CAcreateserial -days 30 -extfile "$d/ra.ext" -out "$d/ra.crt" 2>/dev/null
port=$((20000 + RANDOM % 20000))
cat >"$d/ca.json" <<JSON
{
  "root": "$d/root.crt", "crt": "$d/int.crt", "key": "$d/int.key",
  "address": "127.0.0.1:$((port + 1))", "insecureAddress": "127.0.0.1:$port",
  "dnsNames": ["127.0.0.1"],
  "logger": {"format": "text"},
  "db": {"type": "badgerv2", "dataSource": "$d/db"},
  "authority": {"provisioners": [{
    "type": "SCEP", "name": "bench", "challenge": "bench-static-secret",
    "minimumPublicKeyLength": 2048, "encryptionAlgorithmIdentifier": 2,
    "decrypterCertificate": "$(base64 -w0 "$d/ra.crt")",
    "decrypterKeyPEM": "$(base64 -w0 "$d/ra.key")"
  }]},
  "tls": {"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false}
}
JSON
"$step" "$d/ca.json" >"$d/step.log" 2>&1 &
for _ in $(seq 1 100); do
	curl -fs "http://127.0.0.1:$port/scep/bench?operation=GetCACaps" >/dev/null && break
	sleep 0.2
done
echo "== step-ca v0.30.2 SCEP provisioner ($n enrollments, the same client)"
QPKI_SCEP_BENCH_URL="http://127.0.0.1:$port/scep/bench" QPKI_SCEP_BENCH_CHALLENGE=bench-static-secret \
	go test -run "^\$" -bench BenchmarkPKIOperation -benchtime "${n}x" ./scep/ 2>&1 | tee "$d/bench.log" | grep -E "Benchmark|ok" || { grep -v "^time=" "$d/bench.log" | head -40; exit 1; }
