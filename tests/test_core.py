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


def _reference_loss(Y, P, batch, normalization, a=1.0, b=1.0, rate=5.0, eps=1e-4):
    """The attraction-repulsion loss of a batch by its definition, with exact repulsion."""
    n = len(Y)
    P = P / P.sum()
    y = Y[batch]
    off = torch.arange(n)[None, :] != torch.as_tensor(batch)[:, None]
    d2 = ((y[:, None, :] - Y.detach()[None, :, :]) ** 2).sum(-1)  # the others from the memory
    d2 = torch.where(off, d2, torch.ones_like(d2))  # a cell and itself: no pair (and no 0 ** b)
    log_w = -torch.log1p(a * d2**b)
    attraction = (n * torch.as_tensor(P[batch].toarray()) * -log_w).sum(1).mean()
    w = log_w.exp()[off]
    return (
        attraction
        + normalization * torch.log(w.mean())
        - (1 - normalization) * rate * torch.log1p(-w + eps).mean()
    )


@pytest.mark.parametrize("normalization", [1.0, 0.0, 0.5])
def test_attraction_repulsion_value_and_forces_match_the_definition(normalization):
    """Closed-form forces == autograd of the loss written out (t-SNE, UMAP kernel, a mix)."""
    from sclens._core.networks import CoordinateTable

    rng = np.random.default_rng(0)
    n = 30
    Y = rng.normal(size=(n, 2)).astype(np.float32)
    P = sparse.random(n, n, density=0.2, random_state=0, format="csr")
    P = (P + P.T).tocsr()
    P.setdiag(0)
    P.eliminate_zeros()
    a, b = (1.0, 1.0) if normalization == 1.0 else (1.6, 0.9)
    batch = np.array([0, 3, 7, 11, 29])
    table = CoordinateTable(Y)
    obj = AttractionRepulsion(P, normalization=normalization, a=a, b=b, n_negatives=None, z_decay=0)
    out = obj(table, {"idx": torch.as_tensor(batch)})
    out.total.backward()
    Yt = torch.as_tensor(Y, dtype=torch.float64).requires_grad_()
    ref = _reference_loss(Yt, P, batch, normalization, a, b)
    ref.backward()
    torch.testing.assert_close(out.total.detach().double(), ref.detach(), rtol=1e-5, atol=1e-6)
    # only the batch's own coordinates move (their neighbours' are read from the memory)
    torch.testing.assert_close(table.coords.grad.double(), Yt.grad, rtol=1e-4, atol=1e-6)
    assert Yt.grad[np.setdiff1d(np.arange(n), batch)].abs().max() == 0


@pytest.mark.parametrize("normalization", [1.0, 0.0, 0.5])
@pytest.mark.parametrize("m", [None, 5])
@pytest.mark.parametrize("shift", [0.0, 100.0])
def test_edge_batch_forces_match_autograd_of_the_edge_loss(normalization, m, shift):
    """Edge batches (networks): the closed-form forces on both ends of every edge and on the
    uniform negatives == autograd of the batch's loss written out, cells that appear several
    times in the batch (as starts, ends and negatives) included; a cell is not its own negative.
    ``shift``: the same cells 100 units from the origin, where maps' cells often lie; squared
    distances from the expanded form |a|^2 + |b|^2 - 2ab lost ~1 % to cancellation there in
    float32 (the forces then missed this check), differences of coordinates do not."""
    from sclens._core.networks import CoordinateTable

    rng = np.random.default_rng(2)
    n, B, rate, eps = 12, 7, 5.0, 1e-4
    Y = (rng.normal(size=(n, 2)) + shift).astype(np.float32)
    i, j = rng.integers(n, size=B), rng.integers(n, size=B)
    neg = np.arange(n) if m is None else rng.integers(n, size=m)  # None: every cell
    a, b = (1.0, 1.0) if normalization == 1.0 else (1.6, 0.9)
    table = CoordinateTable(Y)
    obj = AttractionRepulsion(None, normalization=normalization, a=a, b=b)
    batch = {"i": torch.as_tensor(i), "j": torch.as_tensor(j), "neg": torch.as_tensor(neg)}
    out = obj(table, batch)
    out.total.backward()

    Yt = torch.as_tensor(Y, dtype=torch.float64).requires_grad_()
    zi, zj, zn = Yt[i], Yt[j], Yt[neg]
    low = 0.0 if b == 1 else eps  # the UMAP kernel's d^(2b) is read at d^2 >= eps
    attraction = torch.log1p(a * ((zi - zj) ** 2).sum(1).clamp_min(low) ** b).mean()
    d2 = ((zi[:, None, :] - zn[None, :, :]) ** 2).sum(-1).clamp_min(low)
    off = torch.as_tensor(i[:, None] != neg[None, :])
    w = 1 / (1 + a * d2[off] ** b)
    ref = (
        attraction
        + normalization * torch.log(w.mean())
        - (1 - normalization) * rate * torch.log1p(-w + eps).mean()
    )
    ref.backward()
    torch.testing.assert_close(out.total.detach().double(), ref.detach(), rtol=1e-5, atol=1e-6)
    # float32 coordinates near 100 carry ~1e-5 of absolute rounding into 1 / (1 - w) (UMAP)
    tol = dict(rtol=1e-4, atol=1e-6) if shift == 0 else dict(rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(table.coords.grad.double(), Yt.grad, **tol)


def test_edge_sampler_draws_edges_by_weight_and_negatives_uniformly():
    """Edge ends follow the affinities; the negatives do not (every cell equally likely), and
    ``n_negatives=None`` gives every cell."""
    from sclens._core.engine import EdgeSampler
    from sclens._core.graph import Graph

    n = 50
    rows, cols = np.zeros(n - 1, int), np.arange(1, n)  # a star: cell 0 is in every edge
    w = np.full(n - 1, 1 / (n - 1))
    graph = Graph(
        n, rows, cols, w, knn_indices=np.empty((n, 0), int), knn_distances=np.empty((n, 0))
    )
    gen = torch.Generator().manual_seed(0)
    batches = list(EdgeSampler(graph, 100, edges_per_epoch=20_000, n_negatives=64).epoch(gen))
    ends = torch.cat([torch.cat([b["i"], b["j"]]) for b in batches])
    neg = torch.cat([b["neg"] for b in batches])
    assert (ends == 0).float().mean() == pytest.approx(0.5, abs=0.02)
    assert (neg == 0).float().mean() == pytest.approx(1 / n, abs=0.01)
    counts = torch.bincount(neg, minlength=n).float()
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()
    every = next(iter(EdgeSampler(graph, 10, n_negatives=None).epoch(gen)))["neg"]
    assert torch.equal(every, torch.arange(n))


@pytest.mark.parametrize(("n", "batch_size"), [(2090, 1024), (1024, 1024), (10, 4), (3, 8)])
def test_cell_sampler_batches_cover_every_cell_once_in_even_sizes(n, batch_size):
    """An epoch visits every cell (or every cell of ``cells``) once, in ``len(sampler)``
    batches of at most ``batch_size`` that differ by at most one cell: objectives average over a
    batch, so a tiny last batch (2,090 cells in 1,024s left 42) gave its cells 24x the force."""
    from sclens._core.engine import CellSampler

    gen = torch.Generator().manual_seed(0)
    sampler = CellSampler(n, batch_size, labels=np.arange(n) % 3)
    batches = list(sampler.epoch(gen))
    sizes = [len(b["idx"]) for b in batches]
    assert len(batches) == len(sampler) == -(-n // batch_size)
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    idx = torch.cat([b["idx"] for b in batches])
    assert torch.equal(idx.sort().values, torch.arange(n))
    assert all(torch.equal(b["y"], b["idx"] % 3) for b in batches)
    subset = CellSampler(n, batch_size, cells=np.arange(0, n, 2))
    seen = torch.cat([b["idx"] for b in subset.epoch(gen)])
    assert torch.equal(seen.sort().values, torch.arange(0, n, 2))


def test_attraction_repulsion_running_normaliser_keeps_the_gradient_direction():
    """With a running Z, a step's gradient is grad(mean w) / Z: the same direction as with the
    batch's own Z, scaled by the ratio of the two (a pair is not divided by itself)."""
    from sclens._core.networks import CoordinateTable

    rng = np.random.default_rng(1)
    n = 40
    Y = rng.normal(size=(n, 2)).astype(np.float32)
    P = sparse.identity(n, format="csr")  # attraction vanishes: pure repulsion
    idx = {"idx": torch.arange(0, 10)}
    grads = []
    for decay in (0.0, 0.9):
        table = CoordinateTable(Y)
        obj = AttractionRepulsion(P, n_negatives=None, z_decay=decay)
        obj._z = torch.tensor(0.05)  # a running estimate from earlier steps
        obj(table, idx).total.backward()
        grads.append(table.coords.grad[:10].double())
    ratio = grads[1] / grads[0]
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)
    assert not torch.allclose(ratio.flatten()[0], torch.tensor(1.0, dtype=torch.float64))


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


def test_smoothgrad_sees_past_a_point_where_the_network_is_flat():
    """At a point where every ReLU is off the gradient is zero, whatever the network does
    nearby; SmoothGrad averages the gradients of noised copies, which reach the active side.
    Here the only active gradient is (1, 2), so the average is a positive multiple of it; the
    values are those at the points themselves, and without noise it is the plain gradient."""
    from sclens._core.attribution import Noise, gradients, smoothed_gradients

    head = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU())
    with torch.no_grad():
        head[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        head[0].bias.fill_(-1.0)
    x = np.zeros((4, 2), np.float32)
    target = np.zeros(4, dtype=int)
    plain, values = gradients(head, x, target)
    assert np.all(plain == 0) and np.all(values == 0)
    noise = Noise(np.ones(2), 64, (0,))
    smooth, smooth_values = smoothed_gradients(head, x, target, noise=noise)
    again, _ = smoothed_gradients(head, x, target, noise=noise)
    np.testing.assert_array_equal(again, smooth)  # the same draws every call
    assert np.all(smooth[:, 0] > 0.05)
    np.testing.assert_allclose(smooth[:, 1], 2 * smooth[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(smooth_values, values)
    unsmoothed, _ = smoothed_gradients(head, x + 1.0, target)
    np.testing.assert_array_equal(unsmoothed, gradients(head, x + 1.0, target)[0])


def test_graph_spectral_is_laplacian_eigenmaps_and_splits_components():
    """The networks' start: on a connected graph the approximation spans the exact Laplacian
    eigenmaps (sklearn's solver; measured max principal angle 2e-8 degrees after 200 steps,
    3e-4 after 100); on a graph of two components its first coordinate tells them apart."""
    from scipy.linalg import subspace_angles
    from sklearn.manifold import spectral_embedding

    from sclens._core.recipe import graph_spectral

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1.0, size=(4, 10))
    X = (centers[rng.integers(0, 4, 600)] + rng.normal(size=(600, 10))).astype(np.float32)
    g = neighbor_graph(X, affinity="tsne", perplexity=30.0)
    approx = graph_spectral(g, X, 3)
    exact = spectral_embedding(g.to_sparse(), n_components=3, drop_first=True, random_state=0)
    assert np.degrees(subspace_angles(approx, exact)).max() < 0.01

    far = np.vstack([X[:300], X[300:] + 100.0])  # two groups no neighbour links
    g2 = neighbor_graph(far, affinity="tsne", perplexity=30.0)
    first = graph_spectral(g2, far, 2)[:, 0]
    lo, hi = sorted([first[:300], first[300:]], key=np.mean)
    assert lo.max() < hi.min()
