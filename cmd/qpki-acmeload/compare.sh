#!/bin/sh
# compare.sh: full ACME flows per second against qpki serve and pebble, in
# the same run, with qpki-acmeload (newAccount once per account, then
# newOrder → http-01 → finalize → download, a new name each time).
#
#   go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest
#   cmd/qpki-acmeload/compare.sh [WORKDIR]
#
# qpki: an ecdsa-p256 issuing CA under an ec/root-ca root, embedded NATS,
# 2 signer sessions, validations sent to the load generator
# (--acme-resolve-to 127.0.0.1 --acme-http-port 5002).
# pebble: ecdsa keys, PEBBLE_VA_NOSLEEP=1, no nonce rejection, its VA
# asking the load generator's DNS server (every name is 127.0.0.1) and
# fetching http-01 answers from it on port 5003.
# Environment: ACCOUNTS (default "4 16 32"), DURATION (20s), RATE (150,
# the fixed-rate run), PEBBLE_ACCOUNTS (default "4 8": pebble's VA and
# WFE lock authorizations in opposite orders and deadlock under more
# concurrency), QPKI_ENV (e.g. GOGC=400).
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d)}
accounts=${ACCOUNTS:-"4 16 32"}
pebble_accounts=${PEBBLE_ACCOUNTS:-"4 8"}
duration=${DURATION:-20s}
rate=${RATE:-150}
mkdir -p "$work"
cd "$work"
go build -C "$repo" -o "$work/qpki" ./cmd/qpki
go build -C "$repo" -o "$work/qpki-acmeload" ./cmd/qpki-acmeload
pebble=$(command -v pebble || echo "$(go env GOPATH)/bin/pebble")

# An ecdsa-p256 issuing CA (the built-in ec/issuing-ca is P-384).
if [ ! -d ca ]; then
	./qpki profile show ec/issuing-ca | sed -e 's/^algorithm: .*/algorithm: ecdsa-p256/' \
		-e 's#^name: .*#name: bench/issuing-ca-p256#' > p256.yaml
	./qpki ca init --profile ec/root-ca --var cn="Bench Root" --ca-dir ./root >/dev/null
	./qpki ca init --profile ./p256.yaml --parent ./root --var cn="Bench Issuing P-256" --ca-dir ./ca >/dev/null
	./qpki ca export --bundle root --ca-dir ./ca > root.pem
fi
rm -rf data
env ${QPKI_ENV:-} ./qpki serve --ca-dir ./ca --data-dir ./data --listen 127.0.0.1:8443 --workers 2 \
	--acme-http-port 5002 --acme-resolve-to 127.0.0.1 --acme-rate-exempt 127.0.0.0/8 > serve.log 2>&1 &
qpki_pid=$!
trap 'kill $qpki_pid ${pebble_pid:-} 2>/dev/null || true' EXIT
for i in $(seq 50); do
	curl -fsk https://127.0.0.1:8443/acme/directory >/dev/null 2>&1 && break
	sleep 0.2
done

load() { ./qpki-acmeload -duration "$duration" -warmup 3s "$@"; }
echo "== qpki ($(git -C "$repo" rev-parse --short HEAD))"
for n in $accounts; do
	load -label "qpki accounts=$n" -directory https://127.0.0.1:8443/acme/directory -ca root.pem \
		-accounts "$n" -http-listen 127.0.0.1:5002
done
load -label "qpki rate=$rate" -directory https://127.0.0.1:8443/acme/directory -ca root.pem \
	-accounts 32 -rate "$rate" -http-listen 127.0.0.1:5002
kill $qpki_pid
wait $qpki_pid 2>/dev/null || true

if [ ! -x "$pebble" ]; then
	echo "pebble not found: go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest" >&2
	exit 1
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj /CN=localhost \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -days 30 -nodes \
	-keyout pebble-key.pem -out pebble-cert.pem 2>/dev/null
cat > pebble.json <<EOF
{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "pebble-cert.pem", "privateKey": "pebble-key.pem", "httpPort": 5003, "tlsPort": 5004,
  "ocspResponderURL": "", "externalAccountBindingRequired": false, "retryAfter": {"authz": 1, "order": 1},
  "keyAlgorithm": "ecdsa", "profiles": {"default": {"description": "default", "validityPeriod": 7776000}}}}
EOF
echo "== pebble ($("$pebble" -version 2>&1 | head -1))"
for n in $pebble_accounts; do
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 "$pebble" -config pebble.json -dnsserver 127.0.0.1:8053 > pebble.log 2>&1 &
	pebble_pid=$!
	sleep 1
	load -label "pebble accounts=$n" -directory https://127.0.0.1:14000/dir -ca pebble-cert.pem \
		-accounts "$n" -http-listen 127.0.0.1:5003 -dns-listen 127.0.0.1:8053 || true
	kill $pebble_pid
	wait $pebble_pid 2>/dev/null || true
done
