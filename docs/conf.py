"""Sphinx configuration: MyST pages, numpydoc docstrings, notebooks rendered (not re-executed)."""

import sclens

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
html_theme = "alabaster"
