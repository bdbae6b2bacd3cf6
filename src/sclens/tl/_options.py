"""Checks of the options every tool takes, run before anything is computed or written.

Each check names the option, the value it got and the range it accepts, so a mistake costs the
user one line of reading rather than a PCA, a kNN graph and a meaningless result.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import re
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import numpy as np
from anndata import AnnData

__all__ = [
    "check_int",
    "check_float",
    "check_widths",
    "check_key_added",
    "resolve_seed",
    "OPTIONS",
    "checked_options",
    "one_of",
    "int_option",
    "float_option",
]

F = TypeVar("F", bound=Callable)

#: keys scanpy's own tools write (``X_<key>`` in ``.obsm``, ``<key>`` in ``.uns``/``.obs``)
SCANPY_KEYS = frozenset(
    {
        "pca",
        "umap",
        "tsne",
        "diffmap",
        "draw_graph_fa",
        "draw_graph_fr",
        "phate",
        "spring",
        "neighbors",
        "leiden",
        "louvain",
        "paga",
        "rank_genes_groups",
        "dendrogram",
        "hvg",
        "log1p",
    }
)
_KEY = re.compile(r"^[A-Za-z0-9_.\-+]+$")


def check_int(value, name: str, *, low: int | None = 1, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; bools and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, Real) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"`{name}` must be an integer, got {value!r}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"`{name}` must be {_range(low, high)}, got {value}.")
    return value


def check_float(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a number, got {value!r}.")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        where = (
            f"in {lo}, {hi}"
            if low is not None and high is not None
            else (
                f"{'>' if low_open else '>='} {low:g}"
                if low is not None
                else f"{'<' if high_open else '<='} {high:g}"
            )
        )
        raise ValueError(f"`{name}` must be a finite number {where}, got {value}.")
    return value


def check_widths(value, name: str = "hidden") -> tuple[int, ...]:
    """Layer widths: a sequence of positive integers."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            f"`{name}` must be a sequence of layer widths, e.g. (256, 256), got {value!r}."
        )
    widths = tuple(check_int(w, f"{name}[{i}]", low=1) for i, w in enumerate(value))
    if not widths:
        raise ValueError(f"`{name}` needs at least one layer width, got {value!r}.")
    return widths


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f">= {low}" if low is not None else f"<= {high}"


def check_key_added(adata: AnnData, key, name: str = "key_added") -> str:
    """A key that every AnnData writer accepts and that does not overwrite scanpy's results.

    Refused: non-strings, ``''``, characters other than letters, digits and ``_ . - +``
    (``'/'`` nests groups in h5ad and zarr, so the result could not be read back), and the keys
    scanpy's own tools write (``'pca'`` would replace ``obsm['X_pca']``).
    """
    if not isinstance(key, str):
        raise TypeError(f"`{name}` must be a string, got {type(key).__name__} {key!r}.")
    if not _KEY.match(key):
        raise ValueError(
            f"`{name}`={key!r} is not a usable key: use letters, digits and '_', '.', '-' or '+' "
            "(no '/', spaces or empty string), e.g. 'ptsne_2'."
        )
    if key in SCANPY_KEYS:
        raise ValueError(
            f"`{name}`={key!r} is a key scanpy's own tools write (e.g. obsm['X_{key}']); "
            f"pick another, e.g. '{key}_sclens'."
        )
    if key.startswith("X_"):
        raise ValueError(
            f"`{name}`={key!r}: coordinates already go to obsm['X_' + key]; drop the 'X_' prefix."
        )
    return key


def resolve_seed(random_state) -> int:
    """An int seed; ``None`` (scanpy's idiom for fresh randomness) draws one from the OS.

    The drawn seed is what the tools record in ``params['random_state']``, so a run started with
    ``None`` can still be repeated exactly.
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**31 - 1))
    if isinstance(random_state, bool) or not isinstance(random_state, Integral):
        raise TypeError(
            f"`random_state` must be an integer seed or None (fresh randomness), got "
            f"{type(random_state).__name__}; pass e.g. random_state=0."
        )
    if not 0 <= int(random_state) < 2**63:
        raise ValueError(f"`random_state` must be between 0 and 2**63 - 1, got {random_state}.")
    return int(random_state)


def int_option(low: int | None = 1, high: int | None = None) -> Callable[[Any, str], int]:
    """A check of an integer option in ``[low, high]`` (see :func:`check_int`)."""
    return functools.partial(check_int, low=low, high=high)


def float_option(low=None, high=None, *, low_open: bool = False) -> Callable[[Any, str], float]:
    """A check of a finite number option in an interval (see :func:`check_float`)."""
    return functools.partial(check_float, low=low, high=high, low_open=low_open)


#: what each option name means across the public API, checked the same way in every tool
#: (``None`` is accepted where the tool's default is ``None``)
OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "n_components": int_option(),
    "n_pcs": int_option(0),
    "n_neighbors": int_option(),
    "perplexity": float_option(0, low_open=True),
    "min_dist": float_option(0, 1),
    "normalization": float_option(0, 1),  # ardr: 0 UMAP-like, 1 t-SNE-like
    "sampled_pairs": int_option(3),  # ardr: cells per batch of Gram forces
    "hidden": check_widths,
    "n_epochs": int_option(),
    "n_pretrain_epochs": int_option(0),
    "n_finetune_epochs": int_option(0),
    "batch_size": int_option(),
    "learning_rate": float_option(0, low_open=True),
    "coord_learning_rate": float_option(0, low_open=True),
    "early_exaggeration": float_option(0, low_open=True),
    "exaggeration_fraction": float_option(0, 1),
    "final_lr_fraction": float_option(0, 1),
    "resolution": float_option(0, low_open=True),
    "eigen_threshold": float_option(0, 2, low_open=True),
    "merge_threshold": float_option(0, 1),
    "max_clusters": int_option(),
    "corr_weight": float_option(0),
    "n_blocks": int_option(0),
    "noise": float_option(0),
    "neighbor_weight": float_option(0),
    "n_steps": int_option(1, 100_000),
    "smoothing": float_option(0),
    "n_smoothing": int_option(),
    "n_background": int_option(),
    "n_cells": int_option(),
    "n_store": int_option(0),
    "n_random": int_option(0),
    "placement_neighbors": int_option(),
    "random_state": lambda value, name: resolve_seed(value),
}


def one_of(choices: Sequence[str] | dict[str, str]) -> Callable[[Any, str], str]:
    """A check that ``value`` is one of ``choices`` (a dict adds what each choice means)."""
    said = [f"{c!r} ({choices[c]})" if isinstance(choices, dict) else repr(c) for c in choices]
    listed = ", ".join(said[:-1]) + f" or {said[-1]}"

    def check(value, name: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be {listed}, got {value!r}.")
        return value

    return check


def checked_options(**overrides: Callable[[Any, str], Any] | None) -> Callable[[F], F]:
    """Check a tool's options by name before it runs: the check of :data:`OPTIONS`, the
    choices of a ``Literal[...]`` annotation, or ``overrides`` (``None``: left to the tool).

    Every option the caller passed whose name has a check is replaced by the checked value
    (``3.0`` -> ``3``; ``random_state=None`` -> a drawn seed); ``None`` passes unchecked where
    the tool's default is ``None``. Options left at their defaults are not checked (every
    default is valid; ``random_state`` defaults to 0).
    """

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        hints = get_type_hints(func)

        def check_of(name: str):
            if name in overrides:
                return overrides[name]
            if name in OPTIONS:
                return OPTIONS[name]
            if get_origin(hints.get(name)) is Literal:
                return one_of(get_args(hints[name]))
            return None

        checks = {name: c for name in sig.parameters if (c := check_of(name)) is not None}

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            unknown = [k for k in kwargs if k not in sig.parameters]
            if unknown:
                close = difflib.get_close_matches(unknown[0], list(sig.parameters), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else "."
                raise TypeError(
                    f"sl.tl.{func.__name__}() got an unexpected option {unknown[0]!r}{hint}"
                )
            bound = sig.bind(*args, **kwargs)
            values = bound.arguments
            for name, value in values.items():
                if name in checks and not (value is None and sig.parameters[name].default is None):
                    values[name] = checks[name](value, name)
            return func(*bound.args, **bound.kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
