# Two commands for a fresh machine (see README.md): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test test-slow test-gpu bench card clean

install:
	bash tools/install.sh

demo: install
	$(PY) simulate.py

# on every core (pytest-xdist, one test file per worker at a time); the slowest tests are listed at the end
test: install
	$(PY) -m pytest -m "not slow and not gpu" -q -n auto --dist loadfile --durations=30

test-slow: install
	$(PY) -m pytest -m "slow" -q -n auto --dist loadfile

# on a machine where torch sees CUDA
test-gpu: install
	$(PY) -m pytest -m "gpu" -q
	$(PY) bench/bench_md.py --model models/mace_finetuned.model --systems 32 --steps 50 --device cuda
	$(PY) bench/bench_md.py --model models/mace_finetuned.model --systems 256 --steps 50 --device cuda --skip-ase

bench: install
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# labelled sets beside dataset.extxyz: not their inputs (*_structures.extxyz) nor label shards waiting to be merged
LABELLED_SETS = $(shell ls data/ag3sbri/relaxed_r*.extxyz data/ag3sbri/al_round*.extxyz data/ag3sbri/md_check_*.extxyz 2>/dev/null \
	| grep -v -e '_structures.extxyz$$' -e '\.shard[0-9]*of[0-9]*\.extxyz$$')

# regenerate the bundled dataset's data card and plots (run before committing a grown dataset)
card: install
	$(PY) -m capml.io.report data/ag3sbri/dataset.extxyz --system ag3sbri --card data/ag3sbri/README.md \
	    --extra data/ag3sbri/relaxed.extxyz $(LABELLED_SETS)

clean:
	rm -rf runs multirun .pytest_cache
