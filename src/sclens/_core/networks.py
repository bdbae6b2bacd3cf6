"""Encoders: both map cell indices to coordinates, so objectives and the engine never differ.

- :class:`IndexedNetwork`: a frozen feature table (the output of the frozen input layer) followed
  by a :class:`Network` (parametric; generalises to new cells).
- :class:`CoordinateTable`: one learnable coordinate per cell (non-parametric).

Generative maps add a :class:`Decoder` (coordinates -> expression); :class:`GenerativeMap` pairs
either encoder with it, so GNE (table + decoder) and an autoencoder (network + decoder) train
through the same objective.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "in_chunks",
    "Network",
    "IndexedNetwork",
    "CoordinateTable",
    "ResidualBlock",
    "Decoder",
    "GenerativeMap",
]


@torch.no_grad()
def in_chunks(module: nn.Module, X: np.ndarray, chunk_size: int, n_out: int, fn=None) -> np.ndarray:
    """``fn`` (default: ``module`` itself) of the rows of ``X``, in fixed-size chunks on the
    module's device, as one float32 array (``(0, n_out)`` for no rows)."""
    fn = fn or module
    device = next(module.parameters()).device
    out = [
        fn(torch.as_tensor(X[s : s + chunk_size], device=device)).cpu().numpy()
        for s in range(0, len(X), chunk_size)
    ]
    return np.concatenate(out) if out else np.empty((0, n_out), np.float32)


class Network(nn.Module):
    """MLP trunk with an embedding head and optional heads.

    ``features -> trunk (Linear-ReLU)* -> embed (Linear) -> coordinates``;
    ``trunk -> classifier (Linear) -> logits`` when ``n_classes > 0`` (supervised pretraining);
    ``coordinates -> cluster head (Linear-ReLU-Linear) -> logits`` when ``n_clusters > 0``.
    """

    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int],
        n_components: int,
        n_classes: int = 0,
        n_clusters: int = 0,
    ):
        super().__init__()
        self.config = {
            "n_features": int(n_features),
            "hidden": [int(h) for h in hidden],
            "n_components": int(n_components),
            "n_classes": int(n_classes),
            "n_clusters": int(n_clusters),
        }
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Linear(width, n_components)
        self.classifier = nn.Linear(width, n_classes) if n_classes > 0 else None
        self.cluster_head = None
        if n_clusters > 0:
            self.add_cluster_head(n_clusters)

    @property
    def has_heads(self) -> bool:
        """Whether any output besides the map exists (classifier, cluster head)."""
        return self.classifier is not None or self.cluster_head is not None

    def add_cluster_head(self, n_clusters: int, width: int = 64) -> None:
        self.config["n_clusters"] = int(n_clusters)
        self.cluster_head = nn.Sequential(
            nn.Linear(self.config["n_components"], width), nn.ReLU(), nn.Linear(width, n_clusters)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this network has no classifier head")
        return self.classifier(self.trunk(x))

    @torch.no_grad()
    def scale_output(self, factor: float) -> None:
        """Multiply the map's coordinates by ``factor`` (the last layer's weights and bias)."""
        self.embed.weight.mul_(factor)
        self.embed.bias.mul_(factor)

    def transform(self, features: np.ndarray, chunk_size: int = 16384) -> np.ndarray:
        """Coordinates of a feature matrix, evaluated in fixed-size chunks on the network's device."""
        return in_chunks(self, features, chunk_size, self.config["n_components"])

    def cluster_logits(self, z: torch.Tensor) -> torch.Tensor:
        if self.cluster_head is None:
            raise RuntimeError("this network has no cluster head")
        return self.cluster_head(z)

    def cluster_proba(self, coords: np.ndarray, chunk_size: int = 16384) -> np.ndarray:
        """Cluster probabilities (softmax of the cluster head) of map coordinates."""

        def proba(z):
            return torch.softmax(self.cluster_logits(z), dim=1)

        n_clusters = int(self.config.get("n_clusters", 0))
        return in_chunks(self, coords, chunk_size, n_clusters, proba)


class IndexedNetwork(nn.Module):
    """A network over a frozen per-cell feature table: ``idx -> network(features[idx])``."""

    def __init__(self, features: np.ndarray, network: Network):
        super().__init__()
        self.register_buffer(
            "features", torch.as_tensor(features, dtype=torch.float32), persistent=False
        )
        self.network = network

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.network(self.features[idx])

    def classify(self, idx: torch.Tensor) -> torch.Tensor:
        return self.network.classify(self.features[idx])

    def cluster_logits(self, idx: torch.Tensor) -> torch.Tensor:
        return self.network.cluster_logits(self(idx))


class CoordinateTable(nn.Module):
    """One learnable coordinate per cell: ``idx -> coords[idx]``.

    ``sparse=True``: the gradient of ``coords`` is a sparse tensor holding only the rows of the
    batch, for a lazy optimiser (:class:`torch.optim.SparseAdam`, a ``"sparse": True`` param
    group of :meth:`~sclens._core.engine.Trainer.optimize`) that moves only those rows.
    """

    def __init__(self, init: np.ndarray, sparse: bool = False):
        super().__init__()
        self.coords = nn.Parameter(torch.as_tensor(init, dtype=torch.float32).clone())
        self.sparse = bool(sparse)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.sparse:
            return nn.functional.embedding(idx, self.coords, sparse=True)
        return self.coords[idx]


class ResidualBlock(nn.Module):
    """``x + Linear(ReLU(Linear(x)))``."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class Decoder(nn.Module):
    """Coordinates -> expression: ``Linear-ELU`` expansion, residual blocks, output layer.

    ``likelihood='mse'``: the output is the expression itself. ``'nb'``: the output are logits of
    each gene's share of the cell's counts (softmax over genes), and ``log_theta`` holds one
    negative-binomial inverse dispersion per gene.
    """

    def __init__(
        self,
        n_components: int,
        n_out: int,
        hidden: int = 256,
        n_blocks: int = 4,
        likelihood: str = "mse",
    ):
        super().__init__()
        if likelihood not in ("mse", "nb"):
            raise ValueError(f"likelihood must be 'mse' or 'nb', got {likelihood!r}.")
        self.config = {
            "n_components": int(n_components),
            "n_out": int(n_out),
            "hidden": int(hidden),
            "n_blocks": int(n_blocks),
            "likelihood": likelihood,
        }
        self.expand = nn.Sequential(nn.Linear(n_components, hidden), nn.ELU())
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(n_blocks)])
        self.out = nn.Linear(hidden, n_out)
        self.log_theta = nn.Parameter(torch.zeros(n_out)) if likelihood == "nb" else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.expand(z)))

    def profile(self, z: torch.Tensor) -> torch.Tensor:
        """Expression profile: the output itself (mse) or each gene's share of counts (nb)."""
        out = self(z)
        return torch.softmax(out, dim=1) if self.config["likelihood"] == "nb" else out

    def decode(self, coords: np.ndarray, chunk_size: int = 8192) -> np.ndarray:
        """:meth:`profile` of map coordinates, evaluated in chunks on the decoder's device."""
        coords = np.asarray(coords, dtype=np.float32)
        return in_chunks(self, coords, chunk_size, self.config["n_out"], self.profile)


class GenerativeMap(nn.Module):
    """An encoder (cell indices -> coordinates) with a :class:`Decoder` (coordinates -> expression).

    With a :class:`CoordinateTable` this is GNE; with an :class:`IndexedNetwork` an autoencoder.
    """

    def __init__(self, encoder: nn.Module, decoder: Decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.encoder(idx)
