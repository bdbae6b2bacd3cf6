"""sclens computes with its own torch thread count, whatever other libraries left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sclens as sl


def test_results_do_not_depend_on_the_callers_thread_count(pbmc):
    caller, ours = torch.get_num_threads(), sl.get_num_threads()
    try:
        sl.set_num_threads(2)
        a = sl.tl.ptsne(pbmc, epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        # numba's OpenMP layer (started by e.g. sc.pp.normalize_total) leaves torch like this
        torch.set_num_threads(1)
        b = sl.tl.ptsne(pbmc, epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        assert torch.get_num_threads() == 1, "the caller's count is given back"
        np.testing.assert_array_equal(a, b)
        sl.set_num_threads(1)
        c = sl.tl.ptsne(pbmc, epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        # measured: one and two threads differ (the order of floating-point sums)
        assert not np.array_equal(a, c)
    finally:
        sl.set_num_threads(ours)
        torch.set_num_threads(caller)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sl.set_num_threads(0)
