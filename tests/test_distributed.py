"""`python -m sclens.train`: one process, and two data-parallel processes (gloo) under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
from conftest import measured, trust

import sclens as sl
from sclens._core import engine

ARGS = ["--method", "ptsne", "--batch-size", "256", "--epochs", "60", "--seed", "0"]


def _run(cmd: list[str], tmp_path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _baron):
    tmp = tmp_path_factory.mktemp("train")
    _baron.write_h5ad(tmp / "in.h5ad")
    out1 = _run(
        [sys.executable, "-m", "sclens.train", "--input", "in.h5ad", "--output", "one.h5ad", *ARGS],
        tmp,
    )
    out2 = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(29600 + os.getpid() % 1000),
            "-m",
            "sclens.train",
            "--input",
            "in.h5ad",
            "--output",
            "two.h5ad",
            *ARGS,
        ],
        tmp,
    )
    assert "(1 process)" in out1 and "(2 processes)" in out2, (out1, out2)
    return ad.read_h5ad(tmp / "one.h5ad"), ad.read_h5ad(tmp / "two.h5ad")


def test_two_processes_give_a_valid_model_of_the_same_quality(trained):
    one, two = trained
    t1 = trust(one.obsm["X_pca"], one.obsm["X_ptsne"])
    t2 = trust(two.obsm["X_pca"], two.obsm["X_ptsne"])
    assert measured("trust_one", t1) > 0.94 and measured("trust_diff", abs(t1 - t2)) <= 0.02, (
        t1,
        t2,
    )
    # the two-process output is a model like any other: it projects cells onto its own map
    again = sl.tl.project(two, two, model_key="ptsne", copy=True)
    np.testing.assert_allclose(again.obsm["X_ptsne"], two.obsm["X_ptsne"], atol=1e-5)


def test_each_rank_keeps_its_own_equal_share_of_batches(monkeypatch):
    batches = [{"b": b} for b in range(7)]
    shares = []
    for rank in range(3):
        monkeypatch.setattr(engine, "distributed_world", lambda r=rank: (r, 3))
        shares.append([x["b"] for x in engine.Trainer._shard(iter(batches), len(batches))])
    assert [len(s) for s in shares] == [2, 2, 2]
    assert len(set(sum(shares, []))) == 6  # disjoint
    monkeypatch.setattr(engine, "distributed_world", lambda: None)
    assert len(list(engine.Trainer._shard(iter(batches), 7))) == 7
