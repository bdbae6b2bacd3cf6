"""A new neighbour-embedding method is a short recipe on the shared engine (``_core.recipe``).

``heavy_tailed_tsne`` below is a whole method in about 40 lines: parametric t-SNE with the
kernel ``1 / (1 + d^{2b})`` (``b < 1``: heavier tails, which separate clusters further). It gets
the input layer, graph, training loop, schedule, stage timings, settings, model storage and
projection from the engine; with ``b=1`` it is ``sl.tl.ptsne``, bit for bit.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import sclens as sl
from sclens._core.data import prepare_input
from sclens._core.engine import Trainer
from sclens._core.graph import neighbor_graph
from sclens._core.model import Model
from sclens._core.networks import IndexedNetwork, Network
from sclens._core.recipe import (
    NETWORK_HIDDEN,
    NeighborMap,
    Run,
    auto_epochs,
    neighbor_phases,
    settings_of,
)
from sclens._core.threads import fixed_threads
from sclens.tl._common import seeded, start_adata


@fixed_threads  # as every tool: results depend on torch's thread count
def heavy_tailed_tsne(
    adata,
    *,
    b: float = 0.7,
    perplexity: float = 30.0,
    n_epochs: int | None = None,
    random_state: int = 0,
    key_added: str = "httsne",
    copy: bool = False,
):
    """Parametric t-SNE with the heavier-tailed kernel ``1 / (1 + d^{2b})``."""
    adata = start_adata(adata, "heavy_tailed_tsne", copy)
    run = Run("computing heavy-tailed parametric t-SNE")
    with run.stage("input"):
        inp, features = prepare_input(
            adata, use_rep=None, n_pcs=50, layer=None, random_state=random_state
        )
    with run.stage("graph"):
        graph = neighbor_graph(
            features, affinity="tsne", perplexity=perplexity, adata=adata, n_pcs=50,
            random_state=random_state,
        )  # fmt: skip
    n_epochs = n_epochs or auto_epochs(adata.n_obs, 1024, passes=200)
    with seeded(random_state):
        network = Network(features.shape[1], NETWORK_HIDDEN, 2)
    trainer = Trainer(IndexedNetwork(features, network), device="cpu", random_state=random_state)
    phases = neighbor_phases(
        NeighborMap(b=b), graph, trainer, parametric=True, n_epochs=n_epochs,
        learning_rate=1e-2, batch_size=1024,
    )  # fmt: skip
    run.train(trainer, phases)
    network = network.eval()
    with run.stage("transform"):
        coords = network.transform(features)
    params = settings_of(heavy_tailed_tsne, locals(), **run.trained())
    model = Model.from_parts("heavy_tailed_tsne", inp, network)
    uns = {"params": params, "model": model.to_uns()}
    run.write(adata, key_added, uns, obsm={f"X_{key_added}": coords})
    return adata if copy else None


def test_the_recipe_with_b_1_is_ptsne(pbmc):
    a = heavy_tailed_tsne(pbmc, b=1.0, n_epochs=4, copy=True)
    b = sl.tl.ptsne(pbmc, n_epochs=4, copy=True)
    np.testing.assert_array_equal(a.obsm["X_httsne"], b.obsm["X_ptsne"])


def test_a_new_recipe_gets_timings_settings_storage_and_projection(pbmc, tmp_path):
    heavy_tailed_tsne(pbmc, n_epochs=6)
    uns = pbmc.uns["httsne"]
    assert uns["params"]["b"] == 0.7 and uns["params"]["n_epochs"] == 6
    assert set(uns["timings"]) == {"input", "graph", "training", "transform"}
    assert list(uns["history"]["phase"]).count("embedding") > 0
    pbmc.write_h5ad(tmp_path / "ref.h5ad")
    ref = ad.read_h5ad(tmp_path / "ref.h5ad")
    query = pbmc[:200].copy()
    del query.obsm["X_httsne"]
    sl.tl.project(query, ref, model_key="httsne")
    # projection is the forward pass of the stored network: the training cells land where
    # training put them
    np.testing.assert_allclose(query.obsm["X_httsne"], pbmc.obsm["X_httsne"][:200], atol=1e-4)


def test_settings_of_reads_the_signature():
    def tool(adata, *, alpha: float = 1.0, beta=None, key_added="k", copy=False):
        alpha = 2 * alpha
        return settings_of(tool, locals(), extra=3)

    assert tool(None, alpha=1.5) == {"alpha": 3.0, "extra": 3}
    with pytest.raises(KeyError):
        settings_of(tool, {"adata": None})
