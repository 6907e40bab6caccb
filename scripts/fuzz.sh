#!/usr/bin/env bash
# Runs every fuzz target for a short time; any crash fails.
set -euo pipefail
fuzztime=${1:-10s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg" >/tmp/qpki-fuzz.log 2>&1 || {
			cat /tmp/qpki-fuzz.log
			echo "fuzz target $target in $pkg failed" >&2
			exit 1
		}
	done
done
echo "fuzz: all targets passed"
