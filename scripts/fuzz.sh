#!/usr/bin/env bash
# Runs every fuzz target for a short time; any crash fails.
#
# Go's fuzzing engine sometimes ends a run that found nothing with
# "context deadline exceeded" (the time ran out while a worker was busy
# with a new input); such a run wrote no failing input, so it is run again,
# up to twice. A run that wrote a failing input fails at once.
set -euo pipefail
fuzztime=${1:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		for attempt in 1 2 3; do
			echo "fuzz $pkg $target ($fuzztime)"
			if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg" >"$log" 2>&1; then
				break
			fi
			if [ "$attempt" -lt 3 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
				echo "fuzz: $target ended with the engine's deadline error and no failing input; running it again"
				continue
			fi
			cat "$log"
			echo "fuzz target $target in $pkg failed" >&2
			exit 1
		done
	done
done
echo "fuzz: all targets passed"
