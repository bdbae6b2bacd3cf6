# Commands a newcomer types.  Everything runs inside .venv (created on first use).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: demo test bench bench-scale docs lint format clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first: the pinned version is the CPU build on this machine; an unpinned
	# torch pulled in by a dependency would fetch a multi-GB CUDA build.
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed  ## train a map on the shipped pancreas data, write out/
	$(PY) -m sclens.demo --data data/baron_human_pancreas.h5ad --out out

test: $(VENV)/.installed-test  ## run the test suite
	$(PY) -m pytest tests -q

bench: $(VENV)/.installed-test  ## benchmarks against scanpy (slow; not run by CI)
	$(PIP) install --quiet -e ".[bench]"
	$(PY) benchmarks/run.py --out benchmarks/results
	$(PY) benchmarks/den.py --out benchmarks/results
	$(PY) benchmarks/den_stability.py --datasets baron,pbmc68k --pairs 0:1,1:2,2:3,3:4 --out benchmarks/results
	$(PY) benchmarks/ardr.py --out benchmarks/results
	$(PY) benchmarks/gne.py --out benchmarks/results --hvg seurat
	$(PY) benchmarks/gne.py --out benchmarks/results --hvg pearson
	$(PY) benchmarks/gne.py --out benchmarks/results --dataset pbmc10x --seeds ""
	$(PY) benchmarks/gne_nb.py --out benchmarks/results
	$(PY) benchmarks/rank_genes.py --out benchmarks/results

bench-scale: $(VENV)/.installed-test  ## 100k / 300k / 1M cells backed on disk (about an hour, ~10 GB of disk)
	$(PIP) install --quiet -e ".[bench]"
	$(PY) benchmarks/scale.py --out benchmarks/results

docs: $(VENV)/.installed
	$(PIP) install --quiet -e ".[docs]"
	$(PY) -m sphinx -W -b html docs docs/_build/html

lint:
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format:
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf out docs/_build .pytest_cache
