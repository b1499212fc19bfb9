"""Sphinx configuration of geoproc's documentation site.

Build it with ``.venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the tests build it
the same way, warnings as errors, in tests/test_docs.py). The notebooks in ``notebooks/`` (``docs/notebooks`` is a
link to that folder) are executed by myst-nb during the build, each in a temporary folder; the executed copies
land in ``<output>/../jupyter_execute/notebooks/``, where tests/test_notebooks.py checks them.
"""

from __future__ import annotations

from pathlib import Path

import geoproc

project = "geoproc"
author = "geoproc contributors"
copyright = "geoproc contributors, Apache-2.0"  # noqa: A001  (Sphinx's name)
release = version = geoproc.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks, executed
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",  # the docstrings are numpydoc
]

exclude_patterns = ["_build", "_screenshots", "**/.ipynb_checkpoints"]
# .rst first: autosummary writes its generated API pages (docs/api/generated/, not committed) in that format
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# --- MyST: headings get anchors so pages can link to a section ---
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# --- notebooks: executed during every build, in a temporary folder, a failing cell fails the build ---
nb_execution_mode = "force"
nb_execution_in_temp = True
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = True

# --- API reference from the numpydoc docstrings ---
# autosummary writes a page per name into api/generated/ (ignored by git). A page left there by an earlier build
# for a name no longer listed would fail this one, so those are removed; the listed ones stay, so that builds
# running at the same time in one checkout never delete each other's pages.


def _remove_stale_api_pages(folder: Path = Path(__file__).parent / "api") -> None:
    listed, module, in_block = set(), "", False
    for line in (folder / "index.md").read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::", 1)[1].strip()
        elif line.startswith(".. autosummary::"):
            in_block = True
        elif in_block and line.startswith("   ") and not line.strip().startswith(":"):
            listed.add(f"{module}.{line.strip()}.rst" if module else f"{line.strip()}.rst")
        elif in_block and line.strip() and not line.startswith("   "):
            in_block = False
    for page in (folder / "generated").glob("*.rst"):
        if page.name not in listed:
            page.unlink(missing_ok=True)


_remove_stale_api_pages()
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# --- HTML: everything is served from the build folder; nothing is fetched from elsewhere ---
html_theme = "pydata_sphinx_theme"
html_title = f"geoproc {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
# keep quotes and dashes as typed: "--resume" must not become an en dash in prose
smartquotes = False
# the theme's colour mode; without one its script logs "Got invalid theme mode" as a console error on every page
html_context = {"default_mode": "auto"}
