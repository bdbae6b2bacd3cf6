"""Stored models: zarr round trips, validation of untrusted models, bounded and safe file reading."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import torch
from threadpoolctl import threadpool_limits

import sclens as sl
from sclens import Model, ModelError
from sclens._core import model as model_module

KINDS = ("ptsne", "den", "gne", "ardr")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One BLAS and torch thread: these tests are tiny, and on a busy machine idle threads of a
    multithreaded BLAS spin (a 765 x 70 QR took 1 s instead of 10 ms)."""
    before = sl.get_num_threads()
    sl.set_num_threads(1)
    with threadpool_limits(1):
        yield
    sl.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(_one_thread):
    """pbmc68k_reduced with a tiny map of each kind (a few epochs, narrow networks)."""
    adata = sc.datasets.pbmc68k_reduced()
    kw = dict(device="cpu", random_state=0)
    sl.tl.ptsne(adata, n_epochs=2, n_pretrain_epochs=1, hidden=(32,), **kw)
    sl.tl.den(adata, n_epochs=2, n_finetune_epochs=1, hidden=(32,), **kw)
    sl.tl.gne(adata, n_epochs=2, hidden=16, n_blocks=1, **kw)
    sl.tl.ardr(adata, parametric=True, n_epochs=2, hidden=(32,), **kw)
    return adata


@pytest.fixture(scope="module")
def query(trained):
    return trained[::12].copy()  # 59 cells


def _project(query, ref, key):
    return sl.tl.project(query, ref, model_key=key, copy=True)


def _stored(adata, key) -> dict:
    """A copy of ``adata.uns[key]['model']`` to tamper with."""
    stored = dict(adata.uns[key]["model"])
    stored["arrays"] = {k: np.array(v, copy=True) for k, v in stored["arrays"].items()}
    return stored


def _edit_config(stored: dict, edit) -> dict:
    config = json.loads(stored["config"])
    edit(config)
    stored["config"] = json.dumps(config)
    return stored


def _fds_open_on(path: Path) -> list[str]:
    fd_dir = Path("/proc/self/fd")
    out = []
    for fd in fd_dir.iterdir():
        try:
            if os.path.realpath(fd.readlink()) == os.path.realpath(path):
                out.append(fd.name)
        except OSError:
            continue
    return out


# -- 1. zarr --------------------------------------------------------------------------------------
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_round_trip_projects_identically(trained, query, tmp_path, zarr_format):
    with ad.settings.override(zarr_write_format=zarr_format):
        trained.write_zarr(tmp_path / "ref.zarr")
    back = ad.read_zarr(tmp_path / "ref.zarr")
    # what made every kind fail: zarr gives text arrays back as numpy's StringDType
    assert back.uns["ptsne"]["model"]["arrays"]["input.var_names"].dtype.kind in "TOU"
    for key in KINDS:
        model = Model.from_uns(back.uns[key]["model"])
        assert model.arrays["input.var_names"].dtype.kind == "U"
        a, b = _project(query, trained, key), _project(query, back, key)
        np.testing.assert_array_equal(b.obsm[f"X_{key}"], a.obsm[f"X_{key}"])
        if key == "gne":
            np.testing.assert_array_equal(b.obs["gne_novelty"], a.obs["gne_novelty"])
        if key == "den":
            np.testing.assert_array_equal(b.obsm["den_proba"], a.obsm["den_proba"])


def test_text_fields_are_read_in_any_numpy_form(trained):
    stored = _stored(trained, "ptsne")
    names = stored["arrays"]["input.var_names"]
    string_dtype = np.dtypes.StringDType()
    stored["format"] = np.array(stored["format"], dtype=string_dtype)
    stored["version"] = np.int64(stored["version"])
    stored["config"] = np.str_(stored["config"])
    for form in (
        names.astype(string_dtype),
        names.astype(object),
        np.char.encode(names, "utf-8"),
        np.array([n.encode() for n in names], dtype=object),
    ):
        stored["arrays"]["input.var_names"] = form
        model = Model.from_uns(stored)
        assert model.arrays["input.var_names"].dtype.kind == "U"
        np.testing.assert_array_equal(model.input_layer.var_names, names)
    stored["config"] = np.array(stored["config"], dtype=string_dtype)
    stored["format"] = np.bytes_(b"sclens-model")
    assert Model.from_uns(stored).method == "ptsne"
    stored["arrays"]["input.var_names"] = np.array([1.5] * len(names), dtype=object)
    with pytest.raises(ModelError, match="'input.var_names' holds Python objects"):
        Model.from_uns(stored)


# -- 2. non-finite arrays ------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_input_scale_is_refused(trained, scale):
    stored = _edit_config(_stored(trained, "ptsne"), lambda c: c["input"].update(scale=scale))
    with pytest.raises(ModelError, match="input scale is .* not a positive finite number"):
        Model.from_uns(stored)


@pytest.mark.parametrize(
    ("key", "array"),
    [
        ("ptsne", "net.trunk.0.weight"),
        ("ptsne", "input.mean"),
        ("den", "net.cluster_head.2.bias"),
        ("gne", "dec.out.weight"),
        ("gne", "ref.coords"),
    ],
)
def test_non_finite_arrays_are_refused_by_name(trained, key, array):
    stored = _stored(trained, key)
    stored["arrays"][array].flat[0] = np.nan
    with pytest.raises(ModelError, match=rf"array '{array}' holds 1 NaN or infinite values"):
        Model.from_uns(stored)


def test_projection_refuses_a_nan_model_instead_of_writing_nan(trained, query):
    ref = trained.copy()
    ref.uns["ptsne"]["model"] = _stored(trained, "ptsne")
    ref.uns["ptsne"]["model"]["arrays"]["net.embed.weight"][0, 0] = np.inf
    q = query.copy()
    before = q.obsm["X_ptsne"].copy()
    with pytest.raises(ModelError, match="'net.embed.weight' holds 1 NaN or infinite"):
        sl.tl.project(q, ref)
    np.testing.assert_array_equal(q.obsm["X_ptsne"], before)


# -- 3. bounded cost -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("steps", 10**9, "'steps' is 1000000000; it must be between 1 and 1000"),
        ("steps", 0, "'steps' is 0"),
        ("steps", 20.5, "'steps' is 20.5, not an integer"),
        ("n_starts", 10**6, "'n_starts' is 1000000; it must be between 1 and 32"),
        ("learning_rate", float("nan"), "learning_rate is nan"),
        ("learning_rate", -0.1, "learning_rate is -0.1"),
        ("learning_rate", 1e6, "at most 10.0"),
    ],
)
def test_gne_placement_settings_are_bounded(trained, setting, value, message):
    stored = _edit_config(
        _stored(trained, "gne"), lambda c: c["projection"].update({setting: value})
    )
    with pytest.raises(ModelError, match=rf"GNE placement.*{message}"):
        Model.from_uns(stored)


def test_too_many_reference_positions_are_refused(trained, monkeypatch):
    monkeypatch.setattr(model_module, "MAX_REFERENCE_CELLS", 10)
    with pytest.raises(ModelError, match="reference positions, more than the 10 allowed"):
        Model.from_uns(_stored(trained, "gne"))


@pytest.mark.parametrize(
    ("key", "section", "edit"),
    [
        ("ptsne", "network", {"hidden": [10**9]}),
        ("ptsne", "network", {"hidden": [32] * 10**6}),
        ("ptsne", "network", {"n_features": 10**9}),
        ("den", "network", {"n_clusters": 10**9}),
        ("ptsne", "network", {"n_classes": 10**9}),
        ("ptsne", "network", {"n_components": 10**9}),
        ("gne", "decoder", {"hidden": 60_000}),
        ("gne", "decoder", {"n_out": 10**9}),
        ("gne", "decoder", {"n_blocks": 10**6}),
    ],
)
def test_config_sizes_are_checked_before_allocating(trained, monkeypatch, key, section, edit):
    real = []
    init = torch.nn.Linear.__init__

    def spy(self, n_in, n_out, *args, **kwargs):
        if not torch.get_default_device().type == "meta":
            real.append(n_in * n_out)
        init(self, n_in, n_out, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Linear, "__init__", spy)
    stored = _edit_config(_stored(trained, key), lambda c: c[section].update(edit))
    with pytest.raises(ModelError, match="does not match its config|corrupted sclens model"):
        Model.from_uns(stored)
    assert max(real, default=0) <= 765 * 256, "a layer was allocated at the config's size"


def test_widths_beyond_the_limit_are_refused(trained):
    stored = _edit_config(_stored(trained, "ptsne"), lambda c: c["network"].update(hidden=[2**20]))
    with pytest.raises(ModelError, match="hidden width .* between 1 and 65536"):
        Model.from_uns(stored)


def test_files_that_unpack_too_large_are_refused_before_reading(tmp_path, monkeypatch, trained):
    sl.save_model(trained, "ptsne", tmp_path / "m.npz")
    assert Model.load(tmp_path / "m.npz").method == "ptsne"
    monkeypatch.setattr(model_module, "MAX_MODEL_BYTES", 100_000)
    read = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: read.append(1))
    with pytest.raises(ModelError, match=r"unpacks to .* GiB, more than .*MAX_MODEL_BYTES"):
        Model.load(tmp_path / "m.npz")
    assert not read
    # a compression bomb: 8 MB of zeros in a few kB
    np.savez_compressed(tmp_path / "bomb.npz", __format__=np.array("x"), a=np.zeros(2**20))
    assert (tmp_path / "bomb.npz").stat().st_size < 50_000
    with pytest.raises(ModelError, match="unpacks to"):
        Model.load(tmp_path / "bomb.npz")


def test_array_headers_claiming_more_than_their_entry_are_refused(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as zf:
        zf.writestr("__format__.npy", _npy(np.array("sclens-model")))
        zf.writestr("input.mean.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(ModelError, match=r"'input.mean' claims 8000000000000 bytes"):
        Model.load(tmp_path / "liar.npz")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_truncated_and_damaged_files_raise_model_error_and_are_closed(trained, tmp_path):
    sl.save_model(trained, "gne", tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    for name, content in [
        ("half.npz", data[: len(data) // 2]),
        ("tail.npz", data[:-10]),
        ("head.npz", data[:30]),
        ("empty.npz", b""),
        ("damaged.npz", bytes(damaged)),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelError, match="not a readable sclens model file") as info:
            Model.load(path)
        assert "write it again with `sl.save_model`" in str(info.value)
        assert not _fds_open_on(path), f"{name} left open"


# -- 4. paths and foreign files ------------------------------------------------------------------
def test_save_appends_npz_and_load_accepts_both(trained, query, tmp_path):
    sl.save_model(trained, "ptsne", tmp_path / "m")
    assert (tmp_path / "m.npz").is_file() and not (tmp_path / "m").exists()
    expected = _project(query, trained, "ptsne").obsm["X_ptsne"]
    for path in (tmp_path / "m", str(tmp_path / "m"), tmp_path / "m.npz"):
        got = _project(query, sl.load_model(path), "ptsne").obsm["X_ptsne"]
        np.testing.assert_array_equal(got, expected)
    # a file at exactly the given path wins, whatever its suffix
    (tmp_path / "copy").write_bytes((tmp_path / "m.npz").read_bytes())
    assert sl.load_model(tmp_path / "copy").method == "ptsne"
    with pytest.raises(FileNotFoundError, match=r"No sclens model file .*nope' nor .*nope.npz'"):
        sl.load_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"No sclens model file .*nope.npz'; check"):
        sl.load_model(tmp_path / "nope.npz")


def test_foreign_files_are_refused_with_model_error(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(5))
    with pytest.raises(ModelError, match=r"single numpy array \(.npy\), not an sclens model file"):
        sl.load_model(tmp_path / "x.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelError, match="not an sclens model file"):
        sl.load_model(tmp_path / "obj.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ModelError, match="not a readable sclens model file"):
        sl.load_model(tmp_path / "text.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with pytest.raises(ModelError, match=r"not an sclens model \(no format marker\).*save_model"):
        sl.load_model(tmp_path / "foreign.npz")
    # an object member needs pickle: refused from its header, before anything is unpickled
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as zf:
        zf.writestr("__format__.npy", _npy(np.array("sclens-model")))
        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        zf.writestr("evil.npy", buf.getvalue())
    with pytest.raises(ModelError, match="'evil' holds Python objects, which only pickle"):
        sl.load_model(tmp_path / "pickled.npz")


@pytest.mark.parametrize("key", KINDS)
def test_a_model_places_cells_by_its_parts_not_its_name(trained, query, key):
    """``Model.place`` asks the model's parts (network, cluster head, decoder and reference),
    never the method's name: renamed, a model places cells exactly as before."""
    model = Model.from_uns(trained.uns[key]["model"])
    X = np.asarray(query.X)
    placed = model.place(X)
    renamed = Model("some_new_method", dict(model.config, method="x"), model.arrays).place(X)
    for name, values in placed.items():
        np.testing.assert_array_equal(renamed[name], values)
    assert ("proba" in placed) == (key == "den")
    assert ("novelty" in placed) == (key == "gne")
    if key == "gne":
        with pytest.raises(ModelError, match="no encoder"):
            model.embed(X)
        with pytest.raises(ModelError, match="placement by neighbours applies to network maps"):
            sl.tl.project(query, trained, model_key="gne", placement="neighbors", copy=True)
    else:
        np.testing.assert_array_equal(model.embed(X), placed["coords"])
        np.testing.assert_allclose(placed["coords"], _project(query, trained, key).obsm[f"X_{key}"])
