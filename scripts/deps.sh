#!/usr/bin/env bash
# Installs what qpki's tests drive: Debian packages (openssl, SoftHSM2,
# pkcs11-tool, certbot, lego, curl, chromium, GnuTLS ocsptool, wrk, scepclient) when run as root, and the pinned npm
# package of the independent post-quantum verifier. Otherwise it says what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v certbot >/dev/null || need+=(certbot)
command -v lego >/dev/null || need+=(lego)
command -v curl >/dev/null || need+=(curl)
command -v npm >/dev/null || need+=(npm)
command -v chromium >/dev/null || need+=(chromium)
command -v ocsptool >/dev/null || need+=(gnutls-bin)
command -v wrk >/dev/null || need+=(wrk)
command -v scepclient >/dev/null || need+=(scep)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "installing: ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	else
		echo "missing Debian packages: ${need[*]}" >&2
		echo "install them with: sudo apt-get install ${need[*]}" >&2
		exit 1
	fi
fi

# @noble/post-quantum, pinned by interop/noble/package-lock.json.
if [ -f interop/noble/package-lock.json ] && [ ! -d interop/noble/node_modules/@noble/post-quantum ]; then
	npm ci --prefix interop/noble --no-audit --no-fund --loglevel=error
fi
