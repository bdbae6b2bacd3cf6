"""Backed AnnData: `.X` streamed in row blocks, never loaded whole; same model as in memory."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from conftest import SEED, measured, snapshot, trust
from sklearn.metrics import adjusted_rand_score

import sclens as sl
from sclens._core.data import RowChunks, fit_pca
from sclens._core.model import Model


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """5,000 cells (above the 4,096 of the pynndescent pin) x 1,500 genes, log-normalised, CSR."""
    adata = sl.datasets.synthetic_counts(5000, 1500, 6, n_markers=40, fold_change=8, random_state=2)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    path = tmp_path_factory.mktemp("backed") / "cells.h5ad"
    adata.write_h5ad(path)
    return adata, path


def test_streamed_pca_equals_in_memory_pca(on_disk):
    adata, path = on_disk
    backed = ad.read_h5ad(path, backed="r")
    chunks = RowChunks(backed.X, chunk_size=700)  # blocks that do not divide n
    m1, c1 = fit_pca(adata.X, 20)
    m2, c2 = fit_pca(chunks, 20)
    np.testing.assert_allclose(m1, m2, atol=1e-12)
    np.testing.assert_allclose(c1, c2, atol=1e-9)


def test_ptsne_and_den_train_on_a_backed_anndata(on_disk):
    adata, path = on_disk
    memory = adata.copy()
    sl.tl.ptsne(memory, n_epochs=30, random_state=SEED)
    backed = ad.read_h5ad(path, backed="r")
    sl.tl.ptsne(backed, n_epochs=30, random_state=SEED)
    a = Model.from_uns(memory.uns["ptsne"]["model"]).input_layer
    b = Model.from_uns(backed.uns["ptsne"]["model"]).input_layer
    np.testing.assert_allclose(np.abs(a.loadings), np.abs(b.loadings), atol=1e-9)
    pcs = a.transform(adata.X)
    t_mem, t_backed = trust(pcs, memory.obsm["X_ptsne"]), trust(pcs, backed.obsm["X_ptsne"])
    assert measured("trust_diff", abs(t_mem - t_backed)) <= 0.01, (t_mem, t_backed)
    # the backed model projects in-memory cells like the in-memory one
    out = sl.tl.project(adata[:500].copy(), Model.from_uns(backed.uns["ptsne"]["model"]), copy=True)
    np.testing.assert_allclose(out.obsm["X_ptsne"], backed.obsm["X_ptsne"][:500], atol=1e-4)
    sl.tl.den(backed, n_epochs=15, n_clusters=6, random_state=SEED)
    agreement = measured("ari", adjusted_rand_score(adata.obs["group"], backed.obs["den"]))
    assert backed.obsm["X_den"].shape == (5000, 2) and agreement > 0.5, agreement


def test_synthetic_atlas_is_written_chunk_by_chunk(tmp_path):
    path = sl.datasets.write_synthetic_h5ad(
        tmp_path / "atlas.h5ad", 2500, 300, 4, chunk_size=1000, random_state=3
    )
    backed = ad.read_h5ad(path, backed="r")
    assert backed.shape == (2500, 300) and backed.obs_names[-1] == "cell2499"
    X = backed.X[:]
    assert X.format == "csr" and X.nnz > 0
    # log-normalised to 10,000 counts per cell, chunks drawn independently (no repeated cells)
    np.testing.assert_allclose(np.expm1(X).sum(axis=1), 1e4, rtol=1e-3)
    assert (X[:1000] != X[1000:2000]).nnz > 0
    assert set(backed.obs["group"].cat.categories) == {"0", "1", "2", "3"}
    pca = sc.pp.pca(backed.to_memory(), n_comps=5, copy=True).obsm["X_pca"]
    assert adjusted_rand_score(backed.obs["group"], _kmeans(pca, 4)) > 0.9


def _kmeans(X, k):
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=4, random_state=0).fit_predict(X)


def test_backed_input_errors(on_disk):
    _, path = on_disk
    backed = ad.read_h5ad(path, backed="r")
    before = snapshot(backed)
    with pytest.raises(ValueError, match="copy=True\\)` needs an in-memory AnnData"):
        sl.tl.ptsne(backed, copy=True)
    with pytest.raises(ValueError, match="needs the AnnData in memory"):
        sl.tl.gne(backed)
    assert snapshot(backed) == before
