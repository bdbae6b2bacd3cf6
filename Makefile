# Commands a newcomer types.  Everything runs inside .venv (created on first use).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: demo test test-kernels spread bench bench-scale docs lint format clean

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
	$(PY) -m sclens.demo --out out

# Two one-thread workers (pytest-xdist; each starts on a contiguous half of the tests and steals
# from the other's end when idle): small networks train faster on two single-threaded processes
# than on one process with two threads. 192 tests in 11:39 on a 2-core machine.
test: $(VENV)/.installed-test  ## run the test suite
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest tests -q -n 2 --dist worksteal --durations=15

# The fast tests again under other CPU kernels than this CPU's own: torch's AVX2 kernels with
# MKL's and oneDNN's AVX2 paths where the CPU has AVX-512 (as on an AVX2-only CPU), else torch's
# portable kernels. Results that hinge on the CPU's floating point show up here.
FAST_TESTS := tests/test_core.py tests/test_errors.py tests/test_options.py \
	tests/test_model_storage.py tests/test_threads.py tests/test_project.py
test-kernels: $(VENV)/.installed-test  ## the fast tests under a second set of CPU kernels
	@cap=$$($(PY) -c "import torch; print(torch.backends.cpu.get_cpu_capability())"); \
	if [ "$$cap" = AVX512 ]; then env="ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"; \
	else env="ATEN_CPU_CAPABILITY=default"; fi; \
	echo "native kernels $$cap; rerunning the fast tests with $$env"; \
	env $$env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest $(FAST_TESTS) -q -n 2 --dist loadfile

spread: $(VENV)/.installed-test  ## floors' spread: tests over seeds x CPU kernels x threads (slow)
	$(PY) benchmarks/spread.py --out benchmarks/results

bench: $(VENV)/.installed-test  ## benchmarks against scanpy (slow; not run by CI)
	$(PIP) install --quiet -e ".[bench]"
	$(PY) benchmarks/run.py --out benchmarks/results
	$(PY) benchmarks/den.py --out benchmarks/results
	$(PY) benchmarks/den.py --out benchmarks/results --datasets synthetic --seeds 0
	$(PY) benchmarks/den_stability.py --datasets baron,pbmc68k --pairs 0:1,1:2,2:3,3:4 --out benchmarks/results
	$(PY) benchmarks/ardr.py --out benchmarks/results
	$(PY) benchmarks/gne.py --out benchmarks/results --hvg seurat
	$(PY) benchmarks/gne.py --out benchmarks/results --hvg pearson
	$(PY) benchmarks/gne.py --out benchmarks/results --dataset pbmc10x --seeds ""
	$(PY) benchmarks/gne_nb.py --out benchmarks/results
	$(PY) benchmarks/rank_genes.py --out benchmarks/results
	$(PY) benchmarks/attributions.py --out benchmarks/results --save benchmarks/cache/attributions
	$(PY) benchmarks/maps.py --out benchmarks/results
	$(PY) benchmarks/portability.py --datasets baron --caps avx512,avx2 --threads 1,2 --seeds 0,1 --out benchmarks/results

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
