# blk — see README.md.
GO      ?= go
BIN     ?= bin/blk
LAB     := lab/lab.sh
LABDIR   = $(shell $(LAB) dir)

.PHONY: build test check lab-up lab-down lab-ssh lab-test demo bench lint clean

build:
	$(GO) build -o $(BIN) ./cmd/blk

## test: unit tests (no root, no lab)
test:
	$(GO) test ./...

## check: everything CI runs: lint, unit tests, lab tests
check: lint test lab-test

# Linters at pinned versions, run from the module cache (outside the repo).
SHADOW      := golang.org/x/tools/go/analysis/passes/shadow/cmd/shadow@v0.52.0
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: gofmt, go.mod tidy, go vet, shadow and staticcheck (with and without the lab tag)
lint:
	test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	$(GO) run $(SHADOW) ./...
	GOFLAGS=-tags=lab $(GO) run $(SHADOW) ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags lab ./...

lab-up:
	$(LAB) up

lab-down:
	$(LAB) down

lab-ssh:
	$(LAB) ssh

## lab-test: integration tests against real LVM in the lab VM
lab-test:
	lab/test.sh

## demo: build blk, boot the lab and run blk's main job in it
demo:
	lab/demo.sh

## bench: list/start-up (issue 2) and attach/detach (issue 4) ratios
bench:
	bench/run.sh
	bench/attach.sh

clean:
	rm -rf bin
