# qpki — see README.md. Every target works from a clean checkout.
GO        ?= go
BUILD     := build
QPKI      := $(BUILD)/qpki
DATA      ?= ./data
FUZZTIME  ?= 10s
STATICCHECK_VERSION ?= 2025.1.1

.PHONY: all build test test-go fuzz-short bench lint deps run clean test-hsm

all: build

build:
	$(GO) build -o $(QPKI) ./cmd/qpki

# deps installs the Debian packages the tests drive (openssl, SoftHSM2,
# pkcs11-tool) when run as root, and otherwise says what is missing.
deps:
	@scripts/deps.sh

test: deps test-go fuzz-short

test-go:
	$(GO) test -count=1 -timeout 14m ./...

# Each fuzz target runs for FUZZTIME; a crash fails the build.
fuzz-short:
	@scripts/fuzz.sh $(FUZZTIME)

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 2s -timeout 30m ./...

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$$( command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck ) ./...

# run creates a development CA under $(DATA) on first run and says what to
# do next.
run: build
	@scripts/dev-ca.sh $(QPKI) $(DATA)

clean:
	rm -rf $(BUILD)
