"""Pieces every ``sl.tl`` function shares: validation, the network recipe, writing results."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core.data import check_key, check_not_backed
from .._core.model import Model, ModelError
from .._core.recipe import jsonable, seeded

__all__ = [
    "start_adata",
    "stored_model",
    "categorical_labels",
    "seeded",
    "jsonable",
    "renamed_options",
]


def start_adata(adata: AnnData, func: str, copy: bool, *, backed_ok: bool = False) -> AnnData:
    """Validate the object itself; return the AnnData to write into (a copy if asked).

    ``backed_ok``: the function streams ``.X`` of a backed AnnData in row blocks (results are
    written into the in-memory ``.obsm``/``.uns``; ``write_h5ad`` them to keep them).
    """
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"`{func}` expects an AnnData as first argument, got {type(adata).__name__}."
        )
    if not backed_ok:
        check_not_backed(adata, func)
    elif getattr(adata, "isbacked", False) and copy:
        raise ValueError(
            f"`{func}(..., copy=True)` needs an in-memory AnnData; with a backed one, write the "
            "results into it (copy=False) and save them with `adata.write_h5ad(...)`."
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"`{func}` got an empty AnnData ({adata.n_obs} cells x {adata.n_vars} genes)."
        )
    return adata.copy() if copy else adata


def stored_model(adata: AnnData, key: str, name: str = "adata", hint: str = "") -> Model:
    """The trained model in ``adata.uns[key]['model']``, with errors that say what to do."""
    check_key(
        adata.uns,
        key,
        f"{name}.uns",
        hint or f"Train a map first, e.g. `sl.tl.{key}({name})`, or pass the right key.",
    )
    if not isinstance(adata.uns[key], dict) or "model" not in adata.uns[key]:
        raise ModelError(f"{name}.uns[{key!r}] holds no trained model ('model' entry missing).")
    return Model.from_uns(adata.uns[key]["model"], where=f"{name}.uns[{key!r}]['model']")


def categorical_labels(adata: AnnData, key: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Integer codes, category names and the mask of labelled cells of an ``.obs`` column."""
    check_key(adata.obs, key, "adata.obs")
    col = adata.obs[key]
    cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
    codes = cat.cat.codes.to_numpy()
    if (codes >= 0).sum() < 2 or len(cat.cat.categories) < 2:
        raise ValueError(
            f"adata.obs[{key!r}] needs at least two labelled classes, found {len(cat.cat.categories)}."
        )
    return codes.astype(np.int64), [str(c) for c in cat.cat.categories], codes >= 0


def renamed_options(**renames: str) -> Callable[[Callable], Callable]:
    """Decorator: still accept the options' old names (``old=new``), with a FutureWarning.

    Only names that shipped in a release or a tutorial get a shim; the signature (and so the
    docs and the package-structure test) shows the new names alone.
    """

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def call(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"`sl.tl.{func.__name__}` got both `{old}` and `{new}`; `{old}` is the "
                        f"old name of `{new}`: pass `{new}` alone."
                    )
                warnings.warn(
                    f"`sl.tl.{func.__name__}({old}=...)` is deprecated and will be removed: "
                    f"pass `{new}=...` instead.",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return call

    return wrap


def attribution_model(adata: AnnData, model_key: str) -> Model:
    """The model in ``adata.uns[model_key]``, checked to be a network that reads genes."""
    model = stored_model(
        adata,
        model_key,
        hint="Train a map first, e.g. `sl.tl.ptsne(adata)` or `sl.tl.den(adata)`, or pass the "
        "right `model_key`.",
    )
    if "network" not in model.config:
        raise ModelError(
            f"the {model.method!r} model in adata.uns[{model_key!r}] has no network to differentiate; "
            "attributions need a network map (ptsne, den, parametric ardr)."
        )
    if model.input_layer.source != "genes":
        raise ValueError(
            f"the {model.method!r} model reads adata.obsm[{model.input_layer.key!r}], not genes, so "
            "its outputs cannot be attributed to genes. Train it with `use_rep=None` (genes through "
            "a frozen PCA layer) or `use_rep='X'`."
        )
    return model
