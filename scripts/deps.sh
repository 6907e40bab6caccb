#!/usr/bin/env bash
# Installs the Debian packages qpki's tests use, or lists what is missing.
set -euo pipefail

need=()
command -v openssl >/dev/null || need+=(openssl)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
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
