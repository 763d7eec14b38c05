# Switchboard build.
#
#   make            build build/release/switchboard
#   make run        install what is missing, build, serve on :8080 (./var)
#   make test       install what is missing, build, run every test suite:
#                   unit (release and ASan+UBSan), fuzz smoke, end-to-end
#   make fuzz       run every fuzz target longer (FUZZ_SECONDS each)
#   make bench      run the benchmarks (bounded)
#
# Sources, unit tests (tests/unit/test_*.c) and fuzz targets (fuzz/fuzz_*.c)
# are found by pattern; adding a file needs no change here.

PKGS      := libuv jansson sqlite3 libcrypto libssl libcurl
CC        ?= cc
CLANG     ?= clang
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
             -Wstrict-prototypes -Wmissing-prototypes -Wvla
BASEFLAGS := -std=c11 -D_GNU_SOURCE -Isrc $(WARN) $(PKG_CFLAGS) -pthread
LIBS      := $(PKG_LIBS) -pthread -lm

SRC       := $(shell find src -name '*.c' | sort)
LIB_SRC   := $(filter-out src/main.c,$(SRC))
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC  := $(sort $(wildcard fuzz/fuzz_*.c))
UNIT_NAMES := $(basename $(notdir $(UNIT_SRC)))
FUZZ_NAMES := $(basename $(notdir $(FUZZ_SRC)))

FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10

# --- variants: release, asan (ASan + UBSan), fuzz (libFuzzer) -------------
release_CC     := $(CC)
release_CFLAGS := -O2 -g
asan_CC        := $(CLANG)
asan_CFLAGS    := -O1 -g -fno-omit-frame-pointer \
                  -fsanitize=address,undefined -fno-sanitize-recover=undefined
fuzz_CC        := $(CLANG)
fuzz_CFLAGS    := -O1 -g -fno-omit-frame-pointer \
                  -fsanitize=fuzzer-no-link,address,undefined \
                  -fno-sanitize-recover=undefined -DSB_FUZZING

.PHONY: all run test unit unit-asan fuzz fuzz-smoke e2e bench deps clean \
        check-deps lint
.DEFAULT_GOAL := all
.SECONDARY:

all: build/release/switchboard

define variant
build/$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$($(1)_CC) $$(BASEFLAGS) $$($(1)_CFLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/libswitchboard.a: $$(LIB_SRC:%.c=build/$(1)/obj/%.o)
	@rm -f $$@
	ar rcs $$@ $$^

build/$(1)/switchboard: build/$(1)/obj/src/main.o build/$(1)/libswitchboard.a
	$$($(1)_CC) $$($(1)_CFLAGS) -o $$@ $$^ $$(LIBS)

build/$(1)/unit/%: build/$(1)/obj/tests/unit/%.o build/$(1)/libswitchboard.a
	@mkdir -p $$(dir $$@)
	$$($(1)_CC) $$($(1)_CFLAGS) -o $$@ $$^ $$(LIBS) -lcmocka
endef
$(eval $(call variant,release))
$(eval $(call variant,asan))
$(eval $(call variant,fuzz))

build/fuzz/bin/%: build/fuzz/obj/fuzz/%.o build/fuzz/libswitchboard.a
	@mkdir -p $(dir $@)
	$(CLANG) $(fuzz_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

-include $(shell find build -name '*.d' 2>/dev/null)

# --- entry points ----------------------------------------------------------
deps:
	@bash scripts/deps.sh

run: deps build/release/switchboard
	./build/release/switchboard serve --port $${PORT:-8080} --data-dir ./var

unit: $(UNIT_NAMES:%=build/release/unit/%)
	@bash scripts/run-unit.sh build/release/unit $(UNIT_NAMES)

unit-asan: $(UNIT_NAMES:%=build/asan/unit/%)
	@bash scripts/run-unit.sh build/asan/unit $(UNIT_NAMES)

fuzz-smoke: $(FUZZ_NAMES:%=build/fuzz/bin/%)
	@bash scripts/run-fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

fuzz: $(FUZZ_NAMES:%=build/fuzz/bin/%)
	@bash scripts/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

e2e: build/release/switchboard build/asan/switchboard
	@bash scripts/run-e2e.sh

test: deps
	@rm -f build/test-results.txt
	@$(MAKE) --no-print-directory all build/asan/switchboard
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory e2e
	@bash scripts/summary.sh

bench: deps build/release/switchboard
	@bash bench/run.sh

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr -Isrc --std=c11 src
	@for f in $(SRC); do clang-tidy -quiet $$f -- -std=c11 -D_GNU_SOURCE -Isrc; done

clean:
	rm -rf build
