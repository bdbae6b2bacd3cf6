"""The engine's maths on random data: affinities, PCA, kNN, objectives, storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

from sclens import Model, ModelError
from sclens._core.data import InputLayer, fit_pca
from sclens._core.graph import knn, neighbor_graph, perplexity_affinities, umap_affinities
from sclens._core.networks import Network
from sclens._core.objectives import AttractionRepulsion


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, size=(4, 10))
    return (centers[rng.integers(0, 4, 600)] + rng.normal(size=(600, 10))).astype(np.float32)


def test_perplexity_calibration_hits_target_entropy(blobs):
    _, dist = knn(blobs, 90)
    P = perplexity_affinities(dist, 30.0).astype(np.float64)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)
    entropy = -(P * np.log(np.maximum(P, 1e-300))).sum(1)
    np.testing.assert_allclose(np.exp(entropy), 30.0, rtol=1e-3)
    assert (np.diff(P, axis=1) <= 1e-7).all(), "affinities must fall with distance"


def test_umap_memberships_sum_to_log2k(blobs):
    _, dist = knn(blobs, 15)
    W = umap_affinities(dist)
    np.testing.assert_allclose(W.sum(1), np.log2(15), rtol=1e-4)
    np.testing.assert_allclose(W[:, 0], 1.0, rtol=1e-6)  # nearest neighbour has membership 1


def test_exact_knn_matches_brute_force(blobs):
    idx, dist = knn(blobs, 7)
    D = np.linalg.norm(blobs[:, None] - blobs[None], axis=2)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(np.sort(D, 1)[:, :7], dist, rtol=1e-4, atol=1e-4)
    assert (idx != np.arange(len(blobs))[:, None]).all()


def test_pynndescent_knn_is_accurate_above_4096_cells(monkeypatch):
    import sclens._core.graph as graph

    rng = np.random.default_rng(1)
    centers = rng.normal(0, 4, size=(10, 10))
    X = (centers[rng.integers(0, 10, 5000)] + rng.normal(size=(5000, 10))).astype(np.float32)
    exact, _ = knn(X, 10)
    monkeypatch.setattr(graph, "EXACT_KNN_MAX_CELLS", 0)
    approx, dist = graph.knn(X, 10, random_state=0)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx, strict=True)])
    assert recall > 0.9
    assert (approx != np.arange(len(X))[:, None]).all()  # self dropped
    assert (np.diff(dist, axis=1) >= 0).all()


def test_affinities_in_row_blocks_equal_one_block(blobs, monkeypatch):
    import sclens._core.graph as graph

    _, dist = knn(blobs, 15)
    whole = (perplexity_affinities(dist, 5.0), umap_affinities(dist))
    monkeypatch.setattr(graph, "ROW_BLOCK", 7)  # blocks that do not divide n
    np.testing.assert_array_equal(whole[0], graph.perplexity_affinities(dist, 5.0))
    np.testing.assert_array_equal(whole[1], graph.umap_affinities(dist))


def test_tsne_graph_is_symmetric_and_normalised(blobs):
    g = neighbor_graph(blobs, affinity="tsne", perplexity=10)
    P = g.to_sparse()
    assert abs(P.sum() - 2.0) < 1e-6  # upper triangle sums to 1, stored twice
    assert abs(P - P.T).max() < 1e-12
    assert (g.rows < g.cols).all()


@pytest.mark.parametrize("as_sparse", [False, True])
def test_randomised_pca_matches_svd(as_sparse):
    rng = np.random.default_rng(0)
    X = rng.poisson(rng.gamma(1, 1, size=(300, 80))).astype(np.float64)
    X[:, :5] *= 6
    mean, comps = fit_pca(sparse.csr_matrix(X) if as_sparse else X, 5)
    np.testing.assert_allclose(mean, X.mean(0))
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    cosines = np.linalg.svd(vt[:5] @ comps, compute_uv=False)
    assert cosines.min() > 0.9999


def test_normalised_repulsion_is_log_mean_similarity():
    torch.manual_seed(0)
    z = torch.randn(8, 2)

    def enc(idx):
        return z[idx]

    i, j = torch.arange(4), torch.arange(4, 8)
    obj = AttractionRepulsion(normalization=1.0, n_negatives=4)
    out = obj(enc, {"i": i, "j": j})
    d2 = ((z[i][:, None] - z[j][None]) ** 2).sum(-1)
    off = ~torch.eye(4, dtype=torch.bool)
    w = 1 / (1 + d2[off])
    attraction = torch.log1p(((z[i] - z[j]) ** 2).sum(1)).mean()
    torch.testing.assert_close(out.total, attraction + torch.log(w.mean()))
    umap = AttractionRepulsion(normalization=0.0, n_negatives=4, negative_rate=5, eps=0)(
        enc, {"i": i, "j": j}
    )
    torch.testing.assert_close(umap.total, attraction - 5 * torch.log(1 - w).mean())


def _toy_model():
    inp = InputLayer(
        "genes", None, np.zeros(6), np.eye(6)[:, :3], 1.0, np.array([f"g{i}" for i in range(6)])
    )
    torch.manual_seed(0)
    return Model.from_parts("ptsne", inp, Network(3, [8], 2))


def test_model_round_trips_through_file(tmp_path):
    m = _toy_model()
    m.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    X = np.random.default_rng(0).normal(size=(5, 6))
    np.testing.assert_array_equal(m.transform(X), back.transform(X))
    assert list(back.input_layer.var_names) == [f"g{i}" for i in range(6)]


def test_foreign_and_corrupted_models_are_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with pytest.raises(ModelError, match="not an sclens model"):
        Model.load(tmp_path / "foreign.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ModelError, match="not a readable"):
        Model.load(tmp_path / "junk.npz")
    # an object array needs pickle: loading must refuse rather than unpickle
    np.savez(
        tmp_path / "pickled.npz",
        __format__=np.array("sclens-model"),
        evil=np.array([object()], dtype=object),
    )
    with pytest.raises(ModelError):
        Model.load(tmp_path / "pickled.npz")
    stored = _toy_model().to_uns()
    stored["arrays"]["net.embed.weight"] = np.ones((5, 5), np.float32)
    with pytest.raises(ModelError, match="does not match"):
        Model.from_uns(stored)
    stored = _toy_model().to_uns()
    stored["config"] = "{not json"
    with pytest.raises(ModelError, match="corrupted config"):
        Model.from_uns(stored)
    with pytest.raises(ModelError, match="not an sclens model"):
        Model.from_uns({"weights": 1})
