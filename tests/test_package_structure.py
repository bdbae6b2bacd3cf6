"""One set of conventions across the public API, checked function by function (in the spirit
of scanpy's ``tests/test_package_structure.py``).

Every ``sl.tl`` and ``sl.pl`` function takes ``adata`` first and its options by keyword only,
documents exactly its signature (numpydoc), and says what it returns. Every tool that writes
into ``adata`` has ``key_added`` and ``copy``; every tool that draws random numbers has
``random_state`` (the others give the same result twice); the model a tool reads is named by
``model_key``; epoch counts are ``n_*epochs``. The Returns section of each tool names every
``.obs``/``.obsm``/``.uns`` entry the tool writes, checked by running it.
"""

from __future__ import annotations

import inspect
import re
from typing import Literal, get_origin, get_type_hints

import numpy as np
import pytest
from numpydoc.docscrape import FunctionDoc

import sclens as sl

TL = {name: getattr(sl.tl, name) for name in sl.tl.__all__}
PL = {name: getattr(sl.pl, name) for name in sl.pl.__all__}
#: tools that read ``adata`` and return a new object instead of writing into it
RETURNS_NEW = {"generate"}
#: tools without randomness (no ``random_state``); ``test_tools_write_what_they_document``
#: checks that each gives the same result twice
DETERMINISTIC = {"generate", "project"}


def _params(func) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


def _doc(func) -> FunctionDoc:
    return FunctionDoc(func)


ALL = [(f"tl.{n}", f) for n, f in TL.items()] + [(f"pl.{n}", f) for n, f in PL.items()]


@pytest.mark.parametrize(("name", "func"), ALL, ids=[n for n, _ in ALL])
def test_adata_first_and_options_keyword_only(name, func):
    params = list(_params(func).values())
    assert params[0].name == "adata", f"{name}: first parameter is {params[0].name!r}"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    positional = [p for p in params[1:] if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    optional = [p.name for p in positional if p.default is not inspect.Parameter.empty]
    if name.startswith("tl."):
        # required data arguments (groupby, ref, source, ...) may be positional; options not
        assert not optional, f"{name}: options {optional} can be passed by position"
    else:
        # plots, like scanpy's, take one data-selecting argument by position (the key or genes)
        assert set(optional) <= {"key", "genes"} and len(optional) <= 1, name


@pytest.mark.parametrize(("name", "func"), ALL, ids=[n for n, _ in ALL])
def test_docstring_documents_the_signature(name, func):
    doc = _doc(func)
    assert "".join(doc["Summary"]).strip(), f"{name}: no summary line"
    documented = [p.name for p in doc["Parameters"]]
    expected = [
        ("**" + n if p.kind is inspect.Parameter.VAR_KEYWORD else n)
        for n, p in _params(func).items()
    ]
    assert documented == expected, f"{name}: documented {documented}, signature {expected}"
    for p in doc["Parameters"]:
        assert " ".join(p.desc).strip(), f"{name}: parameter {p.name!r} has no description"
    assert doc["Returns"], f"{name}: no Returns section"


@pytest.mark.parametrize("name", list(TL))
def test_tool_options_follow_one_convention(name):
    params = _params(TL[name])
    if name not in RETURNS_NEW:
        assert params["copy"].default is False, name
        assert "key_added" in params, name
        assert "copy=True" in _returns_text(TL[name]), f"{name}: Returns must say what copy gives"
    if name in DETERMINISTIC:
        assert "random_state" not in params, name
    else:
        assert params["random_state"].default == 0, f"{name}: random_state must default to 0"
    if "device" in params:
        assert params["device"].default in ("auto", "cpu"), name
    assert "key" not in params, f"{name}: the model a tool reads is `model_key`"
    bad = [p for p in params if p.endswith("epochs") and not p.startswith("n_")]
    assert not bad, f"{name}: epoch counts are named n_*epochs, found {bad}"


#: tools whose options go through ``@checked_options``
CHECKED_TOOLS = set(TL) - {"generate"}
#: numeric options checked in the tool's body because their range depends on the data
CHECKED_IN_BODY = {"n_clusters", "n_top_genes", "novelty_neighbors", "n_genes"}


@pytest.mark.parametrize("name", list(TL))
def test_every_numeric_option_is_checked_by_name(name):
    """Each int/float option of a tool is checked by the shared table (``tl/_options.OPTIONS``),
    so one name means one range everywhere, and each ``Literal[...]`` option against its
    annotation: a string for a number, or a value not among the choices, is refused naming
    the option before the tool reads ``adata`` (an empty AnnData suffices); so is a misspelled
    option, with the closest real name."""
    import anndata as ad

    from sclens.tl._options import OPTIONS

    required = {
        n: "x"
        for n, p in _params(TL[name]).items()
        if p.default is inspect.Parameter.empty and n != "adata"
    }
    numeric = [
        n
        for n, p in _params(TL[name]).items()
        if n not in required and re.search(r"\b(int|float)\b", str(p.annotation))
    ]
    unchecked = [n for n in numeric if n not in OPTIONS and n not in CHECKED_IN_BODY]
    assert not unchecked, f"{name}: numeric options without a shared check: {unchecked}"
    empty = ad.AnnData(np.zeros((3, 2), np.float32))
    for option in (n for n in numeric if n in OPTIONS and n != "random_state"):
        with pytest.raises(TypeError, match=f"`{option}`"):
            TL[name](empty, **required, **{option: "many"})
    hints = get_type_hints(inspect.unwrap(TL[name]))
    choices = [n for n in _params(TL[name]) if get_origin(hints.get(n)) is Literal]
    for option in choices:
        with pytest.raises(ValueError, match=f"{option} must be '"):
            TL[name](empty, **required, **{option: "nonsense"})
    # a misspelled option is named, with the closest real one
    if name in CHECKED_TOOLS:
        misspelled = "random_stat" if "random_state" in _params(TL[name]) else "key_addd"
        with pytest.raises(TypeError, match=f"unexpected option '{misspelled}'; did you mean"):
            TL[name](empty, **required, **{misspelled: 0})


def _returns_text(func) -> str:
    doc = _doc(func)
    return "\n".join(" ".join([r.name, r.type, *r.desc]) for r in doc["Returns"])


def _normalised(text: str, key: str) -> str:
    """Returns text with the ways a docstring names a keyed entry written as ``{K}``."""
    text = re.sub(r"'(\w*)'\s*\+\s*key_added\s*\+\s*'(\w*)'", r"\1{K}\2", text)
    text = re.sub(r"'(\w*)'\s*\+\s*key_added", r"\1{K}", text)
    text = re.sub(r"key_added\s*\+\s*'(\w*)'", r"{K}\1", text)
    text = text.replace("[key_added]", "[{K}]")
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", "{K}", text)


def _snapshot(adata) -> dict[str, set]:
    return {
        "obs": set(adata.obs.columns),
        "obsm": set(adata.obsm),
        "obsp": set(adata.obsp),
        "uns": set(adata.uns),
        "varm": set(adata.varm),
        "layers": set(adata.layers),
    }


def _check_written(name: str, before: dict, adata, key: str, after: dict | None = None) -> None:
    text = _normalised(_returns_text(TL[name]), key)
    after = after or _snapshot(adata)
    written = {slot: after[slot] - before[slot] for slot in after}
    assert any(written.values()), f"{name} wrote nothing"
    for slot, keys in written.items():
        for k in keys:
            generic = re.sub(rf"(?<![^_]){re.escape(key)}(?![^_])", "{K}", k)
            assert f"{slot}[" in text or f".{slot}" in text, f"{name}: Returns never names .{slot}"
            assert generic in text, f"{name}: writes .{slot}[{k!r}], which Returns does not name"
            if slot == "uns" and isinstance(adata.uns[k], dict):
                for sub in adata.uns[k]:
                    assert re.search(rf"\b{re.escape(sub)}\b", text), (
                        f"{name}: writes .uns[{k!r}][{sub!r}], which Returns does not name"
                    )


@pytest.fixture(scope="module")
def trained():
    """pbmc68k_reduced with each kind of model, trained just long enough to exist."""
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    before = _snapshot(adata)
    runs = {}
    for key, (tool, kw) in TRAINING_RUNS.items():
        snap = _snapshot(adata)
        getattr(sl.tl, tool)(adata, **kw, **({} if key == tool else {"key_added": key}))
        runs[key] = (snap, _snapshot(adata))
    return adata, before, runs


#: key_added -> (tool, options): each kind of result the training tools write
TRAINING_RUNS = {
    "ptsne": ("ptsne", dict(n_epochs=2)),
    "den": ("den", dict(n_epochs=2, n_finetune_epochs=1)),
    "gne": ("gne", dict(n_epochs=2)),
    "ardr": ("ardr", dict(n_epochs=5)),
    "ardr_param": ("ardr", dict(method="umap", parametric=True, n_epochs=2)),
    "ardr_pca": ("ardr", dict(method="pca", n_epochs=20)),
    "ardr_lle": ("ardr", dict(method="lle")),
}


@pytest.mark.parametrize("key", list(TRAINING_RUNS))
def test_training_tools_write_what_they_document(trained, key):
    adata, _, runs = trained
    _check_written(TRAINING_RUNS[key][0], runs[key][0], adata, key, after=runs[key][1])


def test_other_tools_write_what_they_document(trained):
    base, _, _ = trained
    query = base[:150].copy()
    for model_key in ("ptsne", "den", "gne"):
        q = query.copy()
        for k in list(q.obsm):
            del q.obsm[k]
        q.obs = q.obs[["bulk_labels"]].copy()
        q.uns.clear()
        snap = _snapshot(q)
        sl.tl.project(q, base, model_key=model_key)
        _check_written("project", snap, q, model_key)
        again = sl.tl.project(q, base, model_key=model_key, copy=True)
        np.testing.assert_array_equal(again.obsm[f"X_{model_key}"], q.obsm[f"X_{model_key}"])

    adata = base.copy()
    snap = _snapshot(adata)
    sl.tl.rank_genes(adata, "bulk_labels", model_key="ptsne", method="saliency", n_cells=30)
    _check_written("rank_genes", snap, adata, "rank_genes_saliency")

    snap = _snapshot(adata)
    groups = list(adata.obs["bulk_labels"].cat.categories[:2])
    sl.tl.directional_saliency(adata, *groups, groupby="bulk_labels", model_key="ptsne")
    _check_written("directional_saliency", snap, adata, "directional_saliency")
    first = np.asarray(adata.uns["directional_saliency"]["scores"]).copy()
    sl.tl.directional_saliency(adata, *groups, groupby="bulk_labels", model_key="ptsne")
    np.testing.assert_array_equal(adata.uns["directional_saliency"]["scores"], first)

    snap = _snapshot(adata)
    sl.tl.attribution_faithfulness(
        adata,
        "bulk_labels",
        model_key="ptsne",
        keys=["rank_genes_saliency"],
        n_genes=(5,),
        n_random=1,
    )
    _check_written("attribution_faithfulness", snap, adata, "attribution_faithfulness")

    coords = [[0.0, 0.0], [1.0, 1.0]]
    a, b = sl.tl.generate(base, coords), sl.tl.generate(base, coords)
    np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))


def test_renamed_option_still_works_with_a_warning(trained):
    base, _, _ = trained
    q = base[:50].copy()
    with pytest.warns(FutureWarning, match=r"project\(key=\.\.\.\)` is deprecated.*model_key"):
        old = sl.tl.project(q, base, key="ptsne", copy=True)
    new = sl.tl.project(q, base, model_key="ptsne", copy=True)
    np.testing.assert_array_equal(old.obsm["X_ptsne"], new.obsm["X_ptsne"])
    with pytest.raises(TypeError, match="got both `key` and `model_key`"):
        sl.tl.project(q, base, key="ptsne", model_key="ptsne")
