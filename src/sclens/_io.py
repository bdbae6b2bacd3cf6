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
        Destination file; ``.npz`` is appended if missing (as :func:`numpy.savez` does), so
        ``save_model(adata, 'ptsne', 'm')`` writes ``m.npz``, which ``load_model('m')`` reads.
    """
    check_key(adata.uns, key, "adata.uns", "Train a map first, e.g. `sl.tl.ptsne(adata)`.")
    Model.from_uns(adata.uns[key].get("model"), where=f"adata.uns[{key!r}]['model']").save(path)


def load_model(path: str | os.PathLike) -> Model:
    """Read a model written by :func:`save_model`; no code from the file is executed.

    Parameters
    ----------
    path
        The model file; if there is none and ``path`` lacks the ``.npz`` suffix, ``path + '.npz'``
        (what :func:`save_model` wrote for that path).

    Returns
    -------
    A :class:`~sclens.Model`, which :func:`sclens.tl.project` accepts as reference.

    Raises
    ------
    FileNotFoundError
        Neither file exists.
    ModelError
        The file is not an sclens model (e.g. a single ``.npy`` array), is truncated or damaged,
        its weights do not fit its settings or hold NaN, or it would unpack to more than
        ``sclens._core.model.MAX_MODEL_BYTES`` (2 GiB).
    """
    return Model.load(path)
