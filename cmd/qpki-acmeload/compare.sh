#!/bin/sh
# compare.sh: full ACME flows per second against qpki serve, pebble and
# step-ca, in the same run, with qpki-acmeload (newAccount once per
# account, then newOrder → http-01 → finalize → download, a new name each
# time). Not part of `make test`: it takes minutes and wants a quiet
# machine.
#
#   go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest
#   CGO_ENABLED=0 go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2
#   cmd/qpki-acmeload/compare.sh [WORKDIR]
#
# Every server issues from the same ecdsa-p256 issuing CA key (file key),
# signed by an ec/root-ca root, and validates http-01 against the load
# generator:
#   qpki     embedded NATS, 2 signer sessions, --acme-resolve-to 127.0.0.1
#            --acme-http-port 5002, rate limits off for 127.0.0.0/8.
#   pebble   PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0, its own CA key
#            (pebble cannot load one), its VA asking the load generator's
#            DNS server (every name is 127.0.0.1), http-01 on port 5003.
#   step-ca  an ACME provisioner, badger DB, --insecure --acme-http-port
#            5005 --resolver pointing at the load generator's DNS server.
# Servers missing from PATH and $(go env GOPATH)/bin are skipped.
#
# Each round runs every server at every ACCOUNTS level, servers
# interleaved so that noise from other work on the machine spreads over
# all of them; then qpki at a fixed RATE (orders started per second) for
# the latency at half load. Environment: ROUNDS (2), ACCOUNTS ("16 32 64"),
# PEBBLE_ACCOUNTS ("4 8": more deadlocks pebble), DURATION (15s), RATE (150),
# SERVERS ("qpki pebble step-ca"), QPKI_ENV (e.g. GOGC=200).
# The last lines are a summary, one line per measurement.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d)}
rounds=${ROUNDS:-2}
accounts=${ACCOUNTS:-"16 32 64"}
pebble_accounts=${PEBBLE_ACCOUNTS:-"4 8"}
duration=${DURATION:-15s}
rate=${RATE:-150}
servers=${SERVERS:-"qpki pebble step-ca"}
mkdir -p "$work"
cd "$work"
go build -C "$repo" -o "$work/qpki" ./cmd/qpki
go build -C "$repo" -o "$work/qpki-acmeload" ./cmd/qpki-acmeload
gobin=$(go env GOPATH)/bin
find_bin() { command -v "$1" 2>/dev/null || { [ -x "$gobin/$1" ] && echo "$gobin/$1"; } || true; }
pebble=$(find_bin pebble)
stepca=$(find_bin step-ca)

# An ecdsa-p256 issuing CA (the built-in ec/issuing-ca is P-384).
if [ ! -d ca ]; then
	./qpki profile show ec/issuing-ca | sed -e 's/^algorithm: .*/algorithm: ecdsa-p256/' \
		-e 's#^name: .*#name: bench/issuing-ca-p256#' > p256.yaml
	./qpki ca init --profile ec/root-ca --var cn="Bench Root" --ca-dir ./root >/dev/null
	./qpki ca init --profile ./p256.yaml --parent ./root --var cn="Bench Issuing P-256" --ca-dir ./ca >/dev/null
	./qpki ca export --bundle root --ca-dir ./ca > root.pem
fi
if [ ! -f pebble-cert.pem ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj /CN=localhost \
		-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -days 30 -nodes \
		-keyout pebble-key.pem -out pebble-cert.pem 2>/dev/null
fi
cat > pebble.json <<EOF
{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "pebble-cert.pem", "privateKey": "pebble-key.pem", "httpPort": 5003, "tlsPort": 5004,
  "ocspResponderURL": "", "externalAccountBindingRequired": false, "retryAfter": {"authz": 1, "order": 1},
  "keyAlgorithm": "ecdsa", "profiles": {"default": {"description": "default", "validityPeriod": 7776000}}}}
EOF
cat > step-ca.json <<EOF
{"root": "root/ca.crt", "crt": "ca/ca.crt", "key": "ca/versions/v1/keys/ca.ecdsa-p256.key",
 "address": "127.0.0.1:9000", "dnsNames": ["127.0.0.1", "localhost"], "logger": {"format": "text"},
 "db": {"type": "badgerv2", "dataSource": "step-db"},
 "authority": {"provisioners": [{"type": "ACME", "name": "acme"}],
   "claims": {"defaultTLSCertDuration": "2160h", "maxTLSCertDuration": "8760h"}},
 "tls": {"minVersion": 1.2, "maxVersion": 1.3}}
EOF

pid=
stop() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	pid=
}
trap stop EXIT
wait_up() {
	for _ in $(seq 100); do
		curl -fsk "$1" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "$1 did not come up" >&2
	return 1
}
# start NAME: start a fresh server; sets pid, dir, ca, port, dns.
start() {
	case $1 in
	qpki)
		rm -rf data
		env ${QPKI_ENV:-} ./qpki serve --ca-dir ./ca --data-dir ./data --listen 127.0.0.1:8443 --workers 2 \
			--acme-http-port 5002 --acme-resolve-to 127.0.0.1 --acme-rate-exempt 127.0.0.0/8 > qpki.log 2>&1 &
		pid=$! dir=https://127.0.0.1:8443/acme/directory ca=root.pem port=5002 dns=
		;;
	pebble)
		PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 "$pebble" -config pebble.json -dnsserver 127.0.0.1:8053 > pebble.log 2>&1 &
		pid=$! dir=https://127.0.0.1:14000/dir ca=pebble-cert.pem port=5003 dns=127.0.0.1:8053
		;;
	step-ca)
		rm -rf step-db
		"$stepca" step-ca.json --insecure --acme-http-port 5005 --resolver 127.0.0.1:8054 > step-ca.log 2>&1 &
		pid=$! dir=https://127.0.0.1:9000/acme/acme/directory ca=root.pem port=5005 dns=127.0.0.1:8054
		;;
	esac
	wait_up "$dir"
}
summary=$work/summary.txt
: > "$summary"
# load LABEL ARGS...: one measurement, reported and added to the summary.
load() {
	label=$1
	shift
	out=$(./qpki-acmeload -duration "$duration" -warmup 3s -label "$label" -directory "$dir" -ca "$ca" \
		-http-listen 127.0.0.1:$port ${dns:+-dns-listen $dns} "$@") || out="$label: failed"
	echo "$out"
	echo "$out" | awk -v l="$label" 'NR==1 { split($0, a, "[(/]"); o=a[2] } /finalize/ { f=$3" "$5" "$7" "$9 }
		END { printf "%-26s %8s orders/s   finalize→valid %s\n", l, o, f }' >> "$summary"
}

echo "== $(date -u +%FT%TZ) qpki $(git -C "$repo" rev-parse --short HEAD), pebble ${pebble:-missing}, step-ca ${stepca:-missing}"
for round in $(seq "$rounds"); do
	for s in $servers; do
		case $s in
		pebble) [ -n "$pebble" ] || { echo "pebble not found: skipped"; continue; }; levels=$pebble_accounts ;;
		step-ca) [ -n "$stepca" ] || { echo "step-ca not found: skipped"; continue; }; levels=$accounts ;;
		*) levels=$accounts ;;
		esac
		for n in $levels; do
			start "$s"
			load "$s round=$round accounts=$n" -accounts "$n"
			stop
		done
	done
	start qpki
	load "qpki round=$round rate=$rate" -accounts 32 -rate "$rate"
	stop
done
echo "== summary (p50 p90 p99 max)"
cat "$summary"
