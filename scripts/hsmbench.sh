#!/bin/sh
# hsmbench: a batch of P-256 certificates through qpki serve whose CA key
# is on the test token, with the daemon modelling a network HSM. Prints the
# batch's rate and the daemon's own count of how busy the token was.
#
#   scripts/hsmbench.sh [N=5000] [SESSIONS=16] [LATENCY=2ms] [MAXRATE=2000] [RATE=0]
#
# RATE, when set, is serve's --rate: the batch should then hold that pace.
set -eu
N=${N:-5000} SESSIONS=${SESSIONS:-16} LATENCY=${LATENCY:-2ms} MAXRATE=${MAXRATE:-2000} RATE=${RATE:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
d=$(mktemp -d)
trap 'kill $serve $tokend 2>/dev/null || true; wait 2>/dev/null; rm -rf "$d"' EXIT
cd "$root"
make -s build testtoken BUILD="$d/bin" QPKI="$d/bin/qpki" >/dev/null
export QPKI_TESTTOKEN_SOCKET="$d/token/token.sock" QPKI_BENCH_PIN=bench-user-pin-1
mkdir -p "$d/token"
QPKI_TESTTOKEN_SO_PIN=bench-so-pin-1 QPKI_TESTTOKEN_PIN=$QPKI_BENCH_PIN "$d/bin/qpki-testtokend" --dir "$d/token" \
	--socket "$QPKI_TESTTOKEN_SOCKET" --init-token bench --kdf-iterations 20000 \
	--sign-latency "$LATENCY" --max-rate "$MAXRATE" 2>"$d/tokend.log" &
tokend=$!
while ! [ -S "$QPKI_TESTTOKEN_SOCKET" ]; do sleep 0.1; done
printf 'type: pkcs11\npkcs11:\n  lib: %s\n  token: "bench"\n  pin_env: QPKI_BENCH_PIN\n' "$d/bin/libqpki-testtoken.so" >"$d/hsm.yaml"
cd "$d"
bin/qpki ca init --profile ec/root-ca --var "cn=Bench Root" --ca-dir ca --hsm-config hsm.yaml --key-label bench-ca >/dev/null
go run "$root/scripts/hsmbench/gen.go" "$N" >requests.jsonl
bin/qpki serve --ca-dir ca --data-dir data --listen 127.0.0.1:0 --workers "$SESSIONS" --rate "$RATE" >serve.log 2>&1 &
serve=$!
while ! [ -S ca/qpki.sock ]; do sleep 0.1; done
sleep 1
bin/qpki batch submit requests.jsonl --ca-dir ca --out-jsonl out.jsonl
kill $serve; wait $serve || true
kill $tokend; wait $tokend || true
grep 'model:' tokend.log
