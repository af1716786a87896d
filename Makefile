# mailpool - see README.md.  `make run` starts the service, `make test`
# runs every test; both install missing Debian packages first.

CC       ?= cc
BUILD    ?= build
PKGS     := libmicrohttpd jansson gnutls inih sqlite3 gmime-3.0 libidn2 hogweed libpq libcurl
WARN     := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wformat=2 \
            -Wvla -Wwrite-strings -Wimplicit-fallthrough -fno-common \
            -fstack-protector-strong
ifneq ($(WERROR),)
WARN     += -Werror
endif
OPT      ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -I. -Ismtpcore/include -MMD -MP
CFLAGS   += $(WARN) $(OPT) $(SAN)
LDFLAGS  += $(SAN) -pthread
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SMTPCORE_SRC := $(wildcard smtpcore/src/*.c)
UTIL_SRC     := $(wildcard util/*.c)
CONFIG_SRC   := $(wildcard config/*.c)
SERVER_SRC   := $(wildcard server/*.c)
QUEUE_SRC    := $(wildcard queue/*.c)
COMPOSE_SRC  := $(wildcard compose/*.c)
DKIM_SRC     := $(wildcard dkim/*.c)
WEBHOOK_SRC  := $(wildcard webhook/*.c)
API_SRC      := $(wildcard api/*.c) api/openapi_data.S api/ui_data.S
RESULT_SRC   := $(wildcard result/*.c)
CMD_SRC      := $(wildcard cmd/mailpool/*.c)
SUPPORT_SRC  := $(wildcard tests/support/*.c)

obj = $(patsubst %.S,$(BUILD)/obj/%.o,$(patsubst %.c,$(BUILD)/obj/%.o,$(1)))

LIB_SMTPCORE := $(BUILD)/libsmtpcore.a
LIB_CONFIG   := $(BUILD)/libmpconfig.a
LIB_SERVER   := $(BUILD)/libmpserver.a
LIB_API      := $(BUILD)/libmpapi.a
LIB_QUEUE    := $(BUILD)/libmpqueue.a
LIB_COMPOSE  := $(BUILD)/libmpcompose.a
LIB_DKIM     := $(BUILD)/libmpdkim.a
LIB_WEBHOOK  := $(BUILD)/libmpwebhook.a
LIB_UTIL     := $(BUILD)/libmputil.a
LIB_RESULT   := $(BUILD)/libmpresult.a
LIBS_ALL     := $(LIB_API) $(LIB_WEBHOOK) $(LIB_SERVER) $(LIB_QUEUE) $(LIB_DKIM) $(LIB_CONFIG) $(LIB_COMPOSE) $(LIB_RESULT) $(LIB_SMTPCORE) $(LIB_UTIL)
MAILPOOL     := $(BUILD)/mailpool

UNIT_TESTS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
INTEG_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(wildcard tests/integration/test_*.c))
SCRIPT_TESTS := $(wildcard tests/integration/test_*.sh)

.PHONY: all deps deps-run deps-test run test unit integration check-deps \
        clean soak asan tsan valgrind lint format bench fuzz install FORCE

all: $(MAILPOOL)

deps:
	@scripts/deps.sh build
deps-run:
	@scripts/deps.sh run
deps-test:
	@scripts/deps.sh test
	@scripts/deps.sh tools
	@scripts/deps.sh exim

# Every object depends on the flags it was built with: a change of CC,
# CFLAGS, OPT or SAN rebuilds (the stamp is rewritten only when they differ).
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_NOW    = $(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' > $@

# The libraries pkg-config must find; a missing one stops the build with its
# name (scripts/deps.sh build installs them).
PKGS_OK := $(BUILD)/pkgs.ok
$(PKGS_OK): Makefile
	@mkdir -p $(dir $@)
	@pkg-config --print-errors --exists $(PKGS) || { \
	    echo "mailpool: missing libraries; run scripts/deps.sh build (as root)" >&2; \
	    exit 1; }
	@touch $@

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP) | $(PKGS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c $< -o $@

# The OpenAPI document, embedded from its file.
$(BUILD)/obj/%.o: %.S $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -c $< -o $@
$(BUILD)/obj/api/openapi_data.o: api/openapi.json
# The message log page (GET /ui/), embedded from ui/.
$(BUILD)/obj/api/ui_data.o: ui/index.html ui/app.js ui/app.css ui/icon.svg

$(LIB_SMTPCORE): $(call obj,$(SMTPCORE_SRC))
$(LIB_CONFIG):   $(call obj,$(CONFIG_SRC))
$(LIB_SERVER):   $(call obj,$(SERVER_SRC))
$(LIB_QUEUE):    $(call obj,$(QUEUE_SRC))
$(LIB_COMPOSE):  $(call obj,$(COMPOSE_SRC))
$(LIB_DKIM):     $(call obj,$(DKIM_SRC))
$(LIB_WEBHOOK):  $(call obj,$(WEBHOOK_SRC))
$(LIB_API):      $(call obj,$(API_SRC))
$(LIB_UTIL):     $(call obj,$(UTIL_SRC))
$(LIB_RESULT):   $(call obj,$(RESULT_SRC))
$(BUILD)/lib%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(MAILPOOL): $(call obj,$(CMD_SRC)) $(LIBS_ALL)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# What a link line takes of a binary's prerequisites: its sources, objects
# and libraries (not the flags stamp, nor the headers its .d file adds).
LINK_INPUTS = $(filter %.c %.o %.a,$^)

$(BUILD)/tests/%: tests/unit/%.c $(call obj,$(SUPPORT_SRC)) $(LIBS_ALL) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $(LINK_INPUTS) $(LDFLAGS) $(TEST_LDFLAGS) $(PKG_LIBS) -lcmocka -lcurl
# The failing-allocation tests count (and fail) our code's allocations.
$(BUILD)/tests/test_alloc_fail: TEST_LDFLAGS = \
    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup
$(BUILD)/tests/%: tests/integration/%.c $(call obj,$(SUPPORT_SRC)) $(LIBS_ALL) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $(LINK_INPUTS) $(LDFLAGS) $(PKG_LIBS) -lcmocka -lcurl

# The queue suite (tests/integration/queue/*.c, one suite, two backends)
# is linked into test_queue as it is and into test_queue_pg compiled with
# QUEUE_TEST_PG (objects under $(BUILD)/obj/pg/), objects before the
# libraries they call.
QUEUE_SUITE := $(wildcard tests/integration/queue/*.c)
$(BUILD)/tests/test_queue: $(call obj,$(QUEUE_SUITE))
$(BUILD)/tests/test_queue_pg: $(patsubst %.c,$(BUILD)/obj/pg/%.o,$(QUEUE_SUITE))
$(BUILD)/tests/test_queue $(BUILD)/tests/test_queue_pg: $(BUILD)/tests/%: \
    tests/integration/%.c $(call obj,$(SUPPORT_SRC)) $(LIBS_ALL) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -o $@ $< $(filter %.o,$^) $(filter %.a,$^) $(LDFLAGS) $(PKG_LIBS) -lcmocka -lcurl
$(BUILD)/obj/pg/%.o: %.c $(FLAGS_STAMP) | $(PKGS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -DQUEUE_TEST_PG=1 -c $< -o $@

$(BUILD)/bench_smtp: bench/bench_smtp.c $(LIB_SMTPCORE)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $(LINK_INPUTS) $(LDFLAGS) $(PKG_LIBS)
$(BUILD)/bench_dkim: bench/bench_dkim.c $(LIB_DKIM)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $(LINK_INPUTS) $(LDFLAGS) $(PKG_LIBS)
$(BUILD)/bench_claims: bench/bench_claims.c $(LIB_QUEUE)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $(LINK_INPUTS) $(LDFLAGS) $(PKG_LIBS)
$(BUILD)/bench_writer: bench/bench_writer.c $(LIB_QUEUE)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $(LINK_INPUTS) $(LDFLAGS) $(PKG_LIBS)

# Benchmarks (not part of test: timings never fail a test).
bench: deps-test
	@$(MAKE) --no-print-directory all $(BUILD)/bench_smtp $(BUILD)/bench_dkim $(BUILD)/bench_claims
	@scripts/deps.sh bench
	@bench/run.sh

# A long run with relay restarts; checks nothing is lost or sent twice.
soak: deps-test
	@$(MAKE) --no-print-directory all $(BUILD)/tests/test_queue
	@/usr/bin/python3 bench/soak.py
	@QUEUE_CRASH_RUNS=200 $(BUILD)/tests/test_queue

# The main job: smtp-sink as the relay on 127.0.0.1, mailpool serve in front.
run: deps-run
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

# The tests, the script tests included, run the binary of this BUILD, so
# make asan and make tsan test the instrumented one.
export MAILPOOL_BIN = $(abspath $(MAILPOOL))

# Every answer the tests receive is logged (tests/support/http.c) and, last,
# checked against api/openapi.json by tests/openapi_responses.py.
RESPONSE_LOG := $(abspath $(BUILD))/responses.jsonl
RESPONSE_CHECK := tests/openapi_responses.py

test: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_TESTS) $(INTEG_TESTS)
	@$(MAKE) --no-print-directory check-deps
	@rm -f $(RESPONSE_LOG)
	@MAILPOOL_RESPONSE_LOG=$(RESPONSE_LOG) scripts/run-tests.sh \
	    $(UNIT_TESTS) $(INTEG_TESTS) $(SCRIPT_TESTS) $(RESPONSE_CHECK)

unit: deps-test
	@$(MAKE) --no-print-directory $(UNIT_TESTS)
	@scripts/run-tests.sh $(UNIT_TESTS)

integration: deps-test
	@$(MAKE) --no-print-directory all $(INTEG_TESTS)
	@rm -f $(RESPONSE_LOG)
	@MAILPOOL_RESPONSE_LOG=$(RESPONSE_LOG) scripts/run-tests.sh \
	    $(INTEG_TESTS) $(SCRIPT_TESTS) $(RESPONSE_CHECK)

# The one-way arrows of docs/ARCHITECTURE.md, checked on #include lines.
check-deps:
	@scripts/check-deps.sh

asan:
	@$(MAKE) --no-print-directory test BUILD=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# G_SLICE: GLib's slice allocator (GMime allocates through it; GLib 2.76
# and later always use malloc) hands one thread's freed blocks to another
# through per-thread magazines ThreadSanitizer cannot see.  Read when GLib
# loads, so it is set for the processes the tests start, not by them.
# tests/tsan.supp: the races reported inside GLib and GMime themselves
# (uninstrumented, their locks invisible to ThreadSanitizer).
tsan:
	@G_SLICE=always-malloc \
	    TSAN_OPTIONS="suppressions=$(abspath tests/tsan.supp) $(TSAN_OPTIONS)" \
	    $(MAKE) --no-print-directory test BUILD=build-tsan \
	    OPT="-O1 -g" SAN="-fsanitize=thread -fno-omit-frame-pointer"

valgrind: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_TESTS) $(INTEG_TESTS)
	@VALGRIND=1 scripts/run-tests.sh $(UNIT_TESTS) $(INTEG_TESTS)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz:
	@scripts/deps.sh fuzz
	@scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The image, built with podman (the base image made by debootstrap when no
# registry has it), then run the way an orchestrator runs it.
.PHONY: container container-test
container:
	@scripts/deps.sh container
	@scripts/container.sh
container-test: container
	@tests/container/test_container.sh

# cppcheck over the modules; clang-tidy (.clang-tidy: bugprone-*, a cert-*
# subset) over smtpcore/ and util/, every finding an error.
TIDY_SRC := $(SMTPCORE_SRC) $(UTIL_SRC)
lint: deps-lint
	clang-tidy --quiet $(TIDY_SRC) -- -std=c11 -D_GNU_SOURCE -I. \
	    -Ismtpcore/include $(PKG_CFLAGS)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --inline-suppr -I. -Ismtpcore/include smtpcore config server api compose webhook \
	    result cmd

# Every tracked .c and .h file is as clang-format (.clang-format) writes it.
.PHONY: format-check deps-lint
format-check: deps-lint
	@scripts/format-check.sh
deps-lint:
	@scripts/deps.sh lint

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# make install [PREFIX=/usr/local] [DESTDIR=]: the program, the library
# and its header.
PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/include/smtpcore
	install -m 0755 $(MAILPOOL) $(DESTDIR)$(PREFIX)/bin/mailpool
	install -m 0644 $(LIB_SMTPCORE) $(DESTDIR)$(PREFIX)/lib/libsmtpcore.a
	install -m 0644 smtpcore/include/smtpcore/smtp.h \
	    $(DESTDIR)$(PREFIX)/include/smtpcore/smtp.h

clean:
	rm -rf build build-asan build-tsan

# The headers each object, test and bench binary was built from (-MMD):
# a changed header rebuilds what includes it.
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
