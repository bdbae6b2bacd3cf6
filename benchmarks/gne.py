"""GNE: reconstruction against an autoencoder, projection, novelty, and the kNN-attraction term.

    python benchmarks/gne.py --out benchmarks/results [--hvg pearson|seurat] [--dataset baron]
                             [--n-cells 0] [--epochs 60]

On Baron pancreas, log-normalised, on 2,000 genes chosen with ``--hvg``: ``pearson`` (default;
Pearson residuals of the raw counts, ``sc.experimental.pp.highly_variable_genes``, as in the
tutorials) or ``seurat`` (``sc.pp.highly_variable_genes`` on log-normalised data, scanpy's
default flavour; the preparation of ``benchmarks/run.py``). Then PCA (50 components):

1. reconstruction: ``sl.tl.gne`` versus a 2-D-bottleneck autoencoder with the same decoder and
   the same epochs and batch size: final reconstruction MSE, seconds, map trustworthiness (k=10,
   against the PCs) and 5-fold 10-NN accuracy; and GNE with ``neighbor_weight`` 0.1 and 1; the
   noise-free MSE after every epoch for GNE (at its training coordinates, before the polish) and
   the autoencoder, at ``--batch-size`` and at ``--small-batch``;
2. projection: train on 80% of cells, project 20% with ``sl.tl.project``, kNN label transfer
   accuracy and seconds;
3. novelty: for each cell type (at least ``--min-type`` cells), train without it on 80% of the
   other cells, project the other 20% plus every cell of the type, AUROC for the left-out type
   versus the others of ``gne_novelty`` (groups: relative to the reference cells where a cell
   lies, averaged over 15 query neighbours) and ``gne_novelty_cell`` (per cell); on the same
   projections, of the group score without the local reference level (averaging only) and of
   the earlier score (z-score of the log mean error); and, keeping only ``--few`` cells of the
   left-out type in the query (mean over 5 draws), the AUROC of both scores.

Results go into ``<out>/gne.json`` (``gne_<dataset>.json`` for another ``--dataset``) under the
``--hvg`` key; a run keeps the other gene selection's results there, and ``<out>/gne.md``
(``gne_<dataset>.md``) shows both side by side. ``--n-cells`` subsamples
for a smoke test.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import fit_autoencoder  # noqa: E402
from run import prepare, quality  # noqa: E402

HVG = ("pearson", "seurat")
# markers of the pancreatic types whose novelty depends on them (reported: kept or not)
MARKERS = ("GCG", "SST", "INS", "PPY")


def dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def mse_curves(adata, epochs: int, batch_size: int, random_state: int = 0) -> dict:
    """Noise-free MSE after each epoch: GNE trained as ``sl.tl.gne`` trains it (same pieces, same
    seed, default settings) and the autoencoder of ``fit_autoencoder``."""
    import torch

    import sclens as sl
    from sclens._core import gne as G
    from sclens._core.networks import CoordinateTable, GenerativeMap

    X, _ = G.gene_matrix(adata, None, None, "mse")
    target = torch.as_tensor(X)

    def recorder(curve):
        def callback(phase, epoch, loss, model):
            with torch.no_grad():
                z = model.encoder(torch.arange(len(X)))
                curve.append(float(((model.decoder(z) - target) ** 2).mean()))

        return callback

    defaults = inspect.signature(sl.tl.gne).parameters
    gne_curve: list[float] = []
    coords0 = G.init_coords(adata, X, "pca", 2, random_state)
    decoder = G.new_decoder(X, 2, 256, 4, "mse", random_state)
    G.fit_generative(
        GenerativeMap(CoordinateTable(coords0, sparse=True), decoder),
        X,
        likelihood="mse",
        noise=defaults["noise"].default,
        n_epochs=epochs,
        batch_size=batch_size,
        learning_rate=defaults["learning_rate"].default,
        coord_learning_rate=defaults["coord_learning_rate"].default,
        device="cpu",
        random_state=random_state,
        callbacks=[recorder(gne_curve)],
    )
    ae_curve: list[float] = []
    fit_autoencoder(
        X,
        n_epochs=epochs,
        batch_size=batch_size,
        device="cpu",
        random_state=random_state,
        callbacks=[recorder(ae_curve)],
    )
    return {"gne": gne_curve, "autoencoder": ae_curve}


def mean_error_score(ref, query):
    """The earlier novelty score: z-score of the log mean error against the reference's."""
    import sclens as sl
    from sclens._core.gne import reconstruction_errors

    model = sl.Model.from_uns(ref.uns["gne"]["model"])
    X = dense(query[:, model.input_layer.var_names].X)
    err, _ = reconstruction_errors(model.decoder(), query.obsm["X_gne"], X)
    log_ref = np.log(model.arrays["ref.error"])
    return (np.log(err) - log_ref.mean()) / log_ref.std()


def group_scores(ref, query):
    """``gne_novelty`` recomputed for subsets of the query (and without the local level).

    Returns a function ``(keep, local) -> scores of query[keep]``: per-cell scores minus the
    reference level where each cell lies (``local``) or not, averaged over query neighbours
    within the subset, exactly as ``sl.tl.project`` does for the whole query."""
    import sclens as sl
    from sclens._core.generative import local_level, novelty, smooth_over_query

    model = sl.Model.from_uns(ref.uns["gne"]["model"])
    a = model.arrays
    X = query[:, model.input_layer.var_names].X
    cell = query.obs["gne_novelty_cell"].to_numpy()
    own = novelty(a["ref.excess"], a["ref.excess"])
    level = local_level(np.asarray(query.obsm["X_gne"]), a["ref.coords"], own)

    def scores(keep, local=True):
        values = cell - level if local else cell
        return smooth_over_query(values[keep], X[keep], "mse", 15)

    everything = np.ones(query.n_obs, dtype=bool)
    np.testing.assert_allclose(scores(everything), query.obs["gne_novelty"].to_numpy())
    return scores


def main() -> None:
    import scanpy as sc
    from sklearn.metrics import roc_auc_score

    import sclens as sl

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--dataset", default="baron")
    p.add_argument(
        "--hvg",
        choices=HVG,
        default="pearson",
        help="gene selection: pearson residuals on counts (as the tutorials) or seurat flavour",
    )
    p.add_argument("--n-cells", type=int, default=0, help="subsample (0: all cells)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--small-batch", type=int, default=128)
    p.add_argument("--min-type", type=int, default=50)
    p.add_argument("--skip-novelty", action="store_true")
    p.add_argument(
        "--seeds", default="1,2", help="novelty again with these seeds (split and training)"
    )
    p.add_argument(
        "--few", default="5,10,20", help="query sizes of the left-out type for the dilution test"
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 0
    path, label = prepare(args.dataset, 0, args.hvg)
    adata = sc.read_h5ad(path)
    if args.n_cells:
        rng = np.random.default_rng(0)
        adata = adata[np.sort(rng.choice(adata.n_obs, args.n_cells, replace=False))].copy()
    truth = adata.obs[label].astype(str).to_numpy()
    pcs = np.asarray(adata.obsm["X_pca"])
    kw = dict(n_epochs=args.epochs, batch_size=args.batch_size, random_state=0)
    genes = adata.var_names
    res: dict = {
        "dataset": args.dataset,
        "hvg": args.hvg,
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "markers_kept": [g for g in MARKERS if g in genes],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "random_state": 0,
    }

    # 1. reconstruction and map quality
    rows = []
    for name, nw in (
        ("gne", 0.0),
        ("gne, neighbor_weight=0.1", 0.1),
        ("gne, neighbor_weight=1", 1.0),
    ):
        a = adata.copy()
        t0 = time.perf_counter()
        sl.tl.gne(a, neighbor_weight=nw, **kw)
        secs = time.perf_counter() - t0
        trust, acc = quality(pcs, a.obsm["X_gne"], truth, np.random.default_rng(0))
        mse = a.uns["gne"]["reconstruction"]["error"]
        rows.append({"method": name, "mse": mse, "seconds": secs, "trust": trust, "knn_acc": acc})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    coords, mse, secs = fit_autoencoder(dense(adata.X), **kw)
    trust, acc = quality(pcs, coords, truth, np.random.default_rng(0))
    rows.append(
        {"method": "autoencoder", "mse": mse, "seconds": secs, "trust": trust, "knn_acc": acc}
    )
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    # the same comparison with smaller batches (more decoder and coordinate steps per epoch)
    small = dict(kw, batch_size=args.small_batch)
    a = adata.copy()
    sl.tl.gne(a, **small)
    res["small_batch"] = {
        "batch_size": args.small_batch,
        "gne": a.uns["gne"]["reconstruction"]["error"],
        "autoencoder": fit_autoencoder(dense(adata.X), **small)[1],
    }
    print(json.dumps(res["small_batch"]), file=sys.stderr, flush=True)
    res["maps"] = rows
    res["curves"] = {
        str(b): mse_curves(adata, args.epochs, b) for b in (args.batch_size, args.small_batch)
    }

    # 2. projection of 20% held-out cells
    rng = np.random.default_rng(0)
    test = rng.random(adata.n_obs) < 0.2
    ref, query = adata[~test].copy(), adata[test].copy()
    sl.tl.gne(ref, **kw)
    q = query.copy()
    q.obs = q.obs.drop(columns=[label])
    t0 = time.perf_counter()
    sl.tl.project(q, ref, model_key="gne", transfer=label)
    res["projection"] = {
        "n_ref": ref.n_obs,
        "n_query": q.n_obs,
        "accuracy": float(np.mean(q.obs[label].astype(str).to_numpy() == truth[test])),
        "seconds": time.perf_counter() - t0,
        "novelty_median": float(np.median(q.obs["gne_novelty"])),
    }
    print(json.dumps(res["projection"]), file=sys.stderr, flush=True)

    # 3. novelty of a left-out type
    novel = []
    types, counts = np.unique(truth, return_counts=True)
    for t in [] if args.skip_novelty else types[counts >= args.min_type]:
        is_t = truth == t
        ref = adata[~is_t & ~test].copy()
        query = adata[is_t | test].copy()
        sl.tl.gne(ref, **kw)
        sl.tl.project(query, ref, model_key="gne")
        y = is_t[is_t | test]
        scores = group_scores(ref, query)
        cell = query.obs["gne_novelty_cell"].to_numpy()
        few = {}
        for n in [int(v) for v in args.few.split(",") if int(v) < y.sum()]:
            draws = []
            for draw in range(5):
                keep = ~y.copy()
                keep[np.random.default_rng(draw).choice(np.flatnonzero(y), n, replace=False)] = True
                draws.append(
                    (roc_auc_score(y[keep], scores(keep)), roc_auc_score(y[keep], cell[keep]))
                )
            few[str(n)] = [float(v) for v in np.mean(draws, axis=0)]
        everything = np.ones(len(y), dtype=bool)
        novel.append(
            {
                "left_out": str(t),
                "n_cells": int(is_t.sum()),
                "auroc": float(roc_auc_score(y, query.obs["gne_novelty"].to_numpy())),
                "auroc_cell": float(roc_auc_score(y, cell)),
                "auroc_no_level": float(roc_auc_score(y, scores(everything, local=False))),
                "auroc_mean_error": float(roc_auc_score(y, mean_error_score(ref, query))),
                "few": few,
            }
        )
        print(json.dumps(novel[-1]), file=sys.stderr, flush=True)
    res["novelty"] = novel

    # 4. the group and per-cell AUROCs again with other seeds (the split and the training)
    seeds = {}
    for seed in [] if args.skip_novelty else [int(v) for v in args.seeds.split(",") if v]:
        split = np.random.default_rng(seed).random(adata.n_obs) < 0.2
        seeds[str(seed)] = {}
        for t in types[counts >= args.min_type]:
            is_t = truth == t
            ref = adata[~is_t & ~split].copy()
            query = adata[is_t | split].copy()
            sl.tl.gne(ref, **dict(kw, random_state=seed))
            sl.tl.project(query, ref, model_key="gne")
            y = is_t[is_t | split]
            seeds[str(seed)][str(t)] = [
                float(roc_auc_score(y, query.obs[c].to_numpy()))
                for c in ("gne_novelty", "gne_novelty_cell")
            ]
            print(seed, t, seeds[str(seed)][str(t)], file=sys.stderr, flush=True)
    res["novelty_seeds"] = seeds

    # keep the other gene selection's results (an older single-run file is replaced)
    stem = "gne" if args.dataset == "baron" else f"gne_{args.dataset}"
    path = out / f"{stem}.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs = {k: v for k, v in runs.items() if k in HVG}
    runs[args.hvg] = res
    runs = {k: runs[k] for k in HVG if k in runs}
    path.write_text(json.dumps(runs, indent=1))
    text = report(runs)
    (out / f"{stem}.md").write_text(text)
    print(text)


def report(runs: dict) -> str:
    """Markdown: the gene selections side by side, then each run's full tables."""
    names = list(runs)
    first = runs[names[0]]
    genes = (
        "with 2,000 genes chosen by Pearson residuals of the raw counts (`pearson`, as the "
        "tutorials do) or by scanpy's default `seurat` flavour on log-normalised data (`seurat`)."
        if first["dataset"] == "baron"
        else f"on its {first['n_genes']:,} genes (`seurat`: log-normalised)."
    )
    lines = [
        f"GNE on {first['dataset']} ({first['n_cells']} cells, {first['epochs']} epochs, "
        f"batch {first['batch_size']}), {genes}",
        "",
        "| | " + " | ".join(f"`{n}` genes" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def row(title, fmt):
        lines.append(f"| {title} | " + " | ".join(fmt(runs[n]) for n in names) + " |")

    if first["dataset"] == "baron":
        row("markers kept (of " + ", ".join(MARKERS) + ")", lambda r: ", ".join(r["markers_kept"]))

    def maps(r, m):
        return next(x for x in r["maps"] if x["method"] == m)

    row(
        f"reconstruction MSE, GNE / autoencoder (batch {first['batch_size']})",
        lambda r: f"{maps(r, 'gne')['mse']:.4f} / {maps(r, 'autoencoder')['mse']:.4f}",
    )
    row(
        f"reconstruction MSE, GNE / autoencoder (batch {first['small_batch']['batch_size']})",
        lambda r: f"{r['small_batch']['gne']:.4f} / {r['small_batch']['autoencoder']:.4f}",
    )
    row(
        "map trust@10, GNE / autoencoder",
        lambda r: f"{maps(r, 'gne')['trust']:.4f} / {maps(r, 'autoencoder')['trust']:.4f}",
    )
    row(
        "map 10-NN accuracy, GNE / autoencoder",
        lambda r: f"{maps(r, 'gne')['knn_acc']:.4f} / {maps(r, 'autoencoder')['knn_acc']:.4f}",
    )
    row("label transfer accuracy (20% held out)", lambda r: f"{r['projection']['accuracy']:.3f}")
    types = [x["left_out"] for x in first["novelty"]]
    for t in types:
        n = next(x["n_cells"] for x in first["novelty"] if x["left_out"] == t)

        def auroc(r, t=t):
            hit = [x for x in r["novelty"] if x["left_out"] == t]
            return f"{hit[0]['auroc']:.3f} / {hit[0]['auroc_cell']:.3f}" if hit else "-"

        row(f"novelty AUROC, groups / per cell, {t} left out ({n} cells)", auroc)
    if len(names) > 1:
        lines += [
            "",
            "Reconstruction errors compare the two maps on the same genes; across columns they "
            "are errors on different genes (Pearson residuals favour strongly expressed genes, "
            "whose log-expression varies more) and are not comparable.",
        ]
    for name in names:
        lines += ["", f"**`{name}` genes**", ""] + details(runs[name])
    return "\n".join(lines) + "\n"


def details(res: dict) -> list[str]:
    """The full tables of one run."""
    epochs, rows, novel = res["epochs"], res["maps"], res["novelty"]
    marks = sorted({1, *range(10, epochs + 1, 10), epochs})
    lines = [
        "| map | reconstruction MSE | seconds | trust@10 | 10-NN acc |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['mse']:.4f} | {r['seconds']:.1f} | {r['trust']:.4f} | {r['knn_acc']:.4f} |"
        )
    sb = res["small_batch"]
    lines += [
        "",
        f"Batch {sb['batch_size']} (both): GNE {sb['gne']:.4f}, autoencoder {sb['autoencoder']:.4f}.",
        "",
        "Noise-free MSE after epoch (GNE at its training coordinates, before the polish):",
        "",
        "| batch | map | " + " | ".join(str(e) for e in marks) + " |",
        "|---|---|" + "---|" * len(marks),
    ]
    for b, curves in res["curves"].items():
        for name, c in curves.items():
            lines.append(f"| {b} | {name} | " + " | ".join(f"{c[e - 1]:.4f}" for e in marks) + " |")
    pr = res["projection"]
    lines += [
        "",
        f"Projection: {pr['n_query']} held-out cells onto {pr['n_ref']}: label transfer accuracy "
        f"{pr['accuracy']:.3f}, {pr['seconds']:.1f} s.",
    ]
    if novel:
        sizes = sorted({n for r in novel for n in r["few"]}, key=int)
        lines += [
            "",
            "Novelty AUROC of each left-out type against the other projected cells: "
            "`gne_novelty` (per-cell score minus the reference cells' own score among the 100 "
            "nearest on the map, averaged over the cell and its 14 nearest query cells in "
            "expression), the same average without the local reference level, "
            "`gne_novelty_cell` (per cell: gene-by-gene excess over the larger of each gene's "
            "99.5th-percentile reference error and its second-largest error among the 100 "
            "nearest reference cells), and the earlier score (z-score of the log mean error). "
            "Then, with only n cells of the left-out type in the query (mean of 5 draws), "
            "`gne_novelty` / `gne_novelty_cell`.",
            "",
            "| left-out type | cells | `gne_novelty` | without local level | `gne_novelty_cell` "
            "| earlier score | " + " | ".join(f"n = {n}" for n in sizes) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(sizes),
        ]
        for r in novel:
            few = " | ".join(
                f"{r['few'][n][0]:.3f} / {r['few'][n][1]:.3f}" if n in r["few"] else "-"
                for n in sizes
            )
            lines.append(
                f"| {r['left_out']} | {r['n_cells']} | {r['auroc']:.3f} | "
                f"{r['auroc_no_level']:.3f} | {r['auroc_cell']:.3f} | "
                f"{r['auroc_mean_error']:.3f} | {few} |"
            )
        seeds = res.get("novelty_seeds", {})
        if seeds:
            lines += [
                "",
                "The same, `gne_novelty` / `gne_novelty_cell`, with other seeds for the 20% split "
                "and the training (seed 0 is the table above):",
                "",
                "| left-out type | seed 0 | " + " | ".join(f"seed {k}" for k in seeds) + " |",
                "|---|---|" + "---|" * len(seeds),
            ]
            for r in novel:
                t = r["left_out"]
                other = " | ".join(
                    f"{v[t][0]:.3f} / {v[t][1]:.3f}" if t in v else "-" for v in seeds.values()
                )
                lines.append(f"| {t} | {r['auroc']:.3f} / {r['auroc_cell']:.3f} | {other} |")
    return lines


if __name__ == "__main__":
    main()
