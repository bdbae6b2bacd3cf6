"""Sphinx configuration: MyST pages, numpydoc docstrings, notebooks rendered (not re-executed)."""

import socket

import sclens


def _online(host: str = "docs.python.org") -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


project = "sclens"
author = "sclens developers"
release = version = sclens.__version__
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
autodoc_typehints = "description"
numpydoc_show_class_members = False
nb_execution_mode = "off"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
}
if not _online():  # offline builds (e.g. this project's CI machine) skip cross-project links
    extensions.remove("sphinx.ext.intersphinx")
    intersphinx_mapping = {}
html_theme = "alabaster"
