"""Encoders: both map cell indices to coordinates, so objectives and the engine never differ.

- :class:`IndexedNetwork`: a frozen feature table (the output of the frozen input layer) followed
  by a :class:`Network` (parametric; generalises to new cells).
- :class:`CoordinateTable`: one learnable coordinate per cell (non-parametric).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Network", "IndexedNetwork", "CoordinateTable"]


class Network(nn.Module):
    """MLP trunk with an embedding head and an optional classifier head on the trunk.

    ``features -> trunk (Linear-ReLU)* -> embed (Linear) -> coordinates``;
    ``trunk -> classifier (Linear) -> logits`` when ``n_classes > 0``.
    """

    def __init__(
        self, n_features: int, hidden: Sequence[int], n_components: int, n_classes: int = 0
    ):
        super().__init__()
        self.config = {
            "n_features": int(n_features),
            "hidden": [int(h) for h in hidden],
            "n_components": int(n_components),
            "n_classes": int(n_classes),
        }
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Linear(width, n_components)
        self.classifier = nn.Linear(width, n_classes) if n_classes > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this network has no classifier head")
        return self.classifier(self.trunk(x))

    @torch.no_grad()
    def transform(self, features: np.ndarray, chunk_size: int = 16384) -> np.ndarray:
        """Coordinates of a feature matrix, evaluated in fixed-size chunks on the network's device."""
        device = next(self.parameters()).device
        out = [
            self(torch.as_tensor(features[s : s + chunk_size], device=device)).cpu().numpy()
            for s in range(0, len(features), chunk_size)
        ]
        return (
            np.concatenate(out) if out else np.empty((0, self.config["n_components"]), np.float32)
        )


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


class CoordinateTable(nn.Module):
    """One learnable coordinate per cell: ``idx -> coords[idx]``."""

    def __init__(self, init: np.ndarray):
        super().__init__()
        self.coords = nn.Parameter(torch.as_tensor(init, dtype=torch.float32).clone())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.coords[idx]
