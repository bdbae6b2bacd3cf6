"""Gene attributions versus Wilcoxon: speed and whether the right genes come first.

    python benchmarks/rank_genes.py --out benchmarks/results

1. Speed and planted markers: synthetic counts, 10,000 cells x 2,000 genes, 8 groups with 10 up-
   and 5 down-regulated planted markers each; a ptsne map (not timed), then every attribution
   method for all groups, beside ``sc.tl.rank_genes_groups(method='wilcoxon')`` in the same run.
   Time ratios to Wilcoxon, precision@10 of the planted markers, and for integrated gradients
   and SHAP the median relative completeness error per cell.
2. Baron pancreas (Pearson-residual HVGs): ranks of the canonical markers (INS beta, GCG alpha,
   SST delta, PPY gamma, PRSS1 acinar, KRT19 ductal) by every method on a ptsne, a supervised
   ptsne (``labels=``) and a DEN map, beside Wilcoxon.
3. Memory: peak resident memory of every method at its defaults on a ptsne map of 50,000
   synthetic cells (``--memory-cells``).

Writes ``<out>/rank_genes.md`` and ``<out>/rank_genes.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

MARKERS = {
    "beta": "INS",
    "alpha": "GCG",
    "delta": "SST",
    "gamma": "PPY",
    "acinar": "PRSS1",
    "ductal": "KRT19",
}
METHODS = [
    ("saliency", {}),
    ("saliency x input", {"method": "saliency", "times_input": True}),
    ("integrated_gradients", {}),
    ("shap", {}),
]
#: other integrated-gradients settings, for the speed table only
FAST_IG = [
    ("integrated_gradients, all cells", {"method": "integrated_gradients", "n_cells": None}),
    ("integrated_gradients, 16 steps", {"method": "integrated_gradients", "n_steps": 16}),
]


def completeness(adata, key="r") -> float:
    """Median over cells of |sum of attributions - output difference| / |output difference|."""
    st = adata.uns[key]["attributions"].values()
    return float(
        np.median(
            np.concatenate([np.abs(v["total"] - v["output"]) / np.abs(v["output"]) for v in st])
        )
    )


def _run(adata, groupby, model_key, label, kwargs):
    import sclens as sl

    kwargs = dict(kwargs)
    method = kwargs.pop("method", label)
    t0 = time.perf_counter()
    sl.tl.rank_genes(adata, groupby, model_key=model_key, method=method, key_added="r", **kwargs)
    return time.perf_counter() - t0


def speed(n_cells: int, n_genes: int, n_groups: int) -> list[dict]:
    import scanpy as sc

    import sclens as sl

    adata = sl.datasets.synthetic_counts(n_cells, n_genes, n_groups, random_state=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    sl.tl.ptsne(adata, random_state=0)

    def precision(key):
        df = sc.get.rank_genes_groups_df(adata, None, key=key)
        return float(
            np.mean(
                [
                    np.isin(df[df.group == g].names.head(10), adata.uns["markers"][g]).mean()
                    for g in adata.obs["group"].cat.categories
                ]
            )
        )

    t0 = time.perf_counter()
    sc.tl.rank_genes_groups(adata, "group", method="wilcoxon", key_added="w")
    t_w = time.perf_counter() - t0
    rows = [
        {
            "method": "wilcoxon (scanpy)",
            "seconds": round(t_w, 2),
            "x wilcoxon": 1.0,
            "precision@10": precision("w"),
            "completeness error": "",
        }
    ]
    for label, kwargs in METHODS + FAST_IG:
        secs = _run(adata, "group", "ptsne", label, kwargs)
        explains = "saliency" not in label
        rows.append(
            {
                "method": label,
                "seconds": round(secs, 2),
                "x wilcoxon": round(secs / t_w, 2),
                "precision@10": precision("r"),
                "completeness error": f"{completeness(adata):.1e}" if explains else "",
            }
        )
    for r in rows:
        r |= {"n_cells": n_cells, "n_genes": n_genes, "n_groups": n_groups}
    return rows


def pancreas() -> list[dict]:
    import scanpy as sc

    import sclens as sl

    adata = sl.datasets.pancreas()
    sc.experimental.pp.highly_variable_genes(adata, flavor="pearson_residuals", n_top_genes=2000)
    adata = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    sl.tl.ptsne(adata, random_state=0)
    sl.tl.ptsne(adata, labels="cell_type1", random_state=0, key_added="ptsne_labels")
    sl.tl.den(adata, random_state=0)

    def ranks(key):
        names = pd.DataFrame(adata.uns[key]["names"])
        return {f"{t}:{g}": int(np.flatnonzero(names[t] == g)[0]) + 1 for t, g in MARKERS.items()}

    t0 = time.perf_counter()
    sc.tl.rank_genes_groups(adata, "cell_type1", method="wilcoxon", key_added="w")
    rows = [
        {"map": "-", "method": "wilcoxon (scanpy)", "seconds": round(time.perf_counter() - t0, 2)}
        | ranks("w")
    ]
    for model_key in ("ptsne", "ptsne_labels", "den"):
        for label, kwargs in METHODS:
            secs = _run(adata, "cell_type1", model_key, label, kwargs)
            rows.append({"map": model_key, "method": label, "seconds": round(secs, 2)} | ranks("r"))
    return rows


def _rss_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def memory(n_cells: int, n_genes: int, n_groups: int) -> list[dict]:
    """Peak resident memory of each attribution method at defaults on a large map (Linux: the
    peak is reset through /proc/self/clear_refs before each method)."""
    import scanpy as sc

    import sclens as sl

    adata = sl.datasets.synthetic_counts(n_cells, n_genes, n_groups, random_state=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    sl.tl.ptsne(adata, random_state=0)
    rows = []
    for label, kwargs in METHODS:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_gib("VmRSS")
        secs = _run(adata, "group", "ptsne", label, kwargs)
        rows.append(
            {
                "method": label,
                "cells": n_cells,
                "seconds": round(secs, 1),
                "RSS before (GiB)": round(before, 2),
                "peak RSS (GiB)": round(_rss_gib("VmHWM"), 2),
            }
        )
        del adata.uns["r"]
    return rows


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    import scanpy as sc

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--n-cells", type=int, default=10_000)
    p.add_argument("--n-genes", type=int, default=2_000)
    p.add_argument("--n-groups", type=int, default=8)
    p.add_argument("--memory-cells", type=int, default=50_000)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 0
    fast = speed(args.n_cells, args.n_genes, args.n_groups)
    real = pancreas()
    mem = memory(args.memory_cells, args.n_genes, args.n_groups)
    (out / "rank_genes.json").write_text(
        json.dumps({"speed": fast, "pancreas": real, "memory": mem}, indent=1)
    )
    md = (
        "# Gene attributions vs Wilcoxon\n\n"
        f"## Speed and planted markers ({args.n_cells} cells x {args.n_genes} genes, "
        f"{args.n_groups} groups; ptsne map)\n\n{table(fast)}\n\n"
        "## Baron pancreas: rank of each canonical marker for its cell type\n\n"
        f"{table(real)}\n\n"
        f"## Memory at {args.memory_cells} cells x {args.n_genes} genes (defaults)\n\n"
        f"{table(mem)}\n"
    )
    (out / "rank_genes.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
