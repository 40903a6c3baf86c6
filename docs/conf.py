"""Sphinx configuration for the pyrogen docs (built with warnings as errors)."""

import typing

from sphinx.util.typing import stringify_annotation

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


def _class_typehints(app, what, name, obj, options, signature, return_annotation):
    """Record a class's constructor type hints evaluated in its module.

    Sphinx records a class's hints from ``inspect.signature(cls)``, which leaves string
    annotations (``from __future__ import annotations``) unevaluated; a bare name defined in
    two modules (``MADE``: the network and the distribution) then links ambiguously.
    """
    if what != "class":
        return
    try:
        hints = typing.get_type_hints(obj.__init__)
    except Exception:  # an annotation that cannot be evaluated keeps Sphinx's record
        return
    document = getattr(app.env, "current_document", None)
    if document is not None:
        store = document.autodoc_annotations
    else:  # Sphinx < 8.2
        store = app.env.temp_data.setdefault("annotations", {})
    record = store.setdefault(name, {})
    for key, hint in hints.items():
        if key != "return":
            record[key] = stringify_annotation(hint, "smart")


def setup(app):
    app.connect("autodoc-process-signature", _class_typehints, priority=600)
