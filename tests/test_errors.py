"""Bad input: clear errors, raised before anything in the AnnData changes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import snapshot

import sclens as sl


def _fails(adata, exc, match, **kwargs):
    before = snapshot(adata)
    with pytest.raises(exc, match=match):
        sl.tl.ptsne(adata, **kwargs)
    assert snapshot(adata) == before


def test_nan_and_inf_in_expression(pbmc):
    pbmc.X[3, 5] = np.nan
    _fails(pbmc, ValueError, r"adata.X contains 1 NaN and 0 infinite", use_rep="X")
    pbmc.X[3, 5] = np.inf
    _fails(pbmc, ValueError, r"0 NaN and 1 infinite", use_rep="X")


def test_nan_in_representation(pbmc):
    pbmc.obsm["X_bad"] = pbmc.obsm["X_pca"].copy()
    pbmc.obsm["X_bad"][0, 0] = np.nan
    _fails(pbmc, ValueError, r"obsm\['X_bad'\] contains 1 NaN", use_rep="X_bad")


def test_too_few_cells_for_perplexity(pbmc):
    small = pbmc[:60].copy()
    _fails(small, ValueError, r"needs at least 61 cells .*at most 29 here")


def test_missing_keys_list_what_exists(pbmc):
    _fails(
        pbmc,
        KeyError,
        r"'X_scvi' not found in adata.obsm; available: 'X_pca', 'X_umap'",
        use_rep="X_scvi",
    )
    _fails(pbmc, KeyError, r"'counts' not found in adata.layers; available: none", layer="counts")
    _fails(
        pbmc,
        KeyError,
        r"'celltype' not found in adata.obs; available: 'bulk_labels'",
        labels="celltype",
    )


def test_backed_anndata_is_refused_where_it_is_not_streamed(pbmc, tmp_path):
    pbmc.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    sl.tl.ptsne(pbmc, n_epochs=2)
    with pytest.raises(ValueError, match=r"backed .* adata.to_memory\(\)"):
        sl.tl.project(backed, pbmc)


def test_corrupted_model_in_reference(pbmc):
    sl.tl.ptsne(pbmc, n_epochs=2)
    ref = pbmc.copy()
    ref.uns["ptsne"]["model"]["arrays"]["input.mean"] = np.zeros(3)
    query = pbmc.copy()
    before = snapshot(query)
    with pytest.raises(sl.ModelError, match="corrupted"):
        sl.tl.project(query, ref)
    del ref.uns["ptsne"]["model"]
    with pytest.raises(sl.ModelError, match="holds no trained model"):
        sl.tl.project(query, ref)
    with pytest.raises(KeyError, match=r"'den' not found in ref.uns.*sl.tl.den\(ref\)"):
        sl.tl.project(query, ref, model_key="den")
    assert snapshot(query) == before


def test_bad_device_and_argument_types(pbmc):
    _fails(pbmc, ValueError, "device must be", device="tpu")
    with pytest.raises(TypeError, match="expects an AnnData"):
        sl.tl.ptsne(pbmc.X)
