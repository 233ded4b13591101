# blk — see README.md.
GO      ?= go
BIN     ?= bin/blk
LAB     := lab/lab.sh
LABDIR   = $(shell $(LAB) dir)

.PHONY: build deps test check lab-up lab-down lab-ssh lab-test demo bench lint clean completions completions-check man install

PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(date +%s)} +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/blk

## completions: regenerate the checked-in shell completion scripts
completions: build
	mkdir -p completions
	$(BIN) completion bash > completions/blk.bash
	$(BIN) completion zsh > completions/_blk
	$(BIN) completion fish > completions/blk.fish

## completions-check: fail when completions/ is stale (CI runs it)
completions-check: build
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(BIN) completion bash > $$tmp/blk.bash && \
	$(BIN) completion zsh > $$tmp/_blk && \
	$(BIN) completion fish > $$tmp/blk.fish && \
	diff -ru completions $$tmp || { echo "completions/ is stale: run 'make completions'"; exit 1; }

## man: one man page per command, into build/man (not checked in)
man: build
	rm -rf build/man
	$(BIN) __man build/man

## install: the binary, completions and man pages under $(DESTDIR)$(PREFIX)
install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/blk
	install -D -m 0644 completions/blk.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/blk
	install -D -m 0644 completions/_blk $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_blk
	install -D -m 0644 completions/blk.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/blk.fish
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 build/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

## test: unit tests (no lab), the fault-injection switch of the test build, and
## the state and workflow tests again with the state in PostgreSQL (a private
## server the tests start; they skip without Debian's postgresql package,
## unless BLK_REQUIRE_POSTGRES=1, as CI sets)
test:
	$(GO) test ./...
	$(GO) test -tags faultinject -run FaultSwitch ./volume
	BLK_TEST_STATE=postgres $(GO) test -count=1 ./state ./volume

## deps: what the tests need besides Go: Debian's packages (lab/lab.sh install: QEMU, LVM, tgt,
## sshd, PostgreSQL, ...) and versitygw, the S3 tests' server, built from the module proxy
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
deps:
	lab/lab.sh install
	@gobin=$$($(GO) env GOBIN); gobin=$${gobin:-$$($(GO) env GOPATH)/bin}; \
	  [ -x "$$gobin/versitygw" ] || command -v versitygw >/dev/null || $(GO) install $(VERSITYGW)

## check: everything CI runs: lint, unit tests, stale completions, lab tests
# check is what CI runs, under its hour: the lab suite once, with blk
# driving the guest over SSH, the crash matrix at every sixth step. lab-test runs it in both modes (blk over SSH
# and blk inside the guest); BLK_CRASH_ALL=1 adds every workflow to the
# crash matrix.
check: deps lint test completions-check
	BLK_LAB_MODES=over-ssh BLK_CRASH_EVERY=$${BLK_CRASH_EVERY:-6} lab/test.sh

# Linters at pinned versions, run from the module cache (outside the repo).
SHADOW      := golang.org/x/tools/go/analysis/passes/shadow/cmd/shadow@v0.52.0
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: gofmt, go.mod tidy, go vet (also with the lab and faultinject tags), shadow and staticcheck (with and without the lab tag)
lint:
	test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	$(GO) vet -tags faultinject ./...
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

## bench: list/start-up (issue 2), attach/detach (issue 4), NFS attach/detach (issue 9), clone, extend and from-image (issue 10) and backup (issue 11) ratios
bench:
	bench/run.sh
	bench/attach.sh
	bench/nfs-attach.sh
	bench/clone.sh
	bench/extend.sh
	bench/from-image.sh
	bench/backup.sh

clean:
	rm -rf bin build
