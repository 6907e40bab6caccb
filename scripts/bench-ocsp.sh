#!/usr/bin/env bash
# bench-ocsp.sh [COUNT] [HSM_COUNT]: the OCSP responder benchmark (make
# bench-ocsp; not part of make test). It needs wrk and SoftHSM2
# (scripts/deps.sh).
#
#  1. A P-256 CA (key in a file) with COUNT certificates (default 1,000,000)
#     in its store; `qpki serve --workers 1` pre-signs all their responses
#     through the queue: that rate against the raw rate of the same key
#     signing alone (ocspbench raw), right before.
#  2. wrk: GET over plain HTTP, 64 keep-alive connections, each request for
#     a serial drawn from all COUNT; responses/s, latency percentiles, and
#     serve's RSS after the run.
#  3. The same pre-signing ratio for a P-384 CA key in SoftHSM2, with
#     HSM_COUNT certificates (default 50,000).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000000}
hsm_count=${2:-50000}
duration=${WRK_DURATION:-30s}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/qpki" ./cmd/qpki
go build -o "$work/ocspbench" ./scripts/ocspbench
q=$work/qpki
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

# The P-256 CA: ec/root-ca with a P-256 key.
"$q" profile show ec/root-ca | sed 's/^algorithm: ecdsa-p384/algorithm: ecdsa-p256/; s/^name: ec\/root-ca/name: bench\/root-ca-p256/' >"$work/root-ca-p256.yaml"

# presign DIR COUNT [HSM_CONFIG]: fill, raw rate, serve until pre-signed.
presign() {
	local dir=$1 n=$2 hsm=${3:-}
	"$work/ocspbench" fill --ca-dir "$dir" --count "$n" --paths "$dir.paths"
	"$work/ocspbench" raw --ca-dir "$dir" ${hsm:+--hsm-config "$hsm"} --seconds 10
	local port=$((20000 + RANDOM % 10000))
	"$q" serve --ca-dir "$dir" --data-dir "$dir.data" --listen 127.0.0.1:0 --ops-listen "" --http-listen "127.0.0.1:$port" \
		--workers 1 ${hsm:+--hsm-config "$hsm"} --log-format json >"$dir.log" 2>&1 &
	serve_pid=$!
	for _ in $(seq 1 7200); do
		if grep -q '"OCSP responses pre-signed"' "$dir.log"; then break; fi
		if ! kill -0 $serve_pid 2>/dev/null; then cat "$dir.log"; exit 1; fi
		sleep 0.5
	done
	grep '"OCSP responses pre-signed"' "$dir.log" | head -1 |
		sed 's/.*"responses":\([0-9]*\),"seconds":\([0-9.]*\),"per_second":\([0-9]*\).*/pre-signed \1 responses in \2 s: \3\/s/'
	http_port=$port
}

echo "== P-256 CA (file key), $count certificates"
"$q" ca init --ca-dir "$work/p256" --profile "$work/root-ca-p256.yaml" --var cn="OCSP Bench P-256" >/dev/null
presign "$work/p256" "$count"
cat >"$work/paths.lua" <<LUA
local paths = {}
init = function(args)
  for line in io.lines("$work/p256.paths") do paths[#paths + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
LUA
echo "load before wrk: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk -t2 -c64 -d"$duration" --latency -s "$work/paths.lua" "http://127.0.0.1:$http_port" | grep -E 'Requests/sec|Latency|50%|75%|90%|99%|requests in|Non-2xx|Socket'
echo "serve RSS after wrk: $(($(ps -o rss= -p $serve_pid) / 1024)) MiB ($(grep -E 'RssAnon|RssFile' /proc/$serve_pid/status | tr -s ' \t' ' ' | tr '\n' ' '); RssFile is the store's mmap)"
echo "store: $(du -h "$work/p256/ca.db" | cut -f1)"
kill $serve_pid; wait $serve_pid 2>/dev/null || true

echo "== P-384 CA in SoftHSM2, $hsm_count certificates"
scripts/softhsm-token.sh "$work/hsm" ocsp-bench >/dev/null
export SOFTHSM2_CONF=$work/hsm/softhsm2.conf HSM_PIN=$(cat "$work/hsm/pin")
"$q" ca init --ca-dir "$work/p384" --profile ec/root-ca --var cn="OCSP Bench P-384" --hsm-config "$work/hsm/hsm.yaml" --key-label ocsp-bench >/dev/null
presign "$work/p384" "$hsm_count" "$work/hsm/hsm.yaml"
kill $serve_pid; wait $serve_pid 2>/dev/null || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
