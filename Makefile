# Two commands do all the set-up on a fresh machine with Python 3.11+ and make:
#   make run   -> ulam reproduce --quick, report in ./report/
#   make test  -> the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-fast bench bench-docs lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ulam needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ulam reproduce --quick --out report

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

# Each benchmark writes docs/benchmarks/<area>.md; docs/benchmarks.md collects them.
bench: $(STAMP)
	for b in benchmarks/[!_]*.py; do $(BIN)/python $$b || exit 1; done
	$(MAKE) bench-docs

bench-docs:
	{ echo "# Benchmarks"; echo; \
	  echo "Each section was written by the benchmark script it names, run as shown, side by side with the anchor library in one process."; \
	  echo "Regenerate everything with \`make bench\` (or one script, then \`make bench-docs\`)."; echo; \
	  for f in docs/benchmarks/*.md; do cat $$f; echo; done; } > docs/benchmarks.md

# Re-pin the tested versions after changing dependencies.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) report .pytest_cache
