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
        a = sl.tl.ptsne(pbmc, n_epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        # numba's OpenMP layer (started by e.g. sc.pp.normalize_total) leaves torch like this
        torch.set_num_threads(1)
        b = sl.tl.ptsne(pbmc, n_epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        assert torch.get_num_threads() == 1, "the caller's count is given back"
        np.testing.assert_array_equal(a, b)
        # and our own count is what a later call uses, whatever torch was set to in between
        sl.set_num_threads(1)
        torch.set_num_threads(2)
        c = sl.tl.ptsne(pbmc, n_epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        torch.set_num_threads(1)
        d = sl.tl.ptsne(pbmc, n_epochs=15, random_state=0, copy=True).obsm["X_ptsne"]
        np.testing.assert_array_equal(c, d)
        assert torch.get_num_threads() == 1
    finally:
        sl.set_num_threads(ours)
        torch.set_num_threads(caller)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sl.set_num_threads(0)


def test_training_runs_on_sclens_thread_count(pbmc, monkeypatch):
    """Whatever torch's count is when a tool is called, training sees ``sl.get_num_threads()``."""
    from sclens._core.engine import Trainer

    seen = []
    original = Trainer.optimize

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "optimize", spy)
    caller, ours = torch.get_num_threads(), sl.get_num_threads()
    try:
        for n, other in ((1, 2), (2, 1)):
            sl.set_num_threads(n)
            torch.set_num_threads(other)
            seen.clear()
            sl.tl.ptsne(pbmc, n_epochs=2, copy=True)
            assert seen and set(seen) == {n}
            assert torch.get_num_threads() == other
    finally:
        sl.set_num_threads(ours)
        torch.set_num_threads(caller)
