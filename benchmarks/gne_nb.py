"""GNE novelty with the negative-binomial likelihood on raw counts.

    python benchmarks/gne_nb.py --out benchmarks/results [--types ductal,beta,delta]

Baron pancreas raw counts (``sl.datasets.pancreas()``); for each type in ``--types``, a GNE map
(``likelihood='nb'``, 2,000 genes chosen by ``sl.tl.gne``'s ``n_top_genes``) is trained on 80% of
the other cells, the other 20% and every cell of the type are projected, and the AUROC of
``gne_novelty`` (groups) and ``gne_novelty_cell`` (per cell) for the left-out type versus the
others goes into ``<out>/gne_nb.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import scanpy as sc
    from sklearn.metrics import roc_auc_score

    import sclens as sl

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--types", default="ductal,beta,delta")
    args = p.parse_args()
    sc.settings.verbosity = 0
    adata = sl.datasets.pancreas()
    truth = adata.obs["cell_type1"].astype(str).to_numpy()
    test = np.random.default_rng(0).random(adata.n_obs) < 0.2
    lines = [
        f"GNE novelty with `likelihood='nb'` on Baron raw counts ({adata.n_obs} cells, 2,000 "
        "genes, 60 epochs): AUROC of the left-out type against the other projected cells.",
        "",
        "| left-out type | cells | `gne_novelty` | `gne_novelty_cell` |",
        "|---|---|---|---|",
    ]
    for t in args.types.split(","):
        novel = truth == t
        ref, query = adata[~novel & ~test].copy(), adata[novel | test].copy()
        sl.tl.gne(ref, likelihood="nb", n_top_genes=2000, random_state=0)
        sl.tl.project(query, ref, model_key="gne")
        y = novel[novel | test]
        group, cell = (roc_auc_score(y, query.obs[c]) for c in ("gne_novelty", "gne_novelty_cell"))
        lines.append(f"| {t} | {int(novel.sum())} | {group:.3f} | {cell:.3f} |")
        print(lines[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gne_nb.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
