# ahorro - build with `make`; tests with `make test`; sanitizers with `make SAN=1 test`.
#
#   make                 build/ahorro and build/ahorro-fake (gcc, -O2)
#   make CC=clang        same with clang
#   make SAN=1           ASan+UBSan build in build-san/
#   make ALLOC=glibc     without jemalloc (used by default when libjemalloc-dev is installed)
#   make unit            C unit tests (Check)
#   make fuzz            libFuzzer drivers (clang) in build-fuzz/

CC ?= cc
PKGS := libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto hiredis libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wno-unused-parameter
OPT ?= -O2 -g
CFLAGS += $(OPT) -std=c17 -D_GNU_SOURCE -pthread $(WARN) -Isrc $(PKG_CFLAGS)
BASE_LIBS := $(PKG_LIBS) -pthread -lm
LDLIBS += $(BASE_LIBS)

# The allocator: jemalloc (Debian's libjemalloc-dev) when it is installed, for
# the optimised build only; ASan and libFuzzer bring their own. It costs ~8%
# less CPU per request at 50 connections than glibc's (docs/performance.md,
# "Allocator"). ALLOC=glibc builds without it.
ifneq ($(SAN),1)
  ALLOC ?= $(shell pkg-config --exists jemalloc 2>/dev/null && echo jemalloc || echo glibc)
endif
ifeq ($(ALLOC),jemalloc)
  CFLAGS += -DAH_JEMALLOC $(shell pkg-config --cflags jemalloc)
  LDLIBS += $(shell pkg-config --libs jemalloc)
endif

ifeq ($(SAN),1)
  B := build-san
  OPT := -O1 -g
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else
  B ?= build
endif

LIB_SRC := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
FAKE_SRC := $(shell find fake -name '*.c' | sort)
FAKE_OBJ := $(FAKE_SRC:%.c=$(B)/obj/%.o)
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' | sort)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

.PHONY: all clean unit test test-integration fuzz format-check lint
all: $(B)/ahorro $(B)/ahorro-fake

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The dashboard's page is copied into the binary by the assembler's .incbin
# (src/server/dashboard_page.c), which the compiler's -MMD does not see.
$(B)/obj/src/server/dashboard_page.o: web/dashboard.html

$(B)/libahorro.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/ahorro: $(B)/obj/src/main.o $(B)/libahorro.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/ahorro-fake: $(FAKE_OBJ) $(B)/libahorro.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libahorro.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags check) -Itests/unit -o $@ $< $(B)/libahorro.a \
	    $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs check)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; CK_FORK=yes $$t; done

test-integration: all
	cd tests/integration && AHORRO_BIN=$(CURDIR)/$(B)/ahorro AHORRO_FAKE_BIN=$(CURDIR)/$(B)/ahorro-fake AHORRO_SAN=$(SAN) \
	    node --test --test-reporter=spec *.test.mjs

test: unit test-integration

FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
fuzz:
	$(MAKE) B=build-fuzz CC=clang OPT="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libahorro.a
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$f -> build-fuzz/$$n"; \
	  clang -std=c17 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -Isrc $(PKG_CFLAGS) \
	    -o build-fuzz/$$n $$f build-fuzz/libahorro.a $(BASE_LIBS) || exit 1; done

format-check:
	clang-format --dry-run --Werror $$(find src fake tests/unit fuzz -name '*.[ch]')

# Functions curl's checksrc bans, for the same reasons: unbounded or unchecked.
BANNED := '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atof|strtok)[[:space:]]*\('
lint: format-check
	@if grep -rnE $(BANNED) src fake tests/unit fuzz; then \
	  echo "banned functions above (use snprintf, strtol with checks, strtok_r)"; exit 1; fi

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(B) -name '*.d' 2>/dev/null)
