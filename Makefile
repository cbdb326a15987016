# Two commands do all the set-up on a fresh machine with Python 3.11+ and make:
#   make run   -> ulam reproduce --quick, report in ./report/
#   make test  -> the whole test suite
# Each installs only what it needs into .venv/ (pinned by constraints.txt):
#   run -> .[repro]   test -> .[test]   bench -> .[bench]   docs -> .[docs]
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test test-fast bench bench-docs lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ulam needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra: `make test` does not pull the benchmark anchors, `make run` neither.
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$*]'
	@touch $@

run: $(VENV)/.installed-repro
	$(BIN)/ulam reproduce --quick --out report

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

# Each benchmark writes docs/benchmarks/<area>.md; docs/benchmarks.md collects them.
bench: $(VENV)/.installed-bench
	for b in benchmarks/[!_]*.py; do $(BIN)/python $$b || exit 1; done
	$(MAKE) bench-docs

bench-docs:
	{ echo "# Benchmarks"; echo; \
	  echo "Each section was written by the benchmark script it names, run as shown, side by side with the anchor library in one process."; \
	  echo "Regenerate everything with \`make bench\` (or one script, then \`make bench-docs\`)."; echo; \
	  for f in docs/benchmarks/*.md; do cat $$f; echo; done; } > docs/benchmarks.md

# Re-pin constraints.txt: resolve every extra afresh in a scratch venv and freeze it.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[test,bench,repro,plots,arviz,sklearn,ray,pandas]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) report .pytest_cache
