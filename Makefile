# patchsae - plain Makefile (house-style.md §10.8).
#   make            build build/patchsae and build/patchsae-tui
#   make test       install missing Debian packages, build, run every test
#   make check      the tests under AddressSanitizer + UBSan (separate build dir)
#   make demo       train the demo SAE and build db/demo.db from assets/
#   make run        build, build the demo index if missing, open the explorer
#   make bench      benchmarks against PyTorch (see bench/README.md)
#   make install    PREFIX=/usr/local: programs and man pages
# BUILD=dir keeps objects apart (parallel work trees, sanitizer builds).

BUILD      ?= build
PREFIX     ?= /usr/local
CC         ?= cc
OPT        ?= -O2 -g
PKG_CONFIG ?= pkg-config
PKGS        = ncursesw sqlite3 libsixel openblas jansson libzip libpng libjpeg zlib

PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

CPPFLAGS += -Iinclude -I$(BUILD)/gen $(PKG_CFLAGS)
CFLAGS   += -std=c11 -Wall -Wextra -Wpedantic $(OPT)
LDLIBS   += $(PKG_LIBS) -lpthread -lm

LIB_SRC  := $(filter-out src/main.c src/tui_main.c,$(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/tobj/%.o)
CMD_SRC  := $(wildcard src/cmd_*.c)
SUITES   := $(patsubst tests/test_%.c,%,$(wildcard tests/test_*.c))
GEN      := $(BUILD)/gen/suites.h $(BUILD)/gen/cmds.h $(BUILD)/gen/schema_sql.h
PROGS    := $(BUILD)/patchsae $(if $(wildcard src/tui_main.c),$(BUILD)/patchsae-tui)

.PHONY: all deps test check run demo bench install uninstall clean headers
all: $(PROGS) $(BUILD)/run-tests

$(BUILD)/obj $(BUILD)/tobj $(BUILD)/gen:
	@mkdir -p $@

# Generated registries: one suite per tests/test_NAME.c, one subcommand per
# src/cmd_NAME.c, and the schema compiled in as a string.
$(BUILD)/gen/suites.h: $(TEST_SRC) Makefile | $(BUILD)/gen
	@printf '%s\n' $(foreach s,$(SUITES),'SUITE($(s))') > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/cmds.h: $(CMD_SRC) Makefile | $(BUILD)/gen
	@printf '%s\n' $(foreach c,$(CMD_SRC),'CMD($(patsubst src/cmd_%.c,%,$(c)))') > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/schema_sql.h: $(wildcard db/schema.sql) Makefile | $(BUILD)/gen
	@{ printf 'static const char schema_sql[] =\n'; \
	   if [ -f db/schema.sql ]; then sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' db/schema.sql; fi; \
	   printf '"";\n'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: src/%.c $(GEN) | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/tobj/%.o: tests/%.c $(GEN) | $(BUILD)/tobj
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libps.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/patchsae: $(BUILD)/obj/main.o $(BUILD)/libps.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/patchsae-tui: $(BUILD)/obj/tui_main.o $(BUILD)/libps.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/run-tests: $(TEST_OBJ) $(BUILD)/libps.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/obj/main.d $(BUILD)/obj/tui_main.d

deps:
	@sh tools/deps.sh

# The C suites, then the shell suites (tests/*.sh); the last line is the total.
test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh tests/all.sh

check: deps
	@$(MAKE) --no-print-directory BUILD=build-asan \
	    OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" all
	@ASAN_OPTIONS=detect_leaks=1 BUILD=build-asan PS_SANITIZED=1 sh tests/all.sh

# The demo index from the committed assets, with the C tools only.
demo: all
	@sh tools/make-demo.sh $(BUILD)

run: deps all
	@sh tools/run-demo.sh $(BUILD)

bench: all
	@sh bench/run.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	for m in man/*.1; do [ -f "$$m" ] && install -m 644 "$$m" $(DESTDIR)$(PREFIX)/share/man/man1/; done; true
	for m in man/*.5; do [ -f "$$m" ] && install -m 644 "$$m" $(DESTDIR)$(PREFIX)/share/man/man5/; done; true

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/patchsae $(DESTDIR)$(PREFIX)/bin/patchsae-tui

# Every header compiles on its own.
headers: | $(BUILD)/gen
	@for h in include/*.h; do echo "#include \"$$(basename $$h)\"" | \
	    $(CC) $(CPPFLAGS) $(CFLAGS) -fsyntax-only -x c - || exit 1; done; echo "headers ok"

clean:
	rm -rf build build-asan build-*
