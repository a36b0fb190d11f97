# Two commands matter: `make demo` and `make test`. Both install what is missing first.
VENV    := .venv
CNTRACE := $(VENV)/bin/cntrace

.PHONY: demo test setup lint bench clean

setup:
	@scripts/setup-system.sh
	@scripts/setup-venv.sh

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check cntrace tests bench
	$(VENV)/bin/ruff format --check cntrace tests bench
	$(VENV)/bin/mypy

bench: setup
	@for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	-$(CNTRACE) lab down --all
	-$(CNTRACE) cleanup
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
