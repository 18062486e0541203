# PromptMQ build, test and run targets. `make test` is what CI runs (.ci/run).

GO       ?= go
BIN      ?= bin/promptmqd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 30s
ARGS     ?=

.PHONY: build run test interop bench bench-compare fuzz install uninstall

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/promptmqd

# The broker with the embedded defaults (port 1883, data in ./data); pass more with ARGS='-c FILE'.
run: build
	./$(BIN) $(ARGS)

test:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt -l reports:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@# The engine and the codec have non-Linux fallbacks (poll_other.go): they must still build.
	GOOS=darwin $(GO) vet ./engine/... ./packets ./topics ./session ./persist
	$(GO) test -race -count=1 ./...

# Interoperability with Debian's mosquitto_pub/mosquitto_sub (package mosquitto-clients): the
# engine's Interop tests, which skip without the programs unless CI=true.
interop:
	$(GO) test -race -count=1 -run Interop ./engine

# The long durability runs of issue 7 (make test runs 5 rounds of 20,000 QoS 1 per crash test):
# more rounds and messages per SIGKILL, and the recovery time of 1,000,000 retained messages.
CRASH_ROUNDS   ?= 20
CRASH_MESSAGES ?= 100000
.PHONY: crashtest
crashtest:
	PROMPTMQ_CRASH_ROUNDS=$(CRASH_ROUNDS) PROMPTMQ_CRASH_MESSAGES=$(CRASH_MESSAGES) PROMPTMQ_RECOVERY_RETAINED=1000000 \
		$(GO) test -count=1 -timeout=60m -v -run 'TestCrash|TestRestartKeeps|TestRecoveryTime|TestDiskFull|TestCorrupt|TestSecondPromptmqd' ./cmd/promptmqd

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# PromptMQ against Debian's mosquitto, pinned to cores 0 (brokers) and 1 (generator);
# ROUNDS, DURATION and ROWS tune it (see bench/compare.sh).
bench-compare:
	bench/compare.sh

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) -timeout=0 ./packets
	$(GO) test -run='^$$' -fuzz='^FuzzRoundTrip$$' -fuzztime=$(FUZZTIME) -timeout=0 ./packets

# The binary, the systemd unit and, unless one is there already, a default configuration; DESTDIR
# stages the tree for a package. The unit's paths follow PREFIX and SYSCONFDIR. Then, as root:
#   systemctl daemon-reload && systemctl enable --now promptmqd
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
DESTDIR    ?=

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/promptmqd
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/promptmqd|$(PREFIX)/bin/promptmqd|' -e 's|/etc/promptmq/|$(SYSCONFDIR)/promptmq/|' \
		deploy/promptmqd.service > $(DESTDIR)$(UNITDIR)/promptmqd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/promptmqd.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/promptmq/promptmq.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/promptmq/promptmq.toml; the new default is deploy/promptmq.toml"; \
	else \
		echo "install -D -m 0644 deploy/promptmq.toml $(DESTDIR)$(SYSCONFDIR)/promptmq/promptmq.toml"; \
		install -D -m 0644 deploy/promptmq.toml $(DESTDIR)$(SYSCONFDIR)/promptmq/promptmq.toml; \
	fi

# Removes the binary and the unit; the configuration and /var/lib/promptmq (the data) stay.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/promptmqd $(DESTDIR)$(UNITDIR)/promptmqd.service
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/promptmq and the data directory; remove them by hand if wanted"
