"""Sphinx configuration of the calcium-dask documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html``. Nothing is downloaded
(no intersphinx) and the notebook is rendered as committed, without running it
(``tests/test_notebook.py`` runs it). ``tests/test_docs.py`` builds the site with warnings
as errors, every Python cross-reference checked (``nitpicky``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import calcium_dask  # noqa: E402

project = "calcium-dask"
author = "calcium-dask developers"
copyright = "calcium-dask developers, BSD-3-Clause"  # noqa: A001 - Sphinx's name
release = version = calcium_dask.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_nb",
    "calcium_docs",
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path: list[str] = []

# -- checking: every Python reference must resolve ----------------------------------------
nitpicky = True
# names of other projects (no intersphinx: nothing may be downloaded while building)
_EXTERNAL = (r"(numpy|np|scipy|sp|xarray|xr|dask|da|distributed|zarr|pandas|fsspec|httpx|matplotlib|"
             r"bokeh|click|sqlalchemy|fastapi|starlette|pydantic|os|pathlib|collections|typing|"
             r"concurrent|threading|contourpy|cv2|h5py|tifffile|pynwb|dask_kubernetes|kr8s|"
             r"uvicorn|datetime|enum|types|io|logging|alembic|jinja2|numba|annotated_types)(\..+)?")
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    # dask-kubernetes's class, imported by calcium_dask.kube for type checking only
    (r"py:class", r"KubeCluster"),
]

# -- autodoc ------------------------------------------------------------------------------
autodoc_default_options = {"member-order": "bysource", "undoc-members": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- MyST and notebooks ---------------------------------------------------------------------
nb_execution_mode = "off"  # rendered as committed; tests/test_notebook.py executes it
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# -- HTML -----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"calcium-dask {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
html_last_updated_fmt = None
