"""The stored model: a JSON config plus plain arrays; never pickle.

In ``adata.uns[key]['model']`` it is ``{'format', 'version', 'config' (JSON str), 'arrays'}``, which
``write_h5ad``/``read_h5ad`` and ``write_zarr``/``read_zarr`` round-trip; on disk it is an ``.npz``
read member by member with ``allow_pickle=False``.

A model may come from an untrusted file, so reading one is bounded: the file's arrays may not
take more than :data:`MAX_MODEL_BYTES` uncompressed, every size in the config must match the
stored weights before a network is built, and the settings projection reads from it (GNE
placement) must lie in the ranges below. Anything else raises :class:`ModelError`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse

from .data import InputLayer
from .gne import REFERENCE_ARRAYS, place_on_decoder
from .networks import Decoder, Network

__all__ = ["Model", "ModelError"]

FORMAT = "sclens-model"
VERSION = 1

#: a model file whose arrays take more bytes than this uncompressed is refused before it is read
#: (a few MB of compressed zeros can claim GiBs); sclens models take a few MB to a few hundred
MAX_MODEL_BYTES = 2 * 1024**3
#: ... as is a file with more arrays than this (a network or decoder has a few dozen)
MAX_MODEL_ARRAYS = 10_000
#: widest hidden layer a stored network or decoder may have (sclens trains 256 by default)
MAX_WIDTH = 65_536
#: GNE placement settings a stored model may ask projection for (sclens writes 4, 20 and 0.1)
MAX_PLACE_STARTS = 32
MAX_PLACE_STEPS = 1_000
MAX_PLACE_LEARNING_RATE = 10.0
#: reference positions a GNE model may store (sclens stores at most 2,000)
MAX_REFERENCE_CELLS = 10_000

_NPY_MAGIC = b"\x93NUMPY"
_REDO = " Train the map again, or use an intact copy of the model."


class ModelError(ValueError):
    """A stored model is missing, foreign or corrupted."""


def _corrupted(msg: str) -> ModelError:
    return ModelError(f"corrupted sclens model: {msg}.{_REDO}")


def _scalar(value):
    """A stored scalar as a Python object: 0-d arrays and numpy scalars unwrapped, bytes decoded.

    ``read_zarr`` and ``np.load`` give the format, version and config back as 0-d arrays (of
    numpy's ``StringDType`` or fixed-width str) or numpy scalars, ``read_h5ad`` as Python objects.
    """
    if (isinstance(value, np.ndarray) and value.ndim == 0) or isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value


def _as_array(name: str, value, where: str) -> np.ndarray:
    """A stored array with text as fixed-width ``str`` (``read_zarr`` gives numpy's
    ``StringDType``, ``read_h5ad`` objects or bytes)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "OTS":
        return arr
    items = arr.ravel().tolist()
    if not all(isinstance(x, str | bytes) for x in items):
        raise ModelError(
            f"{where}: array {name!r} holds Python objects, not numbers or text; sclens never "
            f"stores such arrays, so the model is refused.{_REDO}"
        )
    text = [x.decode("utf-8", errors="replace") if isinstance(x, bytes) else x for x in items]
    return np.array(text, dtype=str).reshape(arr.shape)


def _count(cfg: Mapping, key: str, what: str, *, low: int = 1, high: int | None = None) -> int:
    """``cfg[key]``, an integer size of a stored config; ``ModelError`` unless in ``[low, high]``."""
    if key not in cfg:
        raise _corrupted(f"the {what} config has no {key!r}")
    return _size(cfg[key], f"the {what} config's {key!r}", low=low, high=high)


def _size(value, what: str, *, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _corrupted(f"{what} is {value!r}, not an integer")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise _corrupted(f"{what} is {value}; it must be {bounds}")
    return value


def _read_npz(path: str, where: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, read without pickle and within :data:`MAX_MODEL_BYTES`.

    Every member's ``.npy`` header is checked against the member's stored size before its array
    is allocated; the file is closed whatever happens.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise ModelError(
                    f"{where} is a single numpy array (.npy), not an sclens model file; models are "
                    "the .npz files written by `sl.save_model(adata, key, path)`."
                )
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                total = sum(info.file_size for info in infos)
                if total > MAX_MODEL_BYTES:
                    raise ModelError(
                        f"{where} unpacks to {total / 2**30:.2f} GiB, more than the "
                        f"{MAX_MODEL_BYTES / 2**30:.2f} GiB an sclens model may take "
                        "(sclens._core.model.MAX_MODEL_BYTES); it is not a model sclens wrote, "
                        "so it was not read. If you trust the file, raise that limit."
                    )
                if len(infos) > MAX_MODEL_ARRAYS:
                    raise ModelError(
                        f"{where} holds {len(infos)} arrays, more than the {MAX_MODEL_ARRAYS} an "
                        "sclens model may have; it is not a model sclens wrote, so it was not read."
                    )
                return {
                    info.filename.removesuffix(".npy"): _read_member(zf, info, where)
                    for info in infos
                }
    except (ModelError, FileNotFoundError):
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        ValueError,
        OSError,
        EOFError,
        NotImplementedError,
        RuntimeError,
    ) as e:
        raise ModelError(
            f"{where} is not a readable sclens model file ({type(e).__name__}: {e}); it is "
            "truncated, damaged or not a model: write it again with `sl.save_model`."
        ) from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    name = info.filename.removesuffix(".npy")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelError(
                f"{where}: array {name!r} is in .npy format version {version}, which sclens does "
                "not write; the file is not a model sclens wrote."
            )
    if dtype.hasobject:
        raise ModelError(
            f"{where}: array {name!r} holds Python objects, which only pickle can load; sclens "
            "models never do, so the file is refused (no code from it was run)."
        )
    n_bytes = math.prod(shape) * max(dtype.itemsize, 1)
    if n_bytes > info.file_size:
        raise ModelError(
            f"{where}: array {name!r} claims {n_bytes} bytes but its entry holds only "
            f"{info.file_size}; the file is corrupted: write it again with `sl.save_model`."
        )
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


@dataclass
class Model:
    """A trained sclens model.

    Attributes
    ----------
    method
        The method that trained it (``'ptsne'``, ...).
    config
        JSON-able settings: ``input`` (what it reads), ``network`` (architecture), method extras.
    arrays
        Weights and frozen layers as numpy arrays (``net.*`` for the network, ``dec.*`` for a
        decoder, ``input.*``, method extras such as ``ref.*``).
    """

    method: str
    config: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_parts(cls, method: str, inp: InputLayer, network: Network | None, **extra) -> Model:
        config = {"method": method, "input": inp.to_config(), **extra}
        arrays = inp.to_arrays()
        if network is not None:
            config["network"] = network.config
            arrays.update(
                {f"net.{k}": v.detach().cpu().numpy() for k, v in network.state_dict().items()}
            )
        return cls(method, config, arrays)

    @property
    def input_layer(self) -> InputLayer:
        return InputLayer.from_storage(self.config["input"], self.arrays)

    def network(self, device: str | torch.device = "cpu") -> Network:
        cfg = self.config.get("network")
        if cfg is None:
            raise ModelError(f"the {self.method!r} model has no network")
        if not isinstance(cfg, Mapping):
            raise _corrupted("the network config is not a mapping")
        hidden = cfg.get("hidden")
        if not isinstance(hidden, list):
            raise _corrupted(f"the network config's 'hidden' is {hidden!r}, not a list of widths")
        stored = self._stored("net.")
        if 2 * len(hidden) > len(stored):  # each layer has a weight and a bias
            raise _corrupted(
                f"the network config has {len(hidden)} hidden layers but {len(stored)} arrays"
            )
        sizes = (
            _count(cfg, "n_features", "network"),
            [_size(w, "a hidden width of the network", high=MAX_WIDTH) for w in hidden],
            _count(cfg, "n_components", "network"),
            _count(cfg, "n_classes", "network", low=0) if "n_classes" in cfg else 0,
            _count(cfg, "n_clusters", "network", low=0) if "n_clusters" in cfg else 0,
        )
        return self._build(lambda: Network(*sizes), "net.", "network").to(device).eval()

    @classmethod
    def with_decoder(
        cls, method: str, inp: InputLayer, decoder: Decoder, arrays=None, **extra
    ) -> Model:
        """A model whose trained part is a :class:`Decoder` (GNE), plus extra arrays."""
        model = cls.from_parts(method, inp, None, decoder=decoder.config, **extra)
        model.arrays.update(
            {f"dec.{k}": v.detach().cpu().numpy() for k, v in decoder.state_dict().items()}
        )
        model.arrays.update({k: np.asarray(v) for k, v in (arrays or {}).items()})
        return model

    @property
    def has_decoder(self) -> bool:
        return "decoder" in self.config

    def embed(self, X, device: str | torch.device = "cpu") -> np.ndarray:
        """Coordinates of expression ``X`` (the model's genes, in order): the network's forward
        pass through the frozen input layer. Decoder models have no encoder: see :meth:`place`."""
        if self.has_decoder:
            raise ModelError(
                f"the {self.method!r} model has a decoder and no encoder: cells are placed by "
                "optimisation, `Model.place`."
            )
        return self.network(device).transform(self.input_layer.transform(X))

    def place(
        self,
        X,
        device: str | torch.device = "cpu",
        *,
        novelty_neighbors: int = 15,
        reference: tuple | None = None,
        placement_neighbors: int = 3,
    ) -> dict[str, np.ndarray]:
        """Place cells (expression ``X`` of the model's genes) on the map, whatever the model.

        Networks place by a forward pass; with ``reference = (X_ref, coords_ref)`` (the
        training cells' expression and map coordinates) each cell goes instead to the
        coordinate-wise median of its ``placement_neighbors`` nearest reference cells in the
        network's input features (e.g. the PCs): where the map is not a smooth function of the
        features (touching clusters), the neighbours know better than the network.

        Returns ``coords``, and where the model has the parts for them: ``proba`` (cluster
        probabilities, columns in the order the tool numbered its clusters) for a network with
        a cluster head; ``novelty`` and ``novelty_cell`` for a decoder (GNE) with its reference.
        """
        if self.has_decoder and reference is not None:
            raise ModelError(
                "a GNE map places cells by optimisation against its decoder; placement by "
                "neighbours applies to network maps."
            )
        if self.has_decoder:
            missing = [k for k in REFERENCE_ARRAYS if k not in self.arrays]
            if missing:
                raise ModelError(
                    f"the {self.method!r} model has no {missing[0]!r} array (reference positions "
                    "and error thresholds); it was made by an older sclens: run `sl.tl.gne` on "
                    "the reference again."
                )
            coords, relative, per_cell = place_on_decoder(
                self.decoder(device),
                self.arrays,
                self.config.get("projection", {}),
                X,
                device,
                novelty_neighbors,
            )
            return {"coords": coords, "novelty": relative, "novelty_cell": per_cell}
        network = self.network(device)
        features = self.input_layer.transform(X)
        if reference is None:
            coords = network.transform(features)
        else:
            X_ref, coords_ref = reference
            coords = neighbor_median(
                features, self.input_layer.transform(X_ref), coords_ref, placement_neighbors
            )
        out = {"coords": coords}
        if network.cluster_head is not None:
            order = self.config.get("cluster_order", list(range(network.config["n_clusters"])))
            out["proba"] = network.cluster_proba(coords)[:, order]
        return out

    def decoder(self, device: str | torch.device = "cpu") -> Decoder:
        cfg = self.config.get("decoder")
        if cfg is None:
            raise ModelError(f"the {self.method!r} model has no decoder")
        if not isinstance(cfg, Mapping):
            raise _corrupted("the decoder config is not a mapping")
        likelihood = cfg.get("likelihood")
        if likelihood not in ("mse", "nb"):
            raise _corrupted(
                f"the decoder config's likelihood is {likelihood!r}, not 'mse' or 'nb'"
            )
        n_blocks = _count(cfg, "n_blocks", "decoder", low=0)
        if 4 * n_blocks > len(self._stored("dec.")):  # two weights and two biases per block
            raise _corrupted(
                f"the decoder config has {n_blocks} residual blocks but "
                f"{len(self._stored('dec.'))} arrays"
            )
        sizes = (
            _count(cfg, "n_components", "decoder"),
            _count(cfg, "n_out", "decoder"),
            _count(cfg, "hidden", "decoder", high=MAX_WIDTH),
            n_blocks,
            likelihood,
        )
        return self._build(lambda: Decoder(*sizes), "dec.", "decoder").to(device).eval()

    def _stored(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def _build(
        self, make: Callable[[], torch.nn.Module], prefix: str, what: str
    ) -> torch.nn.Module:
        """``make()`` filled from the arrays named ``prefix + parameter``.

        The module is first built on the ``meta`` device (shapes only, no memory), and only built
        for real once every stored array has the shape the config implies: a config claiming
        sizes its arrays do not have never allocates them.
        """
        stored = self._stored(prefix)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in make().state_dict().items()}
        problems = [f"{k!r} missing" for k in expected if k not in stored]
        problems += [f"unexpected {k!r}" for k in stored if k not in expected]
        problems += [
            f"{k!r} has shape {stored[k].shape}, the config implies {shape}"
            for k, shape in expected.items()
            if k in stored and stored[k].shape != shape
        ]
        problems += [
            f"{k!r} holds {v.dtype}, not floats" for k, v in stored.items() if v.dtype.kind != "f"
        ]
        if problems:
            shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
            raise ModelError(
                f"the stored {self.method!r} {what} does not match its config: {shown}.{_REDO}"
            )
        module = make()
        native = {k: v.astype(v.dtype.newbyteorder("="), copy=False) for k, v in stored.items()}
        module.load_state_dict({k: torch.as_tensor(v) for k, v in native.items()}, strict=True)
        return module

    def transform(self, X, device: str | torch.device = "cpu") -> np.ndarray:
        """The same as :meth:`embed` (its earlier name)."""
        return self.embed(X, device)

    def validate(self) -> Model:
        """Check the pieces fit together, raising :class:`ModelError` otherwise.

        Arrays must hold numbers or text, floats all finite; config sizes must match the
        stored weights (checked before any network is built); settings projection reads (GNE
        placement, reference positions) must be in range (``MAX_*`` constants of this module).
        """
        for k, v in self.arrays.items():
            if v.dtype.kind not in "biufU":
                raise _corrupted(f"array {k!r} has unsupported type {v.dtype}")
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                n_bad = int(v.size - np.isfinite(v).sum())
                raise _corrupted(f"array {k!r} holds {n_bad} NaN or infinite values")
        inp = self._validated_input()
        if "network" in self.config:
            net = self.network()
            if net.config["n_features"] != inp.n_features:
                raise _corrupted(
                    f"network reads {net.config['n_features']} features, input layer gives "
                    f"{inp.n_features}"
                )
            self._validate_cluster_order(net.config["n_clusters"])
        if "decoder" in self.config:
            dec = self.decoder()
            if dec.config["n_out"] != inp.n_in:
                raise _corrupted(
                    f"decoder writes {dec.config['n_out']} genes, input layer reads {inp.n_in}"
                )
            self._validate_reference(dec.config["n_components"], dec.config["n_out"])
        self._validate_projection()
        library_size = self.config.get("library_size")
        if library_size is not None and not _positive(library_size):
            raise _corrupted(f"library_size is {library_size!r}, not a positive number")
        return self

    def _validated_input(self) -> InputLayer:
        if not isinstance(self.config.get("input"), Mapping):
            raise _corrupted("the input config is not a mapping")
        kinds = {"input.mean": (1, "f"), "input.loadings": (2, "f"), "input.var_names": (1, "U")}
        for k, (ndim, kind) in kinds.items():
            v = self.arrays.get(k)
            if v is not None and (v.ndim != ndim or v.dtype.kind != kind):
                raise _corrupted(f"array {k!r} is {v.ndim}-D {v.dtype}")
        try:
            inp = self.input_layer
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(
                f"corrupted sclens model: input layer unreadable ({e!r}).{_REDO}"
            ) from None
        if inp.source not in ("genes", "obsm"):
            raise _corrupted(f"the input source is {inp.source!r}, not 'genes' or 'obsm'")
        if not _positive(inp.scale):
            raise _corrupted(f"the input scale is {inp.scale}, not a positive finite number")
        if inp.loadings is not None and inp.loadings.shape[0] != inp.n_in:
            raise _corrupted("input loadings and mean disagree in size")
        if inp.var_names is not None and len(inp.var_names) != inp.n_in:
            raise _corrupted("gene names and input size disagree")
        return inp

    def _validate_cluster_order(self, n_clusters: int) -> None:
        order = self.config.get("cluster_order")
        if order is None:
            return
        ints = isinstance(order, list) and all(
            isinstance(c, int) and not isinstance(c, bool) for c in order
        )
        if not ints or sorted(order) != list(range(n_clusters)):
            raise _corrupted(f"cluster_order {order!r} is not an order of {n_clusters} clusters")

    def _validate_projection(self) -> None:
        """GNE placement settings, within ``MAX_PLACE_*`` (projection's time and memory)."""
        settings = self.config.get("projection", {})
        if not isinstance(settings, Mapping):
            raise _corrupted("the projection settings are not a mapping")
        for key, high in (("n_starts", MAX_PLACE_STARTS), ("steps", MAX_PLACE_STEPS)):
            if key in settings:
                _count(settings, key, "GNE placement", high=high)
        lr = settings.get("learning_rate", 0.1)
        if not _positive(lr) or lr > MAX_PLACE_LEARNING_RATE:
            raise _corrupted(
                f"the GNE placement learning_rate is {lr!r}; it must be a number above 0 and at "
                f"most {MAX_PLACE_LEARNING_RATE}"
            )

    def _validate_reference(self, n_components: int, n_genes: int) -> None:
        """The reference positions and error thresholds a GNE model keeps for projection."""
        a = self.arrays
        if "ref.coords" not in a:
            return  # an older model: projection says so
        coords = a["ref.coords"]
        if coords.ndim != 2 or coords.shape[1] != n_components or len(coords) < 1:
            raise _corrupted(
                f"reference positions have shape {coords.shape}, not (cells, {n_components})"
            )
        n = len(coords)
        if n > MAX_REFERENCE_CELLS:
            raise _corrupted(
                f"it stores {n} reference positions, more than the {MAX_REFERENCE_CELLS} allowed"
            )
        for k, shape in (("ref.gene_threshold", (n_genes,)), ("ref.excess", (n,))):
            if k in a and a[k].shape != shape:
                raise _corrupted(f"array {k!r} has shape {a[k].shape}, not {shape}")
        tails = ("ref.tail_values", "ref.tail_indices", "ref.tail_indptr")
        if any(k in a for k in tails):
            try:
                m = sparse.csr_matrix(tuple(a[k] for k in tails), shape=(n, n_genes))
                m.check_format(full_check=True)
            except (KeyError, TypeError, ValueError) as e:
                raise _corrupted(f"reference error tails unreadable ({e!r})") from None

    # -- AnnData storage -----------------------------------------------------------------------
    def to_uns(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": json.dumps(self.config),
            "arrays": {k: np.asarray(v) for k, v in self.arrays.items()},
        }

    @classmethod
    def from_uns(cls, stored, where: str = "the model") -> Model:
        if not isinstance(stored, Mapping) or "format" not in stored:
            raise ModelError(
                f"{where} is not an sclens model (no 'format' entry); pass the key of a map an "
                "sclens tool trained (e.g. `sl.tl.ptsne(adata)`)."
            )
        return cls._from_fields(
            stored["format"],
            stored.get("version"),
            stored.get("config"),
            stored.get("arrays"),
            where,
        )

    @classmethod
    def _from_fields(cls, fmt, version, config, arrays, where: str) -> Model:
        fmt, version, config = _scalar(fmt), _scalar(version), _scalar(config)
        if not isinstance(fmt, str) or fmt != FORMAT:
            raise ModelError(
                f"{where} is not an sclens model (format {str(fmt)!r}); pass a map an sclens tool "
                "trained, or a file written by `sl.save_model`."
            )
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise ModelError(f"{where} has no readable version.{_REDO}") from None
        if version > VERSION:
            raise ModelError(
                f"{where} was written by a newer sclens (format version {version}); upgrade sclens."
            )
        if not isinstance(config, str):
            raise ModelError(f"{where} has a corrupted config (not a JSON string).{_REDO}")
        try:
            config = json.loads(config)
        except (ValueError, RecursionError) as e:
            raise ModelError(f"{where} has a corrupted config: {e}.{_REDO}") from None
        if not isinstance(config, dict) or "method" not in config or "input" not in config:
            raise ModelError(
                f"{where} has a corrupted config (missing 'method' or 'input').{_REDO}"
            )
        if not isinstance(arrays, Mapping):
            raise ModelError(f"{where} has no arrays.{_REDO}")
        arrays = {str(k): _as_array(str(k), v, where) for k, v in arrays.items()}
        return cls(str(config["method"]), config, arrays).validate()

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path``, with ``.npz`` appended if missing (as :func:`numpy.savez`)."""
        np.savez_compressed(
            path,
            __format__=np.array(FORMAT),
            __version__=np.array(VERSION),
            __config__=np.array(json.dumps(self.config)),
            **self.arrays,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """Read a model written by :meth:`save`; no code from the file is executed.

        ``path`` as given or, if there is no such file and it lacks the suffix, ``path + '.npz'``
        (what :meth:`save` wrote). The file is refused (:class:`ModelError`) if it is not an
        sclens model, is truncated or damaged, or would unpack to more than
        :data:`MAX_MODEL_BYTES`.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            if not path.endswith(".npz") and os.path.exists(path + ".npz"):
                path += ".npz"
            else:
                also = "" if path.endswith(".npz") else f" nor {path + '.npz'!r}"
                raise FileNotFoundError(
                    errno.ENOENT, f"No sclens model file {path!r}{also}; check the path."
                )
        where = f"file {path!r}"
        data = _read_npz(path, where)
        if "__format__" not in data:
            raise ModelError(
                f"{where} is not an sclens model (no format marker); models are the .npz files "
                "written by `sl.save_model(adata, key, path)`."
            )
        arrays = {k: v for k, v in data.items() if not k.startswith("__")}
        return cls._from_fields(
            data["__format__"], data.get("__version__"), data.get("__config__"), arrays, where
        )


def _positive(value) -> bool:
    """A finite number above 0 (not a bool)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def neighbor_median(
    features: np.ndarray, ref_features: np.ndarray, ref_coords: np.ndarray, k: int
) -> np.ndarray:
    """Coordinate-wise median of the map positions of each cell's ``k`` nearest reference cells
    (euclidean, in ``features``' space), as float32."""
    from sklearn.neighbors import NearestNeighbors

    k = min(int(k), len(ref_features))
    ind = NearestNeighbors(n_neighbors=k).fit(ref_features).kneighbors(features)[1]
    return np.median(np.asarray(ref_coords, dtype=np.float32)[ind], axis=1).astype(np.float32)
