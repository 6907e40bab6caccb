#!/usr/bin/env bash
# Creates a development CA (ECDSA root and issuing CA) under DATA on first
# run, then says what to do next.
set -euo pipefail
qpki=$1
data=$2
mkdir -p "$data"
if [ ! -f "$data/root/ca.meta.json" ]; then
	"$qpki" ca init --profile ec/root-ca --var cn="qpki Dev Root CA" --ca-dir "$data/root"
fi
if [ ! -f "$data/issuing/ca.meta.json" ]; then
	"$qpki" ca init --profile ec/issuing-ca --parent "$data/root" --var cn="qpki Dev Issuing CA" --ca-dir "$data/issuing"
fi
cat <<EOT

Development CA ready under $data: root CA $data/root, issuing CA $data/issuing.
Starting qpki serve on the issuing CA (Ctrl-C stops it). In another shell:
  $qpki csr gen --algorithm ecdsa-p256 --keyout $data/server.key --cn server.example.com --dns server.example.com --out $data/server.csr
  $qpki cert issue --ca-dir $data/issuing --profile ec/tls-server --csr $data/server.csr --out $data/server.crt
  curl --cacert $data/root/ca.crt https://127.0.0.1:8443/readyz
Status page and metrics: http://${QPKI_OPS_LISTEN:-127.0.0.1:9464}/status and /metrics (plain HTTP, loopback; serve prints its "ops" line below)

EOT
exec "$qpki" serve --ca-dir "$data/issuing" --data-dir "$data" --listen "${QPKI_LISTEN:-127.0.0.1:8443}" \
	${QPKI_OPS_LISTEN:+--ops-listen "$QPKI_OPS_LISTEN"}
