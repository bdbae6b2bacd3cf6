"""Train a map from the command line, in one process or data-parallel under ``torchrun``.

    python -m sclens.train --method ptsne --input atlas.h5ad --output atlas_ptsne.h5ad
    torchrun --nproc-per-node 4 -m sclens.train --method ptsne --input atlas.h5ad --output out.h5ad

The output is the input AnnData with the map, settings and model written as ``sl.tl.<method>``
writes them (``obsm['X_<key>']``, ``uns[<key>]``), so ``sl.tl.project(query, ref, model_key=...)`` and
``sl.save_model`` read it. Under ``torchrun`` every process loads the data, builds the same
input layer and neighbour graph, and trains on its own share of each epoch's minibatches through
``torch.nn.parallel.DistributedDataParallel`` (``gloo`` on CPU, ``nccl`` on GPUs); gradients are
averaged across processes, so the global batch is ``processes x batch_size``. Process 0 writes
the output. Methods whose training calls more than the network's forward pass (DEN's cluster
head, ``ptsne --labels``) run in one process only for now.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

METHODS = ("ptsne", "ardr", "den")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sclens.train", description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--input", required=True, help="input .h5ad (log-normalised expression)")
    p.add_argument("--output", required=True, help="output .h5ad with the map and model")
    p.add_argument("--key", default=None, help="key_added (default: the method's name)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--use-rep", default=None)
    p.add_argument("--n-pcs", type=int, default=50)
    p.add_argument("--layer", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _init_distributed(device: str) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment; (rank, size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def check_paths(args: argparse.Namespace) -> None:
    """Fail before any training if the input is missing or the output cannot be written."""
    src, out = Path(args.input), Path(args.output)
    if not src.is_file():
        raise SystemExit(f"error: --input {src} does not exist (or is not a file).")
    if out.suffix != ".h5ad":
        raise SystemExit(f"error: --output {out} must end in .h5ad.")
    parent = out.parent  # Path('.') for a bare file name
    if not parent.is_dir():
        raise SystemExit(
            f"error: the folder of --output, {parent}, does not exist; create it first."
        )
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise SystemExit(f"error: --output {out} is not writable.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_paths(args)
    import anndata as ad
    import scanpy as sc

    import sclens as sl

    rank, size = _init_distributed(args.device)
    sc.settings.verbosity = 1 if rank == 0 else 0
    try:
        adata = ad.read_h5ad(args.input)
        kw = dict(
            use_rep=args.use_rep,
            n_pcs=args.n_pcs,
            layer=args.layer,
            device=args.device,
            random_state=args.seed,
            key_added=args.key or args.method,
        )
        if args.batch_size is not None:
            kw["batch_size"] = args.batch_size
        kw["n_epochs"] = args.epochs
        if args.method == "ardr":
            kw["parametric"] = True
        getattr(sl.tl, args.method)(adata, **kw)
        if rank == 0:
            adata.write_h5ad(args.output)
            print(f"wrote {args.output} ({size} process{'es' if size > 1 else ''})")
    finally:
        if size > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
