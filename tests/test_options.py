"""Options, keys, interruptions and input scales: checked before any work, never silent."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from conftest import snapshot

import sclens as sl
from sclens._core import objectives

# -- every option is checked before PCA, the graph or training --------------------------------
BAD_OPTIONS = [
    ("ptsne", {"n_epochs": 0}, ValueError, r"`n_epochs` must be >= 1, got 0"),
    ("ptsne", {"n_epochs": -1}, ValueError, r"`n_epochs` must be >= 1, got -1"),
    ("ptsne", {"learning_rate": 0}, ValueError, r"`learning_rate` must be a finite number > 0"),
    ("ptsne", {"n_components": 0}, ValueError, r"`n_components` must be >= 1"),
    ("ptsne", {"hidden": (0,)}, ValueError, r"`hidden\[0\]` must be >= 1"),
    ("ptsne", {"hidden": ()}, ValueError, r"`hidden` needs at least one layer"),
    ("ptsne", {"exaggeration_fraction": 2}, ValueError, r"`exaggeration_fraction` .* in \[0, 1\]"),
    ("ptsne", {"final_lr_fraction": -1}, ValueError, r"`final_lr_fraction` .* in \[0, 1\]"),
    ("ptsne", {"batch_size": 0}, ValueError, r"`batch_size` must be >= 1, got 0"),
    ("ptsne", {"perplexity": float("nan")}, ValueError, r"`perplexity` must be a finite number"),
    ("ptsne", {"n_epochs": 2.5}, TypeError, r"`n_epochs` must be an integer, got 2.5"),
    ("ptsne", {"random_state": "0"}, TypeError, r"`random_state` must be an integer seed or None"),
    ("den", {"n_neighbors": -3}, ValueError, r"`n_neighbors` must be >= 1, got -3"),
    ("den", {"max_clusters": 0}, ValueError, r"`max_clusters` must be >= 1, got 0"),
    ("den", {"eigen_threshold": -1}, ValueError, r"`eigen_threshold` .* in \(0, 2\]"),
    ("den", {"batch_size": 0}, ValueError, r"`batch_size` must be >= 1"),
    ("den", {"merge_threshold": 1.5}, ValueError, r"`merge_threshold` .* in \[0, 1\]"),
    ("ardr", {"n_epochs": 0}, ValueError, r"`n_epochs` must be >= 1"),
    ("ardr", {"batch_size": 0}, ValueError, r"`batch_size` must be >= 1"),
    ("ardr", {"min_dist": -0.1}, ValueError, r"`min_dist` .* in \[0, 1\]"),
    ("ardr", {"batches": "edge"}, ValueError, r"batches must be 'auto', 'edges' or 'cells'"),
    ("ptsne", {"batches": "auto"}, ValueError, r"batches must be 'edges' or 'cells'"),
    ("gne", {"n_epochs": 0}, ValueError, r"`n_epochs` must be >= 1"),
    ("gne", {"batch_size": 0}, ValueError, r"`batch_size` must be >= 1"),
    ("gne", {"coord_learning_rate": 0}, ValueError, r"`coord_learning_rate` must be a finite"),
]


@pytest.mark.parametrize(
    "tool, kwargs, exc, match",
    BAD_OPTIONS,
    ids=[f"{t}-{next(iter(k))}" for t, k, *_ in BAD_OPTIONS],
)
def test_bad_options_are_refused_before_any_work(pbmc, monkeypatch, tool, kwargs, exc, match):
    # a check that came after the input layer would be caught here: PCA is never reached
    def no_work(*args, **kw):
        raise AssertionError("an expensive step ran before the options were checked")

    where = {"gne": "tl._gne.gene_matrix", "ardr": "_core.ardr.prepare_input"}
    monkeypatch.setattr(f"sclens.{where.get(tool, f'tl._{tool}.prepare_input')}", no_work)
    before = snapshot(pbmc)
    with pytest.raises(exc, match=match):
        getattr(sl.tl, tool)(pbmc, **kwargs)
    assert snapshot(pbmc) == before


@pytest.mark.parametrize(
    "key, exc, match",
    [
        ("", ValueError, "not a usable key"),
        ("a/b", ValueError, "not a usable key"),
        (3, TypeError, "must be a string"),
        ("pca", ValueError, "scanpy's own tools write"),
        ("umap", ValueError, "scanpy's own tools write"),
        ("X_mine", ValueError, "drop the 'X_' prefix"),
    ],
)
def test_key_added_is_validated_up_front(pbmc, key, exc, match):
    before = snapshot(pbmc)
    pca = pbmc.obsm["X_pca"].copy()
    with pytest.raises(exc, match=match):
        sl.tl.ptsne(pbmc, key_added=key, n_epochs=1)
    assert snapshot(pbmc) == before
    np.testing.assert_array_equal(pbmc.obsm["X_pca"], pca)


def test_a_valid_key_survives_h5ad_round_trip(pbmc, tmp_path):
    sl.tl.ptsne(pbmc, key_added="ptsne.v2-a", n_epochs=2)
    pbmc.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert {"ptsne.v2-a", "bulk_labels_colors", "pca"} <= set(back.uns)
    sl.tl.project(pbmc.copy(), back, model_key="ptsne.v2-a")


def test_random_state_none_draws_and_records_a_seed(pbmc):
    a = sl.tl.ptsne(pbmc, n_epochs=2, random_state=None, copy=True)
    seed = a.uns["ptsne"]["params"]["random_state"]
    assert isinstance(seed, int | np.integer)
    b = sl.tl.ptsne(pbmc, n_epochs=2, random_state=int(seed), copy=True)
    np.testing.assert_array_equal(a.obsm["X_ptsne"], b.obsm["X_ptsne"])


# -- Ctrl-C: never publish untrained outputs ------------------------------------------------
def _interrupt_after(monkeypatch, cls, n_calls: int):
    """Make ``cls.__call__`` raise KeyboardInterrupt at its ``n_calls + 1``-th call."""
    calls = {"n": 0}
    original = cls.__call__

    def call(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", call)


def test_den_interrupted_in_siamese_phase_writes_nothing(pbmc, monkeypatch):
    _interrupt_after(monkeypatch, objectives.DENPairs, 5)
    before = snapshot(pbmc)
    with pytest.raises(KeyboardInterrupt):
        sl.tl.den(pbmc, n_epochs=10)
    assert snapshot(pbmc) == before


def test_den_interrupted_in_finetuning_keeps_and_says_so(pbmc, monkeypatch):
    # pbmc68k_reduced: 700 cells / 512 per batch -> 1 step per epoch; 10 siamese epochs, the
    # head (no DENPairs call), then fine-tuning: interrupted at its 3rd step
    _interrupt_after(monkeypatch, objectives.DENPairs, 12)
    sl.tl.den(pbmc, n_epochs=10, n_finetune_epochs=5)
    params = pbmc.uns["den"]["params"]
    assert params["interrupted"]
    assert list(params["finished_phases"]) == ["siamese", "cluster_head"]
    assert pbmc.obs["den"].nunique() == params["n_clusters"]


@pytest.mark.parametrize("tool", ["ptsne", "ardr", "gne"])
def test_interrupted_before_one_epoch_writes_nothing(pbmc, monkeypatch, tool):
    cls = objectives.Reconstruction if tool == "gne" else objectives.AttractionRepulsion
    _interrupt_after(monkeypatch, cls, 0)
    before = snapshot(pbmc)
    kw = {"ardr": {"parametric": True, "n_epochs": 3}}.get(tool, {"n_epochs": 3})
    with pytest.raises(KeyboardInterrupt):
        getattr(sl.tl, tool)(pbmc, **kw)
    assert snapshot(pbmc) == before


def test_ptsne_interrupted_after_an_epoch_keeps_and_says_so(pbmc, monkeypatch):
    _interrupt_after(monkeypatch, objectives.AttractionRepulsion, 1)  # 1 step per epoch here
    sl.tl.ptsne(pbmc, n_epochs=8, batch_size=1024)
    params = pbmc.uns["ptsne"]["params"]
    assert params["interrupted"] and len(params["finished_phases"]) == 0
    assert np.isfinite(pbmc.obsm["X_ptsne"]).all()


# -- input on the wrong scale is flagged ----------------------------------------------------
@pytest.fixture(scope="module")
def counts_and_log():
    counts = sl.datasets.synthetic_counts(400, 300, 3, random_state=0)
    log = counts.copy()
    sc.pp.normalize_total(log, target_sum=1e4)
    sc.pp.log1p(log)
    return counts, log


@pytest.mark.parametrize("tool", ["ptsne", "den", "gne"])
def test_raw_counts_are_flagged(counts_and_log, tool):
    counts, log = counts_and_log
    kw = {"n_epochs": 1}
    with pytest.warns(UserWarning, match="looks like raw counts"):
        getattr(sl.tl, tool)(counts.copy(), **kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*raw counts")
        getattr(sl.tl, tool)(log.copy(), **kw)
    if tool == "gne":  # the counts model takes counts without a word
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*raw counts")
            sl.tl.gne(counts.copy(), likelihood="nb", n_epochs=1)


def test_scaled_query_is_flagged(counts_and_log):
    _, log = counts_and_log
    ref = log.copy()
    sl.tl.ptsne(ref, n_epochs=2)
    query = log.copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*negative")
        sl.tl.project(query, ref)
    scaled = log.copy()
    sc.pp.scale(scaled)
    with pytest.warns(UserWarning, match=r"negative .* looks scaled"):
        sl.tl.project(scaled, ref)


# -- the command line checks where it will write before it trains ---------------------------
def test_train_cli_checks_paths_before_training(tmp_path, pbmc):
    from sclens import train

    src = tmp_path / "in.h5ad"
    pbmc.write_h5ad(src)
    with pytest.raises(SystemExit, match="does not exist"):
        train.main(
            ["--method", "ptsne", "--input", str(tmp_path / "no.h5ad"), "--output", "o.h5ad"]
        )
    with pytest.raises(SystemExit, match="folder of --output"):
        train.main(
            ["--method", "ptsne", "--input", str(src), "--output", str(tmp_path / "x" / "o.h5ad")]
        )
    with pytest.raises(SystemExit, match="must end in .h5ad"):
        train.main(["--method", "ptsne", "--input", str(src), "--output", str(tmp_path / "o.zarr")])
