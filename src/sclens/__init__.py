"""sclens: neural maps of single cells for scanpy."""

from __future__ import annotations

__version__ = "0.1.0"

from . import datasets, pl, tl
from ._core.model import Model, ModelError
from ._core.threads import get_num_threads, set_num_threads
from ._io import load_model, save_model

__all__ = [
    "tl",
    "pl",
    "datasets",
    "save_model",
    "load_model",
    "set_num_threads",
    "get_num_threads",
    "Model",
    "ModelError",
    "__version__",
]
