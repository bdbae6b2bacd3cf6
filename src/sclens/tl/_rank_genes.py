"""Which genes shape a trained map: attributions as a ``rank_genes_groups`` table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._core.data import query_matrix
from .._core.engine import resolve_device
from .._core.ranking import (
    explain_groups,
    explained_output,
    group_labels,
    group_targets,
    groups_and_references,
    log_fold_changes,
    map_separation,
    rank_genes_groups_layout,
    warn_mixed_groups,
)
from .._core.threads import fixed_threads
from ._common import attribution_model, jsonable, start_adata
from ._options import check_key_added, checked_options

__all__ = ["rank_genes"]


@fixed_threads
@checked_options()
def rank_genes(
    adata: AnnData,
    groupby: str,
    *,
    model_key: str,
    method: Literal["shap", "saliency", "integrated_gradients"] = "shap",
    groups: Sequence[str] | str = "all",
    reference: str = "rest",
    explain: Literal["auto", "centroid", "axis", "logit"] = "auto",
    baseline: Literal["reference", "zeros"] = "reference",
    times_input: bool = False,
    smoothing: float = 0.5,
    n_smoothing: int = 8,
    n_steps: int = 32,
    n_background: int = 100,
    n_cells: int | None = 500,
    n_store: int = 20,
    key_added: str | None = None,
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    random_state: int | None = 0,
    copy: bool = False,
) -> AnnData | None:
    """Rank genes by how much they move cells of each group on a trained map.

    Every attribution explains one number per group, ``t_g`` (chosen by ``explain``) (``y(x)``: the map
    coordinates the network gives expression ``x``; ``c_g``: the group's centroid in the map):

    - ``'centroid'``: ``t_g(x) = -||y(x) - c_g||_1``. Attributions of ``t_g(x) - t_g(b)`` split
      the displacement of a cell toward its group's centroid, relative to where the baseline
      expression ``b`` maps, among the genes.
    - ``'axis'``: ``t_g(x) = u . (y(x) - r)``, the position along the axis from a reference
      centroid ``r`` to ``c_g`` (``u``: unit vector). Saliency takes one axis per reference group
      (from each group's centroid); the other methods one from the centroid of all reference
      cells. Its gradient has the same sign across the group (the distance's gradient points to
      the centre from every side and averages out), so it suits local gradients.
    - ``'logit'`` (maps with a cluster head, e.g. DEN, grouped by their own clusters): the
      group's cluster logit minus the mean of the other logits (``'rest'``) or minus the
      reference cluster's logit.

    ``explain='auto'`` uses ``'logit'`` when ``groupby == model_key`` and the model has a cluster
    head, otherwise ``'axis'`` for saliency and ``'centroid'`` for integrated gradients and SHAP.
    ``groupby`` may be any categorical ``.obs`` column. All of them are built of Linear and ReLU
    layers, so SHAP's DeepLIFT sums exactly and integrated gradients place kinks exactly.

    The reference is taken group by group: with ``reference='rest'`` each other group of
    ``groupby`` counts equally, however many cells it has (a pooled 'rest' lets a large group
    drown a small one, and for a group that sits amid the others on the map the pooled mean
    profile maps onto the group itself, leaving nothing to explain). Methods (attributions per
    cell and gene; ``m_h``: mean expression of reference group ``h``):

    - ``'saliency'``: the gradient of the axis from each reference group to the group, at the
      group's cells, times ``|mean_g - m_h|``, how far the group's mean expression is from the
      reference group's, averaged over ``h``: a gene the map is sensitive to but that does not
      differ between the groups scores zero. ``times_input=True``: times each cell's own
      ``x - m_h`` instead (gradient x input relative to the baseline). The gradient is
      SmoothGrad's: averaged over ``n_smoothing`` copies of each cell with Gaussian noise of
      ``smoothing`` times each input feature's standard deviation, since a network can be
      flat around a compact group far from the others, where the gradient at its cells alone
      says little (measured in ``docs/methods/attribution.md``).
    - ``'integrated_gradients'``: ``(x - b) *`` the mean gradient over the straight path
      ``b -> x``, with the baseline ``b`` the mean ``m_h`` of one reference group per cell (the
      groups in turn) or zero expression (``baseline='zeros'``); attributions sum to
      ``t_g(x) - t_g(b)``.
    - ``'shap'``: ``shap.DeepExplainer`` (DeepLIFT rescale rule on the network) against a
      background of ``n_background`` reference cells drawn evenly from the reference groups;
      attributions sum to ``t_g(x)`` minus its mean over the background.

    A gene's score is the mean over the group's cells of its attribution times the sign of its
    difference from the baseline: positive when the gene is higher in the group's cells and that
    moves them toward the group, negative when it is lower and that moves them toward the group
    (down-regulated genes rank last, as in :func:`scanpy.tl.rank_genes_groups`). Without the
    sign, the markers of the other groups, which a group's cells lack, rank among its top genes;
    that unsigned mean, the genes' *influence* on the map, is stored as a second ranking.
    Measured on 30 random planted-marker data sets (``benchmarks/attributions.py``,
    docs/benchmarks.md), with :func:`sclens.tl.attribution_faithfulness` for whether the top
    genes are the ones the map uses.

    Parameters
    ----------
    adata
        Cells to explain, with the genes the model reads (aligned by name as in projection).
    groupby
        Categorical ``.obs`` column whose groups are ranked.
    model_key
        Key of a trained network map in ``adata.uns`` (``'ptsne'``, ``'den'``, ...).
    method
        ``'shap'``, ``'saliency'`` or ``'integrated_gradients'``.
    groups
        Groups to rank (``'all'``: every group but the reference).
    reference
        ``'rest'`` or a group to compare with.
    explain
        ``'auto'``, ``'centroid'``, ``'axis'`` or ``'logit'`` (see above).
    baseline
        For integrated gradients and ``times_input``: ``'reference'`` (mean expression of the
        group's reference cells) or ``'zeros'`` (no expression).
    times_input
        Saliency only: multiply the gradient by ``x - baseline``.
    smoothing
        Saliency only: noise of SmoothGrad, in standard deviations of each input feature (of
        the PCs, for a model that reads genes through its PCA layer); 0: the plain gradient.
    n_smoothing
        Saliency only: noised copies of each cell the gradient is averaged over.
    n_steps
        Integration steps of integrated gradients; intervals whose integral misses its share of
        the output difference are split further (see
        :func:`sclens._core.attribution.integrated_gradients`); each cell's completeness check
        is stored (Returns; accuracy against many steps in ``docs/methods/attribution.md``).
    n_background
        Reference cells in SHAP's background sample, drawn evenly from the reference groups.
    n_cells
        Explain at most this many cells per group (sampled with ``random_state``); ``None``:
        all. A score is a mean over the group's cells, so a sample gives it to within a small
        error while the time (linear in the cells, for every method) stays bounded on large
        data (timings in ``docs/methods/attribution.md``).
    n_store
        Per-cell attributions of each group's top ``n_store`` genes are kept for
        :func:`sclens.pl.shap_summary`.
    key_added
        Key in ``adata.uns``; default ``'rank_genes_' + method``.
    device
        ``'auto'``, ``'cpu'`` or ``'cuda'``.
    random_state
        Seed of the cell and background samples.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets ``adata.uns[key_added]`` in the layout of
    :func:`scanpy.tl.rank_genes_groups`, so ``sc.pl.rank_genes_groups*`` and
    ``sc.get.rank_genes_groups_df`` read it:

    ``names``, ``scores``
        Record arrays (one field per group) of the model's genes sorted by score, the mean
        over the group's explained cells of the attribution signed by the gene's difference
        from the baseline (see above).
    ``logfoldchanges``
        The log2 fold change of mean expression, group vs. reference, from the data.
    ``pvals``, ``pvals_adj``
        NaN: attributions come with no test statistic.
    ``params``
        ``groupby``, ``reference``, ``method``, ``use_raw`` (False), ``layer`` and the settings.
    ``influence``
        ``names`` and ``scores`` as above, ranked by the mean attribution without the sign:
        the genes whose values hold the group's cells in the group on the map, other groups'
        markers that the group lacks included (what :func:`sclens.tl.attribution_faithfulness`
        removes for the ranking ``'<key_added>:influence'``).
    ``separation``
        Per group, how well the map keeps it apart: the mean share of its cells' 15 nearest map
        neighbours in the group, scaled so that 0 is chance (as mixed as a random placement)
        and 1 the most the group's size allows (NaN for a one-cell group). Below 0.75 a
        warning is logged: attributions explain the map, and a map that mixes a group seldom
        moves its cells by the genes that tell it apart.
    ``attributions``
        Per group: ``obs_names`` of the explained cells, their attributions for the top
        ``n_store`` ``genes`` (``values``), each cell's attribution ``total`` over all genes and
        the ``output`` difference it should equal (``t(x) - t(b)`` or ``t(x) - E_bg t``; for
        saliency, the explained value).
    """
    key_added = check_key_added(adata, key_added or f"rank_genes_{method}")
    resolve_device(device)
    model = attribution_model(adata, model_key)
    names, masks, ref_masks = groups_and_references(adata, groupby, groups, reference)
    adata = start_adata(adata, "rank_genes", copy)
    start = logg.info(f"ranking genes of {len(names)} groups of {groupby!r} by {method}")

    inp = model.input_layer
    dev = resolve_device(device)
    net = model.network("cpu")
    X = query_matrix(adata, inp)
    features = inp.transform(X)
    rng = np.random.default_rng(random_state)
    kind = explained_output(explain, method, net, groupby == model_key)
    targets, coords, centroids = group_targets(
        kind, model, net, features, names, masks, ref_masks, reference, model_key
    )
    ranked = explain_groups(
        method,
        kind,
        targets,
        net,
        inp,
        X,
        features,
        adata,
        groupby,
        names,
        masks,
        reference,
        coords,
        centroids,
        n_cells=n_cells,
        n_store=n_store,
        rng=rng,
        device=dev,
        zero_baseline=baseline == "zeros",
        times_input=times_input,
        smoothing=smoothing,
        n_smoothing=n_smoothing,
        noise_seed=random_state,
        n_steps=n_steps,
        n_background=n_background,
    )
    params = jsonable(
        dict(
            groupby=groupby,
            reference=reference,
            method=method,
            use_raw=False,
            layer=inp.key,
            corr_method="none",
            model_key=model_key,
            explain=kind,
            baseline=baseline,
            times_input=times_input if method == "saliency" else None,
            smoothing=smoothing if method == "saliency" else None,
            n_smoothing=n_smoothing if method == "saliency" and smoothing > 0 else None,
            n_steps=n_steps if method == "integrated_gradients" else None,
            n_background=n_background if method == "shap" else None,
            n_cells=n_cells,
            random_state=random_state,
        )
    )
    separation = map_separation(
        net.transform(features) if coords is None else coords, group_labels(adata, groupby), names
    )
    warn_mixed_groups(names, separation)
    lfc = log_fold_changes(X, masks, ref_masks, log_data=not inp.integer_input)
    adata.uns[key_added] = rank_genes_groups_layout(names, inp.var_names, ranked, lfc, params)
    adata.uns[key_added]["separation"] = dict(zip(names, separation.tolist(), strict=True))
    logg.info(
        "    finished",
        time=start,
        deep=f"added to `.uns[{key_added!r}]`: names, scores, logfoldchanges, pvals, pvals_adj "
        "(rank_genes_groups layout), params, attributions, influence, separation",
    )
    return adata if copy else None
