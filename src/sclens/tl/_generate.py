"""Decoded expression at points of a GNE map: what the map means."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core.model import Model
from .._core.threads import fixed_threads

__all__ = ["generate"]


@fixed_threads
def generate(adata: AnnData | Model, coords, *, model_key: str = "gne") -> AnnData:
    """Decoded expression profiles at given map coordinates.

    Parameters
    ----------
    adata
        AnnData holding a GNE model in ``uns[model_key]``, or a :class:`~sclens.Model`.
    coords
        Map coordinates, ``(n_points, n_components)``.
    model_key
        Key of the GNE map.

    Returns
    -------
    A new AnnData with one observation per coordinate and the model's genes as variables; ``.X``
    holds the decoded expression (log-normalised for ``likelihood='mse'``; for ``'nb'``, the
    expected counts at the reference's median total count), ``.obsm['X_' + model_key]`` the
    coordinates.
    """
    from ._project import _reference_model

    model = _reference_model(adata, model_key)
    if not model.has_decoder:
        raise ValueError(
            f"`generate` needs a GNE model (one with a decoder); uns[{model_key!r}] holds a "
            f"{model.method!r} model."
        )
    decoder = model.decoder()
    d = decoder.config["n_components"]
    Z = np.asarray(coords, dtype=np.float32)
    if Z.ndim == 1 and Z.size == d:
        Z = Z[None, :]
    if Z.ndim != 2 or Z.shape[1] != d:
        raise ValueError(f"coords must have shape (n_points, {d}), got {np.shape(coords)}.")
    if not np.isfinite(Z).all():
        raise ValueError("coords contain NaN or infinite values.")
    profiles = decoder.decode(Z)
    if decoder.config["likelihood"] == "nb":
        profiles = profiles * float(model.config.get("library_size", 1e4))
    out = AnnData(
        profiles.astype(np.float32),
        var=pd.DataFrame(index=pd.Index(model.input_layer.var_names, dtype=str)),
    )
    out.obs_names = [f"generated_{i}" for i in range(len(Z))]
    out.obsm[f"X_{model_key}"] = Z
    return out
