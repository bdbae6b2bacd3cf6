"""The spread of every measured test quantity over seeds x torch CPU kernels x thread counts.

    python benchmarks/spread.py --out benchmarks/results [--caps default,avx2,avx512] \
        [--threads 1,2] [--seeds 0,1] [--jobs 2] [-- pytest args ...]

Each (kernels, threads, seed) runs the test suite (by default the files whose tests hold results
to a floor) in its own process, with

- ``ATEN_CPU_CAPABILITY`` selecting torch's vectorised kernels at start-up, as on a CPU that has
  only those (``avx2`` also sets ``MKL_CBWR=AVX2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``, so MKL and
  oneDNN take their AVX2 paths as on an AVX2-only AMD or Intel CPU; ``default`` changes torch's
  own kernels only: MKL's ``COMPATIBLE`` path is too slow to run the suite);
- ``OMP_NUM_THREADS`` (and so torch's and sclens' thread count);
- ``SCLENS_TEST_SEED``: the seed of the training calls in the tests (``tests/conftest.py``).

Every value a test passes through ``measured(name, value)`` is logged, and the table gives, per
test and quantity, the range over all runs next to the floor the test asserts. A test's floor is
set below that range with a margin; its docstring or comment quotes the range.
Writes ``<out>/spread.md`` and ``spread.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TESTS = [
    "tests/test_ptsne.py",
    "tests/test_den.py",
    "tests/test_ardr.py",
    "tests/test_gne.py",
    "tests/test_project.py",
    "tests/test_rank_genes.py",
    "tests/test_backed.py",
]
KERNEL_ENV = {
    "default": {},
    "avx2": {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {},
}


def run_config(cap: str, threads: int, seed: int, tests: list[str], work: Path) -> subprocess.Popen:
    tag = f"{cap}_t{threads}_s{seed}"
    record, junit = work / f"{tag}.jsonl", work / f"{tag}.xml"
    record.unlink(missing_ok=True)
    env = dict(
        os.environ,
        ATEN_CPU_CAPABILITY=cap,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        SCLENS_TEST_SEED=str(seed),
        SCLENS_TEST_RECORD=str(record),
        **KERNEL_ENV.get(cap, {}),
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    log = open(work / f"{tag}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd + tests, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def failures(junit: Path) -> list[str]:
    if not junit.exists():
        return ["(no report)"]
    root = ElementTree.parse(junit).getroot()
    out = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--caps", default="default,avx2,avx512")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seeds", default="0,1")
    p.add_argument(
        "--configs", default="", help="explicit runs 'cap:threads:seed,...' instead of the product"
    )
    p.add_argument("--jobs", type=int, default=2, help="cores to fill (a 2-thread run takes 2)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--work", default="benchmarks/cache/spread")
    p.add_argument("--collect-only", action="store_true", help="tabulate earlier runs only")
    p.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = p.parse_args()
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    configs = list(
        itertools.product(
            args.caps.split(","),
            [int(t) for t in args.threads.split(",")],
            [int(s) for s in args.seeds.split(",")],
        )
    )
    if args.configs:
        configs = [
            (c, int(t), int(s)) for c, t, s in (x.split(":") for x in args.configs.split(","))
        ]
    t0 = time.time()
    if not args.collect_only:
        running: list[tuple[subprocess.Popen, int]] = []
        for cap, threads, seed in sorted(configs, key=lambda c: -c[1]):
            while sum(t for _, t in running) + threads > max(args.jobs, threads):
                running = [(r, t) for r, t in running if r.poll() is None]
                time.sleep(1)
            print(
                f"[{time.time() - t0:6.0f} s] run {cap} threads={threads} seed={seed}", flush=True
            )
            running.append((run_config(cap, threads, seed, args.tests, work), threads))
        for r, _ in running:
            r.wait()

    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    failed: dict[str, list[str]] = {}
    for cap, threads, seed in configs:
        tag = f"{cap}_t{threads}_s{seed}"
        for line in (
            (work / f"{tag}.jsonl").read_text().splitlines()
            if (work / f"{tag}.jsonl").exists()
            else []
        ):
            rec = json.loads(line)
            values[(rec["test"], rec["name"])].append(rec["value"])
        failed[tag] = failures(work / f"{tag}.xml")
    rows = [
        {"test": t, "name": n, "min": min(v), "max": max(v), "n": len(v)}
        for (t, n), v in sorted(values.items())
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spread.json").write_text(
        json.dumps(
            {"configs": [list(c) for c in configs], "rows": rows, "failed": failed}, indent=1
        )
    )
    lines = [
        "Spread of the quantities the tests hold to a floor: `python benchmarks/spread.py "
        + (
            f"--configs {args.configs}"
            if args.configs
            else f"--caps {args.caps} --threads {args.threads} --seeds {args.seeds}"
        )
        + f"`: {len(configs)} runs (torch kernels x threads x seed)"
        + ("" if args.collect_only else f", {time.time() - t0:.0f} s")
        + ". Each test's floor sits below the range with a margin.",
        "",
        "| test | quantity | min | max | runs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['test'].split('::', 1)[-1]} | {r['name']} | {r['min']:.4g} | {r['max']:.4g} | {r['n']} |"
        for r in rows
    ]
    lines += [
        "",
        "Failed tests per run, against the floors in force when it ran (a run without a report "
        "was stopped before its end; its values so far are in the table):",
        "",
    ]
    lines += [f"- {tag}: {', '.join(f) if f else 'none'}" for tag, f in failed.items()]
    (out / "spread.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
