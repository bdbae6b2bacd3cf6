"""The stored model: a JSON config plus plain arrays; never pickle.

In ``adata.uns[key]['model']`` it is ``{'format', 'version', 'config' (JSON str), 'arrays'}``, which
``write_h5ad``/``read_h5ad`` round-trip; on disk it is an ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import InputLayer
from .networks import Decoder, Network

__all__ = ["Model", "ModelError"]

FORMAT = "sclens-model"
VERSION = 1


class ModelError(ValueError):
    """A stored model is missing, foreign or corrupted."""


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
        net = Network(
            cfg["n_features"],
            cfg["hidden"],
            cfg["n_components"],
            cfg.get("n_classes", 0),
            cfg.get("n_clusters", 0),
        )
        return self._load_weights(net, "net.", "network").to(device).eval()

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

    def decoder(self, device: str | torch.device = "cpu") -> Decoder:
        cfg = self.config.get("decoder")
        if cfg is None:
            raise ModelError(f"the {self.method!r} model has no decoder")
        try:
            dec = Decoder(
                cfg["n_components"], cfg["n_out"], cfg["hidden"], cfg["n_blocks"], cfg["likelihood"]
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(
                f"the stored {self.method!r} decoder config is unreadable ({e!r})."
            ) from None
        return self._load_weights(dec, "dec.", "decoder").to(device).eval()

    def _load_weights(self, module: torch.nn.Module, prefix: str, what: str) -> torch.nn.Module:
        """Fill ``module`` from the arrays named ``prefix + parameter``; ModelError on mismatch."""
        state = {
            k[len(prefix) :]: torch.as_tensor(np.asarray(v))
            for k, v in self.arrays.items()
            if k.startswith(prefix)
        }
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelError(
                f"the stored {self.method!r} {what} does not match its config: {e}"
            ) from None
        return module

    def transform(self, X, device: str | torch.device = "cpu") -> np.ndarray:
        """Coordinates of an input matrix already aligned to :attr:`input_layer`."""
        return self.network(device).transform(self.input_layer.transform(X))

    def validate(self) -> Model:
        """Check the pieces fit together, raising :class:`ModelError` otherwise."""
        try:
            inp = self.input_layer
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"corrupted sclens model: input layer unreadable ({e!r}).") from None
        if inp.loadings is not None and inp.loadings.shape[0] != inp.n_in:
            raise ModelError("corrupted sclens model: input loadings and mean disagree in size.")
        if inp.var_names is not None and len(inp.var_names) != inp.n_in:
            raise ModelError("corrupted sclens model: gene names and input size disagree.")
        if "network" in self.config:
            net = self.network()
            if net.config["n_features"] != inp.n_features:
                raise ModelError(
                    f"corrupted sclens model: network reads {net.config['n_features']} features, "
                    f"input layer gives {inp.n_features}."
                )
        if "decoder" in self.config:
            dec = self.decoder()
            if dec.config["n_out"] != inp.n_in:
                raise ModelError(
                    f"corrupted sclens model: decoder writes {dec.config['n_out']} genes, "
                    f"input layer reads {inp.n_in}."
                )
        return self

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
            raise ModelError(f"{where} is not an sclens model (no 'format' entry).")
        return cls._from_fields(
            stored["format"],
            stored.get("version"),
            stored.get("config"),
            stored.get("arrays"),
            where,
        )

    @classmethod
    def _from_fields(cls, fmt, version, config, arrays, where: str) -> Model:
        if str(fmt) != FORMAT:
            raise ModelError(f"{where} is not an sclens model (format {str(fmt)!r}).")
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise ModelError(f"{where} has no readable version.") from None
        if version > VERSION:
            raise ModelError(
                f"{where} was written by a newer sclens (format version {version}); upgrade sclens."
            )
        try:
            config = json.loads(str(config))
        except json.JSONDecodeError as e:
            raise ModelError(f"{where} has a corrupted config: {e}.") from None
        if not isinstance(config, dict) or "method" not in config or "input" not in config:
            raise ModelError(f"{where} has a corrupted config (missing 'method' or 'input').")
        if not isinstance(arrays, Mapping):
            raise ModelError(f"{where} has no arrays.")
        arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
        for k, v in arrays.items():
            if v.dtype == object:
                arrays[k] = v.astype(str)
        return cls(config["method"], config, arrays).validate()

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        np.savez_compressed(
            path,
            __format__=np.array(FORMAT),
            __version__=np.array(VERSION),
            __config__=np.array(json.dumps(self.config)),
            **self.arrays,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        where = f"file {os.fspath(path)!r}"
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError) as e:
            raise ModelError(f"{where} is not a readable sclens model file ({e}).") from None
        if "__format__" not in data:
            raise ModelError(f"{where} is not an sclens model (no format marker).")
        arrays = {k: v for k, v in data.items() if not k.startswith("__")}
        return cls._from_fields(
            data["__format__"], data.get("__version__"), data.get("__config__"), arrays, where
        )
