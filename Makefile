# qpki — see README.md. Every target works from a clean checkout.
GO        ?= go
BUILD     := build
QPKI      := $(BUILD)/qpki
DATA      ?= ./data
FUZZTIME  ?= 10s
# The module proxy serves v0.8.2 (2025.1.1 is not there): pinned, so that a
# fresh machine lints with the same checks as every other.
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test test-go fuzz-short bench bench-ocsp bench-scep lint deps run clean test-hsm testtoken chaos test-chaos

all: build

build:
	$(GO) build -o $(QPKI) ./cmd/qpki

# testtoken builds the qpki test token, a PKCS#11 3.2 token for development
# and CI only: the C client library (no Go runtime inside) and its daemon.
TESTTOKEN_CC ?= gcc
testtoken:
	@mkdir -p $(BUILD)
	$(TESTTOKEN_CC) -shared -fPIC -O2 -Wall -Wextra -Werror -fvisibility=hidden -pthread -o $(BUILD)/libqpki-testtoken.so testtoken/lib/*.c
	$(GO) build -o $(BUILD)/qpki-testtokend ./cmd/qpki-testtokend

# deps installs the Debian packages the tests drive (openssl, SoftHSM2,
# pkcs11-tool) when run as root, and otherwise says what is missing.
deps:
	@scripts/deps.sh

test: deps test-go fuzz-short test-chaos

test-go:
	$(GO) test -count=1 -timeout 14m ./...

# test-hsm runs the HSM suites. Without HSM_CONFIG they use throw-away
# SoftHSM2 tokens (pkg/hsm's own suite included); with HSM_CONFIG=FILE they
# run against the token that --hsm-config selects, with the user PIN in
# HSM_PIN, leave no keys behind and skip what needs SoftHSM2 itself (two
# tokens, a wrong PIN). HSM_PQC_ENABLED=1 adds the post-quantum cases.
HSM_PKGS := ./pkg/ca/ ./pkg/credential/ ./worker/ ./cmd/qpki/
test-hsm:
	@if [ -z "$$HSM_CONFIG" ]; then \
		set -x; CI=true $(GO) test -count=1 ./pkg/hsm/... && \
		CI=true $(GO) test -count=1 -timeout 10m -v -run HSM $(HSM_PKGS); \
	else \
		set -x; CI=true $(GO) test -count=1 -timeout 10m -v -run '^TestHSM' $(HSM_PKGS); \
	fi

# chaos runs cmd/qpki-chaos: three NATS nodes, two --store jetstream
# front-ends and two workers on copies of the test token, all processes on
# loopback, under ACME, EST, batch, revocation and CRL load while faults
# are injected at seeded random intervals (CHAOS_SEED repeats a run). It
# stops after CHAOS_DURATION, prints a table and fails when a check does.
# Root only (the disk-full fault mounts a tmpfs).
CHAOS_DURATION ?= 5m
chaos: build testtoken
	$(GO) build -o $(BUILD)/qpki-chaos ./cmd/qpki-chaos
	$(BUILD)/qpki-chaos -duration $(CHAOS_DURATION) -bin $(BUILD) $(if $(CHAOS_SEED),-seed $(CHAOS_SEED))

test-chaos:
	$(MAKE) chaos CHAOS_DURATION=60s

# Each fuzz target runs for FUZZTIME; a crash fails the build.
fuzz-short:
	@scripts/fuzz.sh $(FUZZTIME)

# Micro-benchmarks run for a fixed time; end-to-end ones (whole processes,
# a cluster, load generators) for a fixed number of certificates, since a
# single run of them outlasts any time budget.
BENCH = $(GO) test -run '^$$' -timeout 30m
bench: deps
	$(BENCH) -bench . -benchtime 2s ./pkg/... ./queue/ ./acme/... ./enroll/
	$(BENCH) -bench 'Pipeline$$' -benchtime 5000x ./server/
	$(BENCH) -bench PipelineHSM -benchtime 2000x ./worker/
	$(BENCH) -bench ServeBatch -benchtime 5000x ./cmd/qpki/
	$(BENCH) -bench ClusterBatch -benchtime 3000x ./server/
	$(BENCH) -bench SimpleEnroll -benchtime 10000x ./cmd/qpki-estload/
	$(BENCH) -bench Flows -benchtime 3000x ./cmd/qpki-acmeload/

# The OCSP responder: a million certificates, wrk over plain HTTP, and the
# pre-signing rate against the raw signer (file P-256, SoftHSM2 P-384).
bench-ocsp: deps
	scripts/bench-ocsp.sh

# SCEP enrollments/s, p50/p99, 32 clients: qpki and step-ca v0.30.2's SCEP
# provisioner with the same client.
bench-scep: deps
	scripts/scep-bench.sh

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# run creates a development CA under $(DATA) on first run and says what to
# do next.
run: build
	@scripts/dev-ca.sh $(QPKI) $(DATA)

clean:
	rm -rf $(BUILD)
