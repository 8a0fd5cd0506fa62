# KalshiBook - build, run and test.
#
#   make            build lib/libkb.a, app/kalshibook-fcgi, app/kbctl (gcc, -Werror)
#   make deps       install every Debian package the project needs (apt-get)
#   make run        local stack: Postgres under var/, workers, nginx (HTTPS); Ctrl-C stops it
#   make check      -Werror builds (gcc and clang), unit + integration tests under ASan/UBSan
#   make bench      throughput/latency table with same-run baselines
#   make static     npm ci from package-lock.json (once), copy the Redoc bundle into static/docs/
#
# VARIANT=release (default) builds in place; VARIANT=asan builds everything
# with clang and AddressSanitizer/UBSan under build/asan/ (what make check runs).

VARIANT ?= release

PKGS_BUILD := build-essential pkg-config clang libclang-rt-14-dev \
	libfcgi-dev libpq-dev libcurl4-openssl-dev libcjson-dev libsodium-dev libssl-dev check \
	libwebsockets-dev
PKGS_RUN := postgresql nginx openssl curl ca-certificates procps iproute2
PKGS_TEST := wrk python3 nodejs npm chromium jq pgbouncer
# clang-format: make format / make format-check (the root .clang-format).
PKGS_FORMAT := clang-format
PKGS := $(PKGS_BUILD) $(PKGS_RUN) $(PKGS_TEST) $(PKGS_FORMAT)

PC_LIBS := libpq libcurl libcjson libsodium openssl fcgi
PC_CFLAGS = $(shell pkg-config --cflags $(PC_LIBS) 2>/dev/null)
PC_LDLIBS = $(shell pkg-config --libs $(PC_LIBS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LDLIBS = $(shell pkg-config --libs check 2>/dev/null)

WARN := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes -Wvla -Wwrite-strings
DEFS := -DKB_DEFAULT_MIGRATIONS_DIR='"$(or $(MIGRATIONS_DIR),db/migrations)"'

ifeq ($(VARIANT),fuzz)
CC := clang
B := build/fuzz
OPT := -O1 -g -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -DKB_ARENA_DEBUG
LDSAN := -fsanitize=address,undefined
LIBKB := $(B)/lib/libkb.a
APPDIR := $(B)/app
else ifeq ($(VARIANT),asan)
CC := clang
B := build/asan
OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	-DKB_ARENA_DEBUG
LDSAN := -fsanitize=address,undefined
LIBKB := $(B)/lib/libkb.a
APPDIR := $(B)/app
else
CC ?= cc
B := build/release
OPT := -O2 -g
LDSAN :=
LIBKB := lib/libkb.a
APPDIR := app
endif

CFLAGS_ALL = $(WARN) $(OPT) $(DEFS) -Ilib $(PC_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(LDSAN) $(LDFLAGS)

LIB_SRCS := $(sort $(wildcard lib/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o)

# app objects shared by the server and the unit tests (no FastCGI, no main)
APP_CORE_SRCS := app/fcgi/router.c app/fcgi/routes.c app/fcgi/dispatch.c $(sort $(wildcard app/fcgi/h_*.c))
APP_CORE_OBJS := $(APP_CORE_SRCS:%.c=$(B)/%.o)
# kalshibook-fcgi: every other file of app/fcgi/ (master, reporter, listen, worker, fcgi, sdnotify, ...)
FCGI_SRCS := $(filter-out $(APP_CORE_SRCS),$(sort $(wildcard app/fcgi/*.c)))
FCGI_OBJS := $(FCGI_SRCS:%.c=$(B)/%.o)
KBCTL_SRCS := app/ctl/kbctl.c $(sort $(wildcard app/ctl/kbctl_*.c))
KBCTL_OBJS := $(KBCTL_SRCS:%.c=$(B)/%.o)

UNIT_SRCS := $(sort $(wildcard t/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:%.c=$(B)/%)
INTEG_SRCS := $(sort $(wildcard t/integration/test_*.c))
INTEG_BINS := $(INTEG_SRCS:%.c=$(B)/%)
INTEG_HARNESS := t/integration/kbt.c t/integration/kbt_domain.c t/integration/kbt_collector.c \
	t/integration/kbt_trips.c

FUZZ_SRCS := $(sort $(wildcard t/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:t/fuzz/%.c=build/fuzz/t/fuzz/%)
FUZZ_SECONDS ?= 60

# kalshibook-collector: its own folder; libwebsockets (WebSocket client; bookworm's libcurl
# has no ws support) is linked into it alone.
COLLECTOR_SRCS := $(sort $(wildcard app/collector/*.c))
COLLECTOR_OBJS := $(COLLECTOR_SRCS:%.c=$(B)/%.o)
LWS_LDLIBS = $(shell pkg-config --libs libwebsockets 2>/dev/null)

PROGS := $(APPDIR)/kalshibook-fcgi $(APPDIR)/kbctl $(APPDIR)/kalshibook-collector

# npm tooling pinned in package-lock.json: Redoc for /docs, swagger-parser and ajv for the
# spec tests, playwright-core for the browser tests. npm ci runs only when the lockfile is
# newer than the installed tree, so builds after the first one need no network.
NPM_STAMP := node_modules/.package-lock.json
STATIC_BUILT := static/docs/redoc.standalone.js

.PHONY: all programs deps run check check-build tests bench clean format format-check static fuzz fuzz-build fuzz-targets
.DEFAULT_GOAL := all

all: programs static

# The C library and programs only (what the Debian package builds).
programs: $(LIBKB) $(PROGS)

static: $(STATIC_BUILT)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --prefer-offline --ignore-scripts
	@touch $@

# The bundle's sidebar footer loads Redocly's logo from their CDN; point it at data:, (the
# image then fails locally and Redoc drops it), so /docs makes no request off this origin.
REDOC_CDN_LOGO := https://cdn.redoc.ly/redoc/logo-mini.svg
static/docs/redoc.standalone.js: $(NPM_STAMP)
	grep -q '$(REDOC_CDN_LOGO)' node_modules/redoc/bundles/redoc.standalone.js
	sed 's|$(REDOC_CDN_LOGO)|data:,|g' node_modules/redoc/bundles/redoc.standalone.js >$@.tmp
	! grep -q 'cdn\.redoc\.ly' $@.tmp
	mv $@.tmp $@

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

# lib/crypto.c is where secrets are compared (kb_crypto.h): without builtins, every byte compare
# it makes stays a call that test_security sees with nm, instead of being inlined.
$(B)/lib/crypto.o: CFLAGS_ALL += -fno-builtin

$(LIBKB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(APPDIR)/kalshibook-fcgi: $(FCGI_OBJS) $(APP_CORE_OBJS) $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(FCGI_OBJS) $(APP_CORE_OBJS) $(LIBKB) $(PC_LDLIBS)

$(APPDIR)/kbctl: $(KBCTL_OBJS) $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(KBCTL_OBJS) $(LIBKB) $(PC_LDLIBS)

$(APPDIR)/kalshibook-collector: $(COLLECTOR_OBJS) $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -pthread -o $@ $(COLLECTOR_OBJS) $(LIBKB) $(PC_LDLIBS) $(LWS_LDLIBS)

# A unit test that needs more objects lists them in UNIT_EXTRA_<name>. The collector
# reader's gap bookkeeping (shards.c, feed.c) runs with its network side stubbed.
UNIT_EXTRA_test_collector_feed := $(B)/app/collector/shards.o $(B)/app/collector/feed.o
$(B)/t/unit/test_collector_feed: $(UNIT_EXTRA_test_collector_feed)
# The FastCGI adapter's answer ends, against a client speaking FastCGI as nginx does.
UNIT_EXTRA_test_fcgi := $(B)/app/fcgi/fcgi.o
$(B)/t/unit/test_fcgi: $(UNIT_EXTRA_test_fcgi)

$(B)/t/unit/%: t/unit/%.c $(APP_CORE_OBJS) $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Iapp/fcgi -Iapp/collector -It $(CHECK_CFLAGS) $(LDFLAGS_ALL) -o $@ $< \
		$(UNIT_EXTRA_$*) $(APP_CORE_OBJS) $(LIBKB) $(PC_LDLIBS) $(CHECK_LDLIBS)

# An integration test that needs app objects lists them in INTEG_EXTRA_<name>: the
# malformed-bytes sweep reads the route table itself, so a new route is swept too.
INTEG_EXTRA_test_malformed_bytes := $(APP_CORE_OBJS)
$(B)/t/integration/test_malformed_bytes: $(INTEG_EXTRA_test_malformed_bytes)

$(B)/t/integration/%: t/integration/%.c $(INTEG_HARNESS) $(wildcard t/integration/*.h) $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Iapp/fcgi -It -It/integration $(CHECK_CFLAGS) $(LDFLAGS_ALL) -o $@ $< \
		$(INTEG_HARNESS) $(INTEG_EXTRA_$*) $(LIBKB) $(PC_LDLIBS) $(CHECK_LDLIBS)

tests: $(UNIT_BINS) $(INTEG_BINS)

# libFuzzer targets (clang, ASan + UBSan): build/fuzz/t/fuzz/fuzz_<name>. A target that
# needs more app objects lists them in FUZZ_EXTRA_<name>.
.SECONDEXPANSION:
build/fuzz/t/fuzz/%: t/fuzz/%.c $(APP_CORE_OBJS) $(LIBKB) $$(FUZZ_EXTRA_$$*)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Iapp/fcgi -fsanitize=fuzzer $(LDFLAGS_ALL) -o $@ $< \
		$(FUZZ_EXTRA_$*) $(APP_CORE_OBJS) $(LIBKB) $(PC_LDLIBS)

fuzz-build: deps
	$(MAKE) VARIANT=fuzz fuzz-targets

fuzz-targets: $(FUZZ_BINS)

# Run every target for FUZZ_SECONDS on its seed corpus (t/fuzz/corpus/NAME);
# new inputs collect in build/fuzz/corpus/NAME, crashes in build/fuzz/crashes.
fuzz: fuzz-build
	t/fuzz/run.sh $(FUZZ_SECONDS)

# Install what is missing; apt-get runs only when a package is absent. A package counts as
# present when an installed package Provides it (e.g. npm inside a nodejs build that bundles it).
deps:
	@missing=$$(for p in $(PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || \
		dpkg-query -W -f='$${Status}|$${Provides}\n' 2>/dev/null | grep '^install ok installed|' | \
			cut -d'|' -f2 | tr ',' '\n' | sed 's/ (.*//; s/ //g' | grep -qx "$$p" || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

run: deps
	$(MAKE) VARIANT=release all build/release/t/kalshi/kalshi-standin
	t/stack.sh run var

# gcc -Werror build, then the clang ASan/UBSan build and its tests.
check-build: deps
	$(MAKE) VARIANT=release all tests
	$(MAKE) VARIANT=asan all tests
	$(MAKE) VARIANT=fuzz fuzz-targets

check: check-build
	t/run-tests.sh build/asan

bench: deps
	$(MAKE) VARIANT=release all build/release/t/kalshi/kalshi-standin
	t/bench/bench.sh "$(CURDIR)"

# Every C file of the repository, tracked or new (not ignored): lib/, app/ (app/collector/
# too), t/*.h, t/unit, t/integration, t/fuzz, t/chaos, t/bench, t/kalshi, ... . Without git
# (an unpacked source package), the directories that hold C today.
FORMAT_SRCS = $(or $(shell git ls-files -co --exclude-standard -- '*.c' '*.h' 2>/dev/null), \
	$(wildcard lib/*.[ch] app/*.[ch] app/*/*.[ch] t/*.h t/*/*.[ch]))

# make format rewrites them in the house style; make format-check fails (naming each file
# and line) when make format would change any of them.
format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@if out=$$(clang-format --dry-run -Werror $(FORMAT_SRCS) 2>&1); then \
		echo "format-check: $(words $(FORMAT_SRCS)) files in the house style"; \
	else \
		printf '%s\n' "$$out" | head -n 30; \
		echo "format-check: make format would change" \
			$$(printf '%s\n' "$$out" | sed -n 's/^\([^:]*\.[ch]\):[0-9]*:[0-9]*: error: .*/\1/p' | sort -u); \
		exit 1; \
	fi

clean:
	rm -rf build lib/libkb.a app/kalshibook-fcgi app/kbctl app/kalshibook-collector $(STATIC_BUILT)

-include $(LIB_OBJS:.o=.d) $(APP_CORE_OBJS:.o=.d) $(FCGI_OBJS:.o=.d) $(KBCTL_OBJS:.o=.d) \
	$(COLLECTOR_OBJS:.o=.d)

# ---- Debian package ------------------------------------------------------------
# make deb  ->  build/deb/kalshibook_<version>_<arch>.deb (dpkg-buildpackage from
# packaging/debian/, then lintian; see packaging/build-deb.sh). Rebuilt only when
# a packaged source file changed, so tests can call it cheaply.
PKGS_DEB := dpkg-dev debhelper lintian fakeroot systemd libfcgi-bin
PKGS += $(PKGS_DEB)
DEB_VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' packaging/debian/changelog)
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE := build/deb/kalshibook_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_INPUTS := $(wildcard $(shell git ls-files -co --exclude-standard -- Makefile README.md lib app \
	db nginx static packaging docs 2>/dev/null))

.PHONY: deb
deb: deps $(DEB_FILE)

$(DEB_FILE): $(DEB_INPUTS) $(STATIC_BUILT)
	packaging/build-deb.sh $@

# ---- reliability: chaos and soak (docs/testing.md "Reliability") ----------------
# make chaos: 10,000 metered requests from 64 clients through every fault kind, then the money
# invariants; then the collector's chaos run (every Kalshi fault, Postgres stops, a leader
# SIGKILL; gaps, books against the truth, no duplicates, nothing spooled lost); make soak:
# 1,000,000 mixed requests against the release build with RSS/FD sampling. make check runs a
# short version of each (t/run-tests.sh).
CHAOS_BIN := $(B)/t/chaos/chaos
CHAOS_REQUESTS ?= 10000
CHAOS_CLIENTS ?= 64
CHAOS_ROUNDS ?= 2
# CHAOS_HOSTS=2: two app hosts on one Postgres, with host-level faults (t/lib/hosts.sh), and a
# kalshibook-collector on each (one leads; a whole-host kill takes its collector with it).
CHAOS_HOSTS ?= 1
# CHAOS_BOUNCER=1: the pools reach Postgres through PgBouncer (session mode).
CHAOS_BOUNCER ?= 0
SOAK_REQUESTS ?= 1000000
# The collector's chaos run (t/collector/chaos.sh): markets, messages/s, fault rounds.
COLLECTOR_CHAOS_MARKETS ?= 200
COLLECTOR_CHAOS_MPS ?= 3000
COLLECTOR_CHAOS_ROUNDS ?= 3
.PHONY: chaos soak

CHAOS_SRCS := $(sort $(wildcard t/chaos/*.c))
$(B)/t/chaos/chaos: $(CHAOS_SRCS) t/chaos/chaos.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -pthread -o $@ $(CHAOS_SRCS) $(PC_LDLIBS)

tests: $(CHAOS_BIN)

chaos: deps
	$(MAKE) VARIANT=release all build/release/t/chaos/chaos build/release/t/kalshi/kalshi-standin \
		build/release/t/collector/collector-check
	CHAOS_HOSTS=$(CHAOS_HOSTS) CHAOS_BOUNCER=$(CHAOS_BOUNCER) t/chaos/run.sh build/release $(CHAOS_REQUESTS) $(CHAOS_CLIENTS) $(CHAOS_ROUNDS)
	t/collector/chaos.sh build/release $(COLLECTOR_CHAOS_MARKETS) $(COLLECTOR_CHAOS_MPS) \
		$(COLLECTOR_CHAOS_ROUNDS)

soak: deps
	$(MAKE) VARIANT=release all
	t/soak/run.sh build/release $(SOAK_REQUESTS)

# ---- the live collector and its Kalshi stand-in (README "Live collector") --------------
# t/kalshi/: a Kalshi WebSocket v2 + REST v2 server (TLS) with a deterministic feed and
# faults on command, for the collector's tests, chaos run, benchmarks and `make run`.
KALSHI_SRCS := $(sort $(wildcard t/kalshi/*.c))
STANDIN := $(B)/t/kalshi/kalshi-standin
$(STANDIN): $(KALSHI_SRCS) t/kalshi/standin.h $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -It/kalshi $(LDFLAGS_ALL) -o $@ $(KALSHI_SRCS) $(LIBKB) $(PC_LDLIBS)

# collector-check: the verdict of the collector chaos run (t/collector/chaos.sh).
CCHECK_SRCS := $(sort $(wildcard t/collector/*.c))
CCHECK := $(B)/t/collector/collector-check
$(CCHECK): $(CCHECK_SRCS) t/collector/check.h $(LIBKB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -It/collector $(LDFLAGS_ALL) -o $@ $(CCHECK_SRCS) $(LIBKB) $(PC_LDLIBS)

tests: $(STANDIN) $(CCHECK)
