"""Parameter docs shared by the tools, injected into their docstrings."""

from __future__ import annotations

doc_input = """\
use_rep
        ``None``: genes (``.X`` or ``layer``) through a frozen PCA layer (scanpy's ``X_pca`` /
        ``varm['PCs']`` reused when they reproduce, otherwise a PCA of ``n_pcs`` components is
        fitted); ``'X'``: genes directly; any other ``.obsm`` key: that representation (projecting
        then needs the query's ``.obsm`` entry in the same space).
    n_pcs
        Components of the frozen PCA layer.
    layer
        Layer to read instead of ``.X``."""

doc_run = """\
device
        ``'auto'`` (CUDA when available), ``'cpu'`` or ``'cuda'``.
    random_state
        Seed: the same seed, thread count and CPU give identical numbers. ``None`` draws a
        fresh seed from the operating system and records it in ``params['random_state']``.
    key_added
        Key under which results are written (see Returns): letters, digits and ``_ . - +``,
        not one of the keys scanpy's own tools write (``'pca'``, ``'umap'``, ...).
    copy
        Return a copy instead of writing into ``adata``."""


doc_batches = """\
``'edges'``, graph edges drawn in proportion to their
        affinity, each edge's start pulled by its end and pushed by 256 cells drawn uniformly;
        or ``'cells'``, each cell of the batch pulled by all its graph neighbours and pushed by
        256 random cells, their positions read from a memory of every cell's last output.
        For a network on a few thousand cells ``'cells'`` gave more trustworthy maps but, on
        four of five sets, placed held-out cells worse by the forward pass (better with
        ``placement='neighbors'``), and worse maps from ~16,000 cells on (measurements in
        ``docs/methods/ardr.md``)."""


def doc_params(**kwds):
    """Fill ``{name}`` placeholders of a docstring."""

    def dec(obj):
        obj.__doc__ = obj.__doc__.format(**kwds)
        return obj

    return dec
