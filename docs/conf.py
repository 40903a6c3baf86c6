"""Sphinx configuration for the pyrogen docs (built with warnings as errors)."""

import pyrogen

project = "pyrogen"
author = "the pyrogen developers"
release = version = pyrogen.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_custom_sections = [("Shapes", "params_style"), ("Cost", "notes_style")]
exclude_patterns = ["_build"]
html_theme = "alabaster"
# Annotations are strings (``from __future__ import annotations``); a bare name that two
# modules define resolves to the one meant here.
autodoc_type_aliases = {"MADE": "pyrogen.nn.networks.MADE"}
