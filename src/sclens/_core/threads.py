"""Torch's thread count while sclens computes.

numba's OpenMP threading layer, which scanpy's preprocessing starts (``sc.pp.normalize_total``
does), resets torch's intra-op thread count (numba/numba#9387): after preprocessing torch may run
on one thread, whatever the machine has. Results depend on the thread count (the order of
floating-point sums), so sclens computes with a fixed count, by default the one torch had when
sclens was imported, and gives the caller's count back afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["set_num_threads", "get_num_threads", "fixed_threads"]

F = TypeVar("F", bound=Callable)

_threads = torch.get_num_threads()


def set_num_threads(n: int) -> None:
    """Threads torch uses inside sclens' functions (default: torch's count at ``import sclens``).

    With the same count, seed and CPU kernels, results are bit-identical. Another count changes
    the order of floating-point sums, and training amplifies that like a change of seed: the
    maps are as good but not the same map (how far they move, measured: docs/reproducibility.md).
    """
    global _threads
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    _threads = int(n)


def get_num_threads() -> int:
    """Threads torch uses inside sclens' functions (see :func:`set_num_threads`)."""
    return _threads


def fixed_threads(func: F) -> F:
    """Run ``func`` with :func:`get_num_threads` torch threads, then restore the caller's."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        if before != _threads:
            torch.set_num_threads(_threads)
        try:
            return func(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]
