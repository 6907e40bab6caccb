#!/bin/sh
# softhsm-token.sh DIR [LABEL]
#
# Makes a throw-away SoftHSM2 token for trying qpki or for `make test-hsm`:
# DIR gets softhsm2.conf, a token directory and hsm.yaml (an --hsm-config
# selecting the token by label). The script prints the variables to export.
# The PIN is random and written to DIR/pin (mode 0600) so that it never
# appears in a command line; export it with HSM_PIN=$(cat DIR/pin).
set -eu

dir=${1:?usage: softhsm-token.sh DIR [LABEL]}
label=${2:-qpki-test}

lib=${QPKI_SOFTHSM2_LIB:-}
if [ -z "$lib" ]; then
	for p in /usr/lib/softhsm/libsofthsm2.so \
		/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
		/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
		/usr/lib64/pkcs11/libsofthsm2.so \
		/usr/local/lib/softhsm/libsofthsm2.so; do
		if [ -f "$p" ]; then lib=$p; break; fi
	done
fi
if [ -z "$lib" ] || ! command -v softhsm2-util >/dev/null 2>&1; then
	echo "softhsm-token.sh: SoftHSM2 is not installed (Debian: apt-get install softhsm2)" >&2
	exit 1
fi

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
umask 077
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$dir/pin"
od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$dir/so-pin"

# softhsm2-util takes PINs only as arguments; they are throw-away test PINs.
SOFTHSM2_CONF=$dir/softhsm2.conf softhsm2-util --init-token --free --label "$label" \
	--so-pin "$(cat "$dir/so-pin")" --pin "$(cat "$dir/pin")" >/dev/null

cat >"$dir/hsm.yaml" <<YAML
type: pkcs11
pkcs11:
  lib: $lib
  token: "$label"
  pin_env: HSM_PIN
  logout_after_use: false
YAML

echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "export HSM_PIN=\$(cat $dir/pin)"
echo "export HSM_CONFIG=$dir/hsm.yaml"
