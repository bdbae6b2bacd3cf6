"""Baselines that sclens' methods are measured against, outside the package.

``fit_autoencoder``: an MLP encoder to a few dimensions plus GNE's own decoder, trained by GNE's
own loop; GNE (a coordinate table instead of the encoder) must reconstruct better
(``benchmarks/gne.py``, ``tests/test_gne.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from sclens._core.engine import Callback
from sclens._core.gne import fit_generative, new_decoder, reconstruction_errors
from sclens._core.networks import GenerativeMap, IndexedNetwork, Network
from sclens.tl._common import seeded

__all__ = ["fit_autoencoder"]


def fit_autoencoder(
    X: np.ndarray,
    *,
    n_components: int = 2,
    hidden: int = 256,
    n_blocks: int = 4,
    encoder_hidden: tuple[int, ...] = (256, 256),
    likelihood: str = "mse",
    n_epochs: int = 60,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    device: str = "auto",
    random_state: int = 0,
    callbacks: Sequence[Callback] = (),
) -> tuple[np.ndarray, float, float]:
    """Baseline: an MLP encoder to ``n_components`` + the same decoder, trained the same way.

    Returns the coordinates, the final reconstruction error (as GNE reports it) and seconds.
    ``callbacks`` are passed to :meth:`Trainer.optimize` (called with the encoder + decoder).
    """
    t0 = time.perf_counter()
    mean = X.mean(0)
    scale = float(X.std(0).max() or 1.0)
    features = ((X - mean) / scale).astype(np.float32)
    with seeded(random_state):
        net = Network(X.shape[1], encoder_hidden, n_components)
    decoder = new_decoder(X, n_components, hidden, n_blocks, likelihood, random_state)
    model = GenerativeMap(IndexedNetwork(features, net), decoder)
    fit_generative(
        model,
        X,
        likelihood=likelihood,
        noise=0.0,
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        coord_learning_rate=learning_rate,
        device=device,
        random_state=random_state,
        callbacks=callbacks,
    )
    net = net.cpu().eval()
    coords = net.transform(features)
    err, _ = reconstruction_errors(decoder, coords, X)
    return coords, float(err.mean()), time.perf_counter() - t0
