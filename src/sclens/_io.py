"""Standalone model files."""

from __future__ import annotations

import os

from anndata import AnnData

from ._core.data import check_key
from ._core.model import Model

__all__ = ["save_model", "load_model"]


def save_model(adata: AnnData, key: str, path: str | os.PathLike) -> None:
    """Write the model in ``adata.uns[key]['model']`` to an ``.npz`` file (arrays + JSON, no pickle).

    Parameters
    ----------
    adata
        AnnData holding a trained map.
    key
        The map's key (e.g. ``'ptsne'``).
    path
        Destination file (``.npz`` is appended by numpy if missing).
    """
    check_key(adata.uns, key, "adata.uns", "Train a map first, e.g. `sl.tl.ptsne(adata)`.")
    Model.from_uns(adata.uns[key].get("model"), where=f"adata.uns[{key!r}]['model']").save(path)


def load_model(path: str | os.PathLike) -> Model:
    """Read a model written by :func:`save_model`; no code from the file is executed.

    Returns a :class:`~sclens.Model`, which :func:`sclens.tl.project` accepts as reference.
    """
    return Model.load(path)
