# Two commands for a fresh machine (see README.md): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test test-slow bench clean

install:
	bash tools/install.sh

demo: install
	$(PY) simulate.py

test: install
	$(PY) -m pytest -m "not slow and not gpu" -q

test-slow: install
	$(PY) -m pytest -m "slow" -q

bench: install
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf runs outputs multirun .pytest_cache
