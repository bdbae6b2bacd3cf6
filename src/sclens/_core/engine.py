"""The one training loop: encoder + objective + sampler + schedule + callbacks.

A method is a choice of encoder, objective and sampler; a schedule is a sequence of
:meth:`Trainer.optimize` calls (e.g. early exaggeration, then the main phase).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import scanpy as sc
import torch
from scanpy import logging as logg
from torch import nn
from tqdm import tqdm

from .graph import Graph

__all__ = ["resolve_device", "EdgeSampler", "CellSampler", "Trainer"]

#: ``callback(phase, epoch, loss, encoder) -> stop?``
Callback = Callable[[str, int, float, nn.Module], bool | None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}.")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but no CUDA GPU is available; use device='auto' or 'cpu'."
        )
    return torch.device(device)


class EdgeSampler:
    """Batches of graph edges ``(i, j)`` drawn with probability proportional to their weight, and
    ``n_negatives`` cells ``neg`` drawn uniformly for the repulsion (``None``: every cell)."""

    def __init__(
        self,
        graph: Graph,
        batch_size: int,
        edges_per_epoch: int | None = None,
        n_negatives: int | None = 256,
    ):
        self.rows = torch.as_tensor(graph.rows)
        self.cols = torch.as_tensor(graph.cols)
        self.cdf = torch.as_tensor(np.cumsum(graph.weights), dtype=torch.float64)
        self.cdf /= self.cdf[-1].clone()
        self.batch_size = int(batch_size)
        self.edges_per_epoch = int(edges_per_epoch or graph.n)
        self.n = graph.n
        self.n_negatives = None if n_negatives is None else int(n_negatives)

    def __len__(self) -> int:
        return max(1, self.edges_per_epoch // self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        u = torch.rand(len(self) * self.batch_size, generator=generator, dtype=torch.float64)
        e = torch.searchsorted(self.cdf, u).clamp_max(len(self.cdf) - 1)
        # random orientation so neither end is privileged
        flip = torch.rand(len(e), generator=generator) < 0.5
        i = torch.where(flip, self.cols[e], self.rows[e]).long()
        j = torch.where(flip, self.rows[e], self.cols[e]).long()
        if self.n_negatives is None:
            negatives = torch.arange(self.n).expand(len(self), self.n)
        else:
            negatives = torch.randint(self.n, (len(self), self.n_negatives), generator=generator)
        for b, s in enumerate(range(0, len(e), self.batch_size)):
            yield {
                "i": i[s : s + self.batch_size],
                "j": j[s : s + self.batch_size],
                "neg": negatives[b],
            }


class CellSampler:
    """Shuffled batches of cells (all, or only ``cells``), with their labels when given.

    ``labels`` has one entry per cell of the data set; ``idx`` in a batch are cell indices.
    An epoch's ``len(self)`` batches differ in size by at most one cell (2,090 cells in batches
    of at most 1,024: 697, 697 and 696, not 1,024, 1,024 and 42). Objectives average over a
    batch's cells, so a small last batch gave its cells a force 24x as large; under Adam that
    inflated their second-moment estimates for hundreds of steps and slowed every cell that
    had once been in it (a t-SNE coordinate table of 2,090 cells: trustworthiness 0.775 ->
    0.806 over three seeds, openTSNE's 0.803; ``docs/methods/ardr.md``).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        labels: np.ndarray | None = None,
        cells: np.ndarray | None = None,
    ):
        self.cells = torch.arange(n) if cells is None else torch.as_tensor(cells, dtype=torch.long)
        self.batch_size = int(batch_size)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return max(1, -(-len(self.cells) // self.batch_size))

    def epoch(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        perm = self.cells[torch.randperm(len(self.cells), generator=generator)]
        for idx in torch.tensor_split(perm, len(self)):
            yield {"idx": idx} if self.labels is None else {"idx": idx, "y": self.labels[idx]}


def distributed_world() -> tuple[int, int] | None:
    """``(rank, world_size)`` inside an initialised multi-process group, else ``None``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def progress_enabled() -> bool:
    """Progress bars show at scanpy's default verbosity and above; ``sc.settings.verbosity = 0`` hides them."""
    return int(sc.settings.verbosity) >= 1


def _set_progress(objective, fraction: float) -> None:
    """Tell an objective, and the parts of a sum of objectives, how far the phase is."""
    if hasattr(objective, "progress"):
        objective.progress = fraction
    for part in getattr(objective, "parts", ()):
        _set_progress(part, fraction)


class Trainer:
    """Owns the encoder, the device, the random stream and the loss history."""

    def __init__(
        self, encoder: nn.Module, *, device: str | torch.device = "auto", random_state: int = 0
    ):
        self.device = resolve_device(device)
        self.encoder = encoder.to(self.device)
        self.generator = torch.Generator().manual_seed(int(random_state))
        self.history: list[dict[str, float | str | int]] = []
        self.interrupted = False
        #: phases that ran all their epochs (or stopped early by a callback), in order
        self.finished_phases: list[str] = []

    def optimize(
        self,
        objective: Callable,
        sampler,
        *,
        n_epochs: int,
        learning_rate: float,
        phase: str,
        parameters: Iterable[nn.Parameter] | Iterable[dict] | None = None,
        callbacks: Sequence[Callback] = (),
        final_lr_fraction: float = 1.0,
        optimizer: str = "adam",
    ) -> Trainer:
        """Run ``n_epochs`` of Adam on ``objective``; Ctrl-C stops early and keeps what was learnt.

        ``parameters``: what to train (default: everything), as parameters or Adam param groups.
        A group with ``"sparse": True`` holds parameters with sparse gradients (an embedding
        table, e.g. :class:`~sclens._core.networks.CoordinateTable` with ``sparse=True``); it is
        optimised by :class:`torch.optim.SparseAdam`, a lazy Adam that moves only the rows of
        the batch, while the other groups keep Adam (or SGD).
        ``optimizer='sgd'``: plain gradient descent instead of Adam (a step is then exactly
        ``-learning_rate * gradient``, e.g. a force update).
        ``final_lr_fraction < 1`` decays every group's learning rate linearly over the phase's
        steps to that fraction of its start value (less minibatch noise at the end).
        An objective (or a part of a :class:`~sclens._core.objectives.Sum`) with a ``progress``
        attribute has it set before each step to the fraction of the phase's steps taken
        (0 at the first step), e.g. for annealed noise.
        """
        if self.interrupted:
            return self
        if n_epochs <= 0:
            self.finished_phases.append(phase)
            return self
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}.")
        params = list(self.encoder.parameters() if parameters is None else parameters)
        is_lazy = [isinstance(g, dict) and bool(g.get("sparse")) for g in params]
        dense = [g for g, lz in zip(params, is_lazy, strict=True) if not lz]
        lazy = [
            {k: v for k, v in g.items() if k != "sparse"}
            for g, lz in zip(params, is_lazy, strict=True)
            if lz
        ]
        opts: list[torch.optim.Optimizer] = []
        if dense:
            opts.append(
                (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(
                    dense, lr=learning_rate
                )
            )
        if lazy:
            if optimizer != "adam":
                raise ValueError("sparse parameter groups need optimizer='adam'.")
            opts.append(torch.optim.SparseAdam(lazy, lr=learning_rate))
        total_steps = max(1, n_epochs * len(sampler))
        schedules = [
            torch.optim.lr_scheduler.LambdaLR(
                o, lambda step: 1.0 - (1.0 - final_lr_fraction) * min(step / total_steps, 1.0)
            )
            for o in opts
        ]
        step = 0
        model = self._wrap(objective)
        self.encoder.train()
        bar = tqdm(
            range(n_epochs),
            desc=phase,
            disable=not progress_enabled(),
            leave=False,
            mininterval=0.5,
        )
        try:
            for epoch in bar:
                sums: dict[str, float] = {}
                n_batches = 0
                for batch in self._shard(sampler.epoch(self.generator), len(sampler)):
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                    _set_progress(objective, min(step / total_steps, 1.0))
                    out = objective(model, batch)
                    for o in opts:
                        o.zero_grad(set_to_none=True)
                    out.total.backward()
                    for o, schedule in zip(opts, schedules, strict=True):
                        o.step()
                        schedule.step()
                    step += 1
                    n_batches += 1
                    sums["loss"] = sums.get("loss", 0.0) + float(out.total.detach())
                    for k, v in out.terms.items():
                        sums[k] = sums.get(k, 0.0) + v
                record = {k: v / max(n_batches, 1) for k, v in sums.items()}
                if not np.isfinite(record.get("loss", 0.0)):
                    raise FloatingPointError(
                        f"training diverged in phase {phase!r} at epoch {epoch} (loss={record['loss']}); "
                        "lower `learning_rate`."
                    )
                self.history.append({"phase": phase, "epoch": epoch, **record})
                bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
                if any(
                    cb(phase, epoch, record.get("loss", np.nan), self.encoder) for cb in callbacks
                ):
                    break
            self.finished_phases.append(phase)
        except KeyboardInterrupt:
            self.interrupted = True
            logg.warning(
                f"training interrupted in phase {phase!r}; keeping the model as it is now."
            )
        finally:
            bar.close()
            self.encoder.eval()
        return self

    def epochs_done(self, *phases: str) -> int:
        """Completed epochs of the given phases (all phases when none are named)."""
        return sum(1 for rec in self.history if not phases or rec["phase"] in phases)

    def check_publishable(
        self, func: str, *, needs: Sequence[str] = (), any_of: Sequence[str] = ()
    ) -> None:
        """After a Ctrl-C, decide whether what was trained may be written as a result.

        ``needs``: phases that must have finished (e.g. DEN's cluster head, without which the
        clusters would come from an untrained head); ``any_of``: phases of which at least one
        epoch must have completed (a map trained for less than an epoch is its initialisation).
        If either fails, a warning says so and :class:`KeyboardInterrupt` is raised again, so
        nothing is written into the AnnData; otherwise an interrupted run is kept, and the
        tool records ``interrupted`` and ``finished_phases`` in its params.
        """
        if not self.interrupted:
            return
        missing = [p for p in needs if p not in self.finished_phases]
        too_early = bool(any_of) and self.epochs_done(*any_of) == 0
        if missing or too_early:
            what = (
                f"phase(s) {missing} did not finish"
                if missing
                else f"no epoch of {list(any_of)} completed"
            )
            logg.warning(f"`{func}` was interrupted and {what}; nothing was written.")
            raise KeyboardInterrupt(f"{func} interrupted before a usable result ({what})")
        logg.warning(
            f"`{func}` was interrupted: writing the result of the finished phases "
            f"{self.finished_phases} and the partial one; see params['interrupted']."
        )

    # -- data-parallel training (torch.distributed) -----------------------------------------------
    def _wrap(self, objective) -> nn.Module:
        """The encoder, or under ``torchrun`` the encoder wrapped in DistributedDataParallel."""
        if distributed_world() is None:
            return self.encoder
        if not getattr(objective, "distributed", False):
            raise NotImplementedError(
                f"{type(objective).__name__} does not support data-parallel training yet; "
                "run this method in one process."
            )
        from torch.nn.parallel import DistributedDataParallel

        # a head unused by this objective leaves parameters without gradients
        heads = bool(getattr(getattr(self.encoder, "network", None), "has_heads", False))
        # the frozen feature table is a buffer every rank already holds: never broadcast it
        return DistributedDataParallel(
            self.encoder, broadcast_buffers=False, find_unused_parameters=heads
        )

    @staticmethod
    def _shard(batches: Iterable[dict], n_batches: int) -> Iterable[dict]:
        """All batches in one process; under ``torchrun`` every rank draws the same epoch (same
        seed) and keeps its own share, the same number on every rank."""
        world = distributed_world()
        if world is None:
            yield from batches
            return
        rank, size = world
        per_rank = max(1, n_batches // size)
        keep = {(rank + size * t) % n_batches for t in range(per_rank)}
        for b, batch in enumerate(batches):
            if b in keep:
                yield batch

    def history_arrays(self) -> dict[str, np.ndarray]:
        """The per-epoch history as columns (NaN where a phase has no such term), for ``.uns``."""
        keys: list[str] = []
        for rec in self.history:
            keys += [k for k in rec if k not in keys]
        out = {}
        for k in keys:
            col = [rec.get(k, np.nan) for rec in self.history]
            out[k] = (
                np.asarray(col, dtype=str) if k == "phase" else np.asarray(col, dtype=np.float64)
            )
        if "epoch" in out:
            out["epoch"] = out["epoch"].astype(np.int64)
        return out


class PairSampler:
    """DEN batches: near pairs from a list, far pairs drawn in proportion to distance.

    Each batch holds ``batch_size`` near pairs ``(i, j)`` sampled uniformly from ``near`` and as
    many far pairs ``(fi, fj)``: ``fi`` uniform over cells, ``fj`` drawn among ``n_candidates``
    random cells with probability proportional to its feature-space distance from ``fi``. With
    ``labels``, the batch also carries ``idx = i`` and ``y = labels[i]`` for a cluster head.
    """

    def __init__(
        self,
        near: np.ndarray,
        features: np.ndarray,
        batch_size: int,
        *,
        labels: np.ndarray | None = None,
        n_candidates: int = 32,
    ):
        self.near = torch.as_tensor(near, dtype=torch.long)
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.n = len(features)
        self.batch_size = int(batch_size)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.n_candidates = n_candidates

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(len(self)):
            b = self.batch_size
            e = torch.randint(len(self.near), (b,), generator=generator)
            i, j = self.near[e, 0], self.near[e, 1]
            fi = torch.randint(self.n, (b,), generator=generator)
            cand = torch.randint(self.n, (b, self.n_candidates), generator=generator)
            d = (self.features[cand] - self.features[fi][:, None]).norm(dim=2) + 1e-8
            pick = torch.multinomial(d, 1, generator=generator)[:, 0]
            batch = {"i": i, "j": j, "fi": fi, "fj": cand[torch.arange(b), pick]}
            if self.labels is not None:
                batch |= {"idx": i, "y": self.labels[i]}
            yield batch
