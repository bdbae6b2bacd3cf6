"""AnnData -> arrays: input validation, the frozen input layer (PCA), gene alignment for queries."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

__all__ = [
    "RowChunks",
    "InputLayer",
    "check_finite",
    "check_key",
    "check_not_backed",
    "fit_pca",
    "log_cp10k",
    "obsm_init",
    "get_matrix",
    "prepare_input",
    "query_matrix",
]


def _listing(keys: Sequence[str]) -> str:
    keys = list(keys)
    return ", ".join(repr(k) for k in keys) if keys else "none"


class RowChunks:
    """A matrix read in row blocks: a backed AnnData's ``.X``, optionally a subset of columns.

    Holds no data itself: row slices come back in memory (CSR or dense, selected columns only),
    and the statistics and products sclens needs are accumulated block by block, so a matrix
    larger than memory is never loaded whole.
    """

    def __init__(self, X, cols: np.ndarray | None = None, chunk_size: int = 8192):
        self.X = X
        self.cols = None if cols is None else np.asarray(cols)
        self.chunk_size = int(chunk_size)
        n_cols = X.shape[1] if cols is None else len(self.cols)
        self.shape = (X.shape[0], n_cols)
        self.ndim = 2

    def __getitem__(self, rows):
        if isinstance(rows, tuple):
            raise TypeError("RowChunks supports row selection only; use select_columns().")
        block = self.X[rows]
        if self.cols is not None:
            block = block[:, self.cols]
        return block

    def select_columns(self, cols: np.ndarray) -> RowChunks:
        cols = np.asarray(cols)
        return RowChunks(self.X, cols if self.cols is None else self.cols[cols], self.chunk_size)

    def blocks(self):
        """``(start, block)`` pairs, ``block`` as float64 CSR or ndarray."""
        for start in range(0, self.shape[0], self.chunk_size):
            yield start, _as_float(self[start : start + self.chunk_size])

    def mean(self, squared: bool = False) -> np.ndarray:
        total = np.zeros(self.shape[1])
        for _, b in self.blocks():
            b = b.multiply(b) if (squared and sparse.issparse(b)) else (b * b if squared else b)
            total += np.asarray(b.sum(axis=0)).ravel()
        return total / max(self.shape[0], 1)

    def gram_matmul(self, W: np.ndarray) -> np.ndarray:
        """``X.T @ (X @ W)`` in one pass over the rows."""
        out = np.zeros((self.shape[1], W.shape[1]))
        for _, b in self.blocks():
            out += np.asarray(b.T @ np.asarray(b @ W))
        return out


def check_key(mapping, key: str, where: str, hint: str = "") -> None:
    """Raise a KeyError naming the keys that do exist."""
    if key not in mapping:
        raise KeyError(
            f"{key!r} not found in {where}; available: {_listing(mapping.keys())}.{' ' + hint if hint else ''}"
        )


def check_not_backed(adata: AnnData, func: str) -> None:
    if getattr(adata, "isbacked", False):
        raise ValueError(
            f"`{func}` needs the AnnData in memory, but it is backed by {adata.filename!s}. "
            "Load it with `adata = adata.to_memory()` (or `sc.read_h5ad(path)` without backed=)."
        )


def check_finite(X, what: str) -> None:
    """Raise if X holds NaN or inf, saying how many and where to look."""
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be numeric, got dtype {values.dtype}.")
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            n_nan = int(np.isnan(values).sum())
            raise ValueError(
                f"{what} contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values. "
                "Remove or impute them first (for example `adata = adata[np.isfinite(...)]`, or "
                "`sc.pp.filter_cells`/`filter_genes`), then run again."
            )


def get_matrix(adata: AnnData, layer: str | None):
    """`adata.X` or a layer, checked to be a finite 2-D numeric matrix."""
    if layer is None:
        X = adata.X
        what = "adata.X"
        if X is None:
            raise ValueError(
                "adata.X is empty; pass `layer=` naming a layer that holds expression."
            )
        if getattr(adata, "isbacked", False):
            X = RowChunks(X)
            for _, block in X.blocks():
                check_finite(block, what)
            return X
    else:
        check_key(adata.layers, layer, "adata.layers")
        X = adata.layers[layer]
        what = f"adata.layers[{layer!r}]"
    if not sparse.issparse(X):
        X = np.asarray(X)
    check_finite(X, what)
    return X


def _as_float(X):
    if isinstance(X, RowChunks):
        return X
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)
        return X.astype(np.float64) if X.dtype != np.float64 else X
    return np.asarray(X, dtype=np.float64)


def _mean(X) -> np.ndarray:
    if isinstance(X, RowChunks):
        return X.mean()
    return np.asarray(X.mean(axis=0), dtype=np.float64).ravel()


def fit_pca(
    X, n_comps: int, *, random_state: int = 0, n_iter: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Randomised PCA with implicit centring (sparse input is never densified).

    Subspace iteration on the covariance: each iteration is *one* pass over the rows,
    accumulating ``X^T (X W)`` block by block, so a backed matrix is read ``n_iter + 1`` times and
    nothing of size ``n_obs x k`` is ever held. The basis is orthonormalised after every pass
    (float64), and the components come from a Rayleigh-Ritz step on the final basis.

    Returns ``(mean, components)`` with ``components`` of shape ``(n_vars, n_comps)``;
    the sign of each component is fixed so that its largest loading is positive.
    """
    X = _as_float(X)
    n, g = X.shape
    n_comps = min(n_comps, n - 1, g)
    mean = _mean(X)
    rng = np.random.default_rng(random_state)
    k = min(n_comps + 20, g, n)

    def covariance_times(W):  # (X - 1 mean^T)^T (X - 1 mean^T) @ W, one pass over X
        XtXW = X.gram_matmul(W) if isinstance(X, RowChunks) else np.asarray(X.T @ (X @ W))
        return XtXW - n * np.outer(mean, mean @ W)

    W, _ = np.linalg.qr(rng.standard_normal((g, k)))
    for _ in range(n_iter):
        W, _ = np.linalg.qr(covariance_times(W))
    CW = covariance_times(W)
    evals, evecs = np.linalg.eigh(W.T @ CW)  # Rayleigh-Ritz: k x k
    comps = W @ evecs[:, np.argsort(evals)[::-1][:n_comps]]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(n_comps)])
    signs[signs == 0] = 1
    return mean, comps * signs


@dataclass
class InputLayer:
    """The frozen first layer of a network: ``features = (x - mean) @ loadings / scale``.

    ``source`` is ``'genes'`` (x is expression of ``var_names`` from ``.X`` or ``layer``) or
    ``'obsm'`` (x is ``adata.obsm[key]``). ``loadings`` is ``None`` for the identity.
    """

    source: str
    key: str | None
    mean: np.ndarray
    loadings: np.ndarray | None
    scale: float
    var_names: np.ndarray | None = None
    integer_input: bool = False
    #: share of negative values in the training input (``None``: not recorded, older models)
    negative_fraction: float | None = None

    @property
    def n_in(self) -> int:
        return len(self.mean)

    @property
    def n_features(self) -> int:
        return self.n_in if self.loadings is None else self.loadings.shape[1]

    def transform(self, X, chunk_size: int = 8192) -> np.ndarray:
        """Features for the network; identical arithmetic for reference and query cells."""
        out = np.empty((X.shape[0], self.n_features), dtype=np.float32)
        shift = self.mean if self.loadings is None else self.mean @ self.loadings
        for start in range(0, X.shape[0], chunk_size):
            block = X[start : start + chunk_size]
            block = (
                block.astype(np.float64)
                if sparse.issparse(block)
                else np.asarray(block, np.float64)
            )
            f = block if self.loadings is None else block @ self.loadings
            f = np.asarray(f.todense() if sparse.issparse(f) else f)
            out[start : start + chunk_size] = (f - shift) / self.scale
        return out

    # storage ------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"input.mean": self.mean.astype(np.float64)}
        if self.loadings is not None:
            arrays["input.loadings"] = self.loadings.astype(np.float64)
        if self.var_names is not None:
            arrays["input.var_names"] = np.asarray(self.var_names, dtype=str)
        return arrays

    def to_config(self) -> dict:
        return {
            "source": self.source,
            "key": self.key,
            "scale": float(self.scale),
            "integer_input": bool(self.integer_input),
            **(
                {}
                if self.negative_fraction is None
                else {"negative_fraction": float(self.negative_fraction)}
            ),
        }

    @classmethod
    def from_storage(cls, config: dict, arrays: dict[str, np.ndarray]) -> InputLayer:
        var_names = arrays.get("input.var_names")
        return cls(
            source=config["source"],
            key=config["key"],
            mean=np.asarray(arrays["input.mean"], dtype=np.float64),
            loadings=None
            if "input.loadings" not in arrays
            else np.asarray(arrays["input.loadings"], dtype=np.float64),
            scale=float(config["scale"]),
            var_names=None if var_names is None else np.asarray(var_names).astype(str),
            integer_input=bool(config.get("integer_input", False)),
            negative_fraction=(
                None
                if config.get("negative_fraction") is None
                else float(config["negative_fraction"])
            ),
        )


def _sample_values(X) -> np.ndarray:
    """Up to 100,000 stored values from the first 2,000 rows (zeros of sparse data excluded)."""
    if isinstance(X, RowChunks):
        X = X[: min(X.shape[0], 2000)]
    elif X.shape[0] > 2000:
        X = X[:2000]
    values = X.data if sparse.issparse(X) else np.asarray(X)
    return np.asarray(values).ravel()[:100_000]


class ValueProfile(NamedTuple):
    """What a sample of a matrix's stored values says about its scale."""

    n: int  #: values sampled (0 for an all-zero sparse matrix)
    integer: bool
    largest: float
    negative: float  #: share of negative values

    @property
    def counts(self) -> bool:
        """Integers above 30: raw counts, not log-normalised values (``log1p(1e4)`` is 9.2)."""
        return self.integer and self.largest > 30


def value_profile(X) -> ValueProfile:
    """The :class:`ValueProfile` of up to 100,000 values from ``X``'s first 2,000 rows."""
    sample = _sample_values(X)
    if not sample.size:
        return ValueProfile(0, False, 0.0, 0.0)
    return ValueProfile(
        sample.size,
        bool(np.all(np.mod(sample, 1) == 0)),
        float(sample.max()),
        float((sample < 0).mean()),
    )


def warn_if_counts(profile: ValueProfile, what: str, func: str, hint: str = "") -> None:
    """Warn when a matrix that should be log-normalised looks like raw counts."""
    if profile.counts:
        warnings.warn(
            f"{what} looks like raw counts (integers up to {profile.largest:g}), but `{func}` "
            "expects log-normalised expression. Run `sc.pp.normalize_total(adata)` and "
            f"`sc.pp.log1p(adata)` first{hint}.",
            UserWarning,
            stacklevel=4,
        )


def _scanpy_pca_layer(adata: AnnData, X, n_pcs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, loadings) of `sc.pp.pca` if ``obsm['X_pca']`` is reproduced by them, else None.

    The cells may be a subset of those the PCA was fitted on (``adata = adata[keep]`` after
    ``sc.pp.pca``): ``X_pca`` is then centred on the full data's mean, not on this subset's,
    a constant shift of every row. The returned mean is this subset's mean moved along the PCs
    by that shift, so ``(X - mean) @ loadings`` reproduces ``X_pca`` itself.
    """
    if "X_pca" not in adata.obsm or "PCs" not in adata.varm:
        return None
    pcs = np.asarray(adata.varm["PCs"], dtype=np.float64)[:, :n_pcs]
    if pcs.shape[0] != X.shape[1]:
        return None
    mean = _mean(_as_float(X))
    rows = np.arange(min(adata.n_obs, 256))
    block = _as_float(X[rows])
    recon = np.asarray(block @ pcs) - mean @ pcs
    target = np.asarray(adata.obsm["X_pca"][rows, : pcs.shape[1]], dtype=np.float64)
    shift = (recon - target).mean(axis=0)
    gram = pcs.T @ pcs
    if np.abs(shift).max() > 1e-3 * np.abs(target).max() and np.allclose(
        gram, np.eye(len(gram)), atol=1e-4
    ):
        mean = mean + pcs @ shift  # (mean + pcs shift) @ pcs = mean @ pcs + shift
        recon = recon - shift
    if not np.allclose(recon, target, rtol=1e-3, atol=1e-3 * np.abs(target).max()):
        return None
    return mean, pcs


def prepare_input(
    adata: AnnData,
    *,
    use_rep: str | None,
    n_pcs: int | None,
    layer: str | None,
    random_state: int = 0,
    func: str = "this tool",
) -> tuple[InputLayer, np.ndarray]:
    """Decide what a network reads and compute its training features.

    - ``use_rep=None``: genes (``.X`` or ``layer``) through a frozen PCA layer; scanpy's
      ``X_pca``/``varm['PCs']`` is reused when it reproduces, otherwise a PCA is fitted here.
      With ``n_pcs=0`` or no more genes than ``n_pcs``, the genes are read directly.
    - ``use_rep='X'``: genes directly, no PCA.
    - ``use_rep='X_pca'``: as ``None`` but requires scanpy's PCA.
    - any other ``use_rep``: the ``.obsm`` matrix itself; projecting then needs the query's
      ``.obsm[use_rep]`` in the same space.
    """
    if use_rep is not None and use_rep not in ("X", "X_pca"):
        if layer is not None:
            raise ValueError(
                f"Pass either `use_rep` ({use_rep!r}) or `layer` ({layer!r}), not both."
            )
        check_key(adata.obsm, use_rep, "adata.obsm", "Pass `use_rep=None` to read genes.")
        R = adata.obsm[use_rep]
        R = R.to_numpy() if isinstance(R, pd.DataFrame) else R
        R = R.toarray() if sparse.issparse(R) else np.asarray(R)
        check_finite(R, f"adata.obsm[{use_rep!r}]")
        if R.ndim != 2 or R.shape[1] < 2:
            raise ValueError(
                f"adata.obsm[{use_rep!r}] must be a 2-D matrix with >= 2 columns, got {R.shape}."
            )
        mean = R.mean(axis=0).astype(np.float64)
        layer_ = InputLayer("obsm", use_rep, mean, None, float(R.std(axis=0).max() or 1.0))
        return layer_, layer_.transform(R)

    if use_rep == "X_pca" and "X_pca" not in adata.obsm:
        check_key(
            adata.obsm,
            "X_pca",
            "adata.obsm",
            "Run `sc.pp.pca(adata)` first or pass `use_rep=None`.",
        )
    X = get_matrix(adata, layer)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D expression matrix, got shape {X.shape}.")
    var_names = np.asarray(adata.var_names, dtype=str)
    if pd.Index(var_names).has_duplicates:
        raise ValueError(
            "adata.var_names has duplicates; run `adata.var_names_make_unique()` first."
        )
    n_pcs = 50 if n_pcs is None else int(n_pcs)
    profile = value_profile(X)
    integer, negatives = profile.integer, profile.negative
    warn_if_counts(profile, "adata.X" if layer is None else f"adata.layers[{layer!r}]", func)

    if use_rep == "X" or n_pcs == 0 or (use_rep is None and X.shape[1] <= n_pcs):
        Xf = _as_float(X)
        mean = _mean(Xf)
        if isinstance(Xf, RowChunks):
            mean_sq = Xf.mean(squared=True)
        else:
            mean_sq = _mean(Xf.multiply(Xf) if sparse.issparse(Xf) else Xf**2)
        sd = np.sqrt(np.maximum(mean_sq - mean**2, 0))
        inp = InputLayer(
            "genes", layer, mean, None, float(sd.max() or 1.0), var_names, integer, negatives
        )
        return inp, inp.transform(X)

    found = _scanpy_pca_layer(adata, X, n_pcs) if layer is None else None
    if found is None:
        if use_rep == "X_pca":
            logg.warning(
                "obsm['X_pca'] is not reproduced by (X - mean) @ varm['PCs'] (PCA of another layer, "
                "or X changed after PCA); fitting a new PCA of X so the model maps genes to coordinates."
            )
        start = logg.info(f"computing PCA ({n_pcs} components) for the frozen input layer")
        mean, loadings = fit_pca(X, n_pcs, random_state=random_state)
        logg.info("    finished", time=start)
    else:
        mean, loadings = found
    # keep only genes the layer reads (scanpy stores zero loadings for non-HVGs)
    used = np.abs(loadings).sum(axis=1) > 0
    if not used.all():
        cols = np.flatnonzero(used)
        X = X.select_columns(cols) if isinstance(X, RowChunks) else X[:, cols]
        mean, loadings, var_names = mean[used], loadings[used], var_names[used]
    inp = InputLayer("genes", layer, mean, loadings, 1.0, var_names, integer, negatives)
    inp.scale = float(inp.transform(X).std(axis=0).max() or 1.0)
    # recompute rather than rescale, so training uses the exact arithmetic of projection
    return inp, inp.transform(X)


def check_query_scale(X, inp: InputLayer) -> None:
    """Warn when the query is on another scale than the model's training input.

    Raw counts against a normalised model, and a scaled query (``sc.pp.scale``: about half the
    entries negative) against a model trained on non-negative log-normalised values (or the
    other way round), are placed confidently but wrongly.
    """
    profile = value_profile(X)
    if not profile.n:
        return
    if inp.integer_input is False and profile.counts:
        warnings.warn(
            "The query looks like raw counts but the model was trained on non-integer (normalised) "
            "values; normalise the query the same way as the reference before projecting.",
            UserWarning,
            stacklevel=3,
        )
    if inp.negative_fraction is None:
        return
    ref_neg, query_neg = inp.negative_fraction, profile.negative
    if (ref_neg < 0.01 and query_neg > 0.05) or (ref_neg > 0.05 and query_neg < 0.01):
        warnings.warn(
            f"{query_neg:.0%} of the query's values are negative against {ref_neg:.0%} in the "
            "model's training data: the query looks "
            + ("scaled (e.g. `sc.pp.scale`)" if query_neg > ref_neg else "unscaled")
            + " while the reference was not. Prepare the query exactly like the reference "
            "(e.g. `normalize_total` + `log1p`, scaled only if the reference was) before projecting.",
            UserWarning,
            stacklevel=3,
        )


def query_matrix(query: AnnData, inp: InputLayer, *, min_shared: float = 0.5):
    """The query's input aligned to what the model reads (genes reordered, missing ones zero)."""
    if inp.source == "obsm":
        check_key(
            query.obsm,
            inp.key,
            "query.obsm",
            f"The model reads obsm[{inp.key!r}]; compute it for the query in the reference's space.",
        )
        R = query.obsm[inp.key]
        R = R.to_numpy() if isinstance(R, pd.DataFrame) else R
        R = R.toarray() if sparse.issparse(R) else np.asarray(R)
        if R.ndim != 2 or R.shape[1] != inp.n_in:
            raise ValueError(
                f"query.obsm[{inp.key!r}] has shape {R.shape}; the model expects {inp.n_in} columns."
            )
        check_finite(R, f"query.obsm[{inp.key!r}]")
        return R
    X = get_matrix(query, inp.key)
    qnames = pd.Index(np.asarray(query.var_names, dtype=str))
    if qnames.has_duplicates:
        raise ValueError(
            "query.var_names has duplicates; run `query.var_names_make_unique()` first."
        )
    ref_names = inp.var_names
    pos = qnames.get_indexer(ref_names)
    shared = pos >= 0
    n_shared, n_ref = int(shared.sum()), len(ref_names)
    if n_shared == 0:
        raise ValueError(
            f"The query shares no genes with the model's {n_ref} genes (e.g. {list(ref_names[:3])}; "
            f"query has {list(qnames[:3])}). Use the same gene identifiers (symbols vs. Ensembl IDs)."
        )
    if n_shared < min_shared * n_ref:
        raise ValueError(
            f"Only {n_shared} of the model's {n_ref} genes ({n_shared / n_ref:.0%}) are in the query; "
            f"at least {min_shared:.0%} are needed for a meaningful projection. Check gene identifiers."
        )
    if n_shared < n_ref:
        missing = ref_names[~shared]
        warnings.warn(
            f"{n_ref - n_shared} of the model's {n_ref} genes ({1 - n_shared / n_ref:.1%}) are missing "
            f"from the query and are set to zero (e.g. {', '.join(missing[:5])}).",
            stacklevel=2,
        )
    check_query_scale(X, inp)
    if n_shared == n_ref and np.array_equal(pos, np.arange(n_ref)) and X.shape[1] == n_ref:
        return X
    cols = np.flatnonzero(shared)
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)[:, pos[shared]]
        select = sparse.csr_matrix(
            (np.ones(len(cols)), (np.arange(len(cols)), cols)), shape=(len(cols), n_ref)
        )
        return (X @ select).tocsr()
    out = np.zeros((X.shape[0], n_ref), dtype=np.float64)
    out[:, cols] = np.asarray(X)[:, pos[shared]]
    return out


def log_cp10k(X):
    """``log1p`` of counts per 10,000 (each cell's total clipped at 1), the log-normalised scale
    of raw counts; sparse stays sparse."""
    lib = np.asarray(X.sum(1)).ravel().clip(1)
    if sparse.issparse(X):
        return (sparse.diags(1e4 / lib) @ X).log1p()
    return np.log1p(X * (1e4 / lib)[:, None])


def obsm_init(
    adata: AnnData, init: str, n_components: int, named: Sequence[str]
) -> np.ndarray | None:
    """The starting map named by ``init`` when it is an ``.obsm`` key, checked (present, 2-D,
    at least ``n_components`` columns, finite) and as float64; ``None`` when ``init`` is one of
    the tool's ``named`` starts (``'pca'``, ``'random'``, ...)."""
    if init in named:
        return None
    check_key(
        adata.obsm, init, "adata.obsm", f"`init` is {', '.join(map(repr, named))} or an .obsm key."
    )
    Y = adata.obsm[init]
    Y = np.asarray(Y.to_numpy() if isinstance(Y, pd.DataFrame) else Y, dtype=np.float64)
    check_finite(Y, f"adata.obsm[{init!r}]")
    if Y.ndim != 2 or Y.shape[1] < n_components:
        raise ValueError(
            f"adata.obsm[{init!r}] has shape {Y.shape}; `init` needs at least "
            f"n_components={n_components} columns."
        )
    return Y
