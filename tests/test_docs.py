"""The documentation site builds with no warning, documents the public API, and renders in a real browser.

The site is built once per session (the ``docs_site`` fixture, tests/docs_site.py): Sphinx with ``-W``, so a
broken reference, a docstring that is not valid reStructuredText or a failing notebook cell fails here, as it
would fail CI. The browser checks open the built pages in headless Chromium (tests/browser.py); their PNGs stay
in the build folder (``<basetemp>/docs0/screenshots/``), or go where ``GEOPROC_SCREENSHOTS`` points
(``GEOPROC_SCREENSHOTS=docs/_screenshots``, which git ignores, to look at them).
"""

from __future__ import annotations

import base64
import html as htmllib
import inspect
import os
import re
import struct
import zlib
from pathlib import Path

import nbformat
import numpy as np
import pytest

import geoproc

from .browser import BrowserUnavailable, chromium_path, screenshot
from .docs_site import DOCS, ROOT

README = ROOT / "README.md"
#: the README's opening, kept exactly: the two commands that install and run geoproc and its tests
OPENING = """# geoproc

```bash
bash scripts/install.sh && .venv/bin/geoproc demo
bash scripts/install.sh test && .venv/bin/python -m pytest
```
"""


@pytest.fixture(scope="module")
def site(docs_site):
    assert docs_site.returncode == 0 and not docs_site.problems(), (
        "the documentation build failed (run `.venv/bin/python -m sphinx -W --keep-going -b html docs "
        "docs/_build/html` to see it):\n" + "\n".join(docs_site.problems() or docs_site.log.splitlines()[-30:]))
    return docs_site


def _inventory(path: Path) -> dict[str, tuple[str, str]]:
    """Sphinx's ``objects.inv``, read from its documented format: 4 header lines, then zlib text, one object a
    line: ``name domain:role priority uri display``. Returns {name: (domain:role, uri)}."""
    raw = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = raw.index(b"\n", header_end) + 1
    assert raw.startswith(b"# Sphinx inventory version 2")
    objects = {}
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+(-?\d+)\s+(\S*)\s+(.*)", line)
        if match:
            name, role, _, uri, _ = match.groups()
            objects[name] = (role, uri.replace("$", name))
    return objects


def _text(page: Path) -> str:
    """A page's text, tags dropped and whitespace collapsed."""
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


def test_site_builds_without_warnings(site):
    for page in ("index", "getting-started", "user-guide/index", "api/index", "benchmarks/index",
                 "benchmarks/RESULTS", "notebooks", "development"):
        assert (site.html / f"{page}.html").is_file(), page
    # a build with warnings as errors cannot end with zero problems and an error in its log
    assert "build finished with problems" not in site.log


def test_api_reference_documents_every_public_name(site):
    objects = _inventory(site.html / "objects.inv")
    public = [n for n in geoproc.__all__ if not n.startswith("__")]
    missing = [n for n in public if f"geoproc.{n}" not in objects]
    assert not missing, f"not in the API reference: {missing}; add them to docs/api/index.md"
    for name in public:
        obj = getattr(geoproc, name)
        role, uri = objects[f"geoproc.{name}"]
        assert role == ("py:function" if inspect.isfunction(obj) else "py:exception"
                        if isinstance(obj, type) and issubclass(obj, BaseException) else "py:class"), (name, role)
        page = _text(site.html / uri.split("#")[0])
        # the docstring's summary, as rendered: reST roles and inline markup give their text alone
        # (functions get "()"), compared without whitespace (dropping tags leaves spaces) and quotes (Sphinx curls them)
        summary = re.sub(r":(?:py:)?(?:func|meth):`~?([^`]+)`", r"\1()", inspect.getdoc(obj).split("\n\n")[0])
        summary = re.sub(r":[\w:]+:`~?([^`]+)`", r"\1", summary)
        squeeze = lambda text: re.sub(r"[\s`*'\"\u2018\u2019\u201c\u201d]", "", text)  # noqa: E731  (smart quotes)
        assert squeeze(summary) in squeeze(page), f"{name}: {summary!r} is not on its page"
        if inspect.isfunction(obj):  # numpydoc's sections became headings of the page
            assert "Examples" in page, f"{name}: no Examples on its page (public functions have them)"
            assert ("Parameters\n---" in inspect.getdoc(obj)) <= ("Parameters" in page), name
    # the geoproc.io functions a user calls directly are there too
    for name in ("geoproc.io.zarr.output_status", "geoproc.io.storage.s3_options", "geoproc.io.storage.gdal_env"):
        assert name in objects, name


def test_readme_keeps_its_opening_and_links_to_the_guide(site):
    readme = README.read_text()
    assert readme.startswith(OPENING)
    # the capability sections moved to docs/user-guide/: each page is in the site and the README links to it
    pages = sorted(p.stem for p in (DOCS / "user-guide").glob("*.md") if p.stem != "index")
    assert len(pages) >= 9
    for stem in pages:
        assert (site.html / "user-guide" / f"{stem}.html").is_file(), stem
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    assert "docs/user-guide/" in readme and len(readme.splitlines()) < 250


def _png_size(png: Path) -> tuple[int, int]:
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _pixels(png: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(png)[..., :3]


@pytest.fixture(scope="module")
def browser():
    try:
        return chromium_path()
    except BrowserUnavailable as exc:
        if os.environ.get("GEOPROC_REQUIRE_SERVICES", os.environ.get("CI", "")).lower() not in ("", "0", "false"):
            pytest.fail(f"chromium must run here (CI or GEOPROC_REQUIRE_SERVICES): {exc}")
        pytest.skip(str(exc))


def test_the_browser_reports_what_goes_wrong(tmp_path, browser):
    """The checks below rely on ``errors`` being empty: it must not be empty when a page does fail."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><h1>x</h1><img src="missing.png">'
                    '<script>console.error("drawn wrong", 3); console.log("fine"); undefinedFunction();</script>'
                    '</body></html>')
    report = screenshot(page, tmp_path / "broken.png", width=400, height=300,
                        evaluate={"h1": "document.body.innerHTML"})
    assert len(report.errors) == 3, report.errors
    assert any("console.error: drawn wrong 3" == e for e in report.errors)
    assert any("ReferenceError: undefinedFunction is not defined" in e for e in report.errors)
    assert any("ERR_FILE_NOT_FOUND" in e and e.endswith("missing.png") for e in report.errors)
    assert "log: fine" in report.messages and "<h1>x</h1>" in report.values["h1"]
    assert _png_size(tmp_path / "broken.png") == (400, 300)
    # an expected failure can be left out by pattern, and a clean page reports nothing
    assert len(screenshot(page, tmp_path / "b.png", ignore=("missing\\.png", "drawn wrong")).errors) == 1
    (tmp_path / "clean.html").write_text("<html><body><p>ok</p></body></html>")
    assert screenshot(tmp_path / "clean.html", tmp_path / "clean.png").errors == []


def _screenshot_path(site, name: str) -> Path:
    return Path(os.environ.get("GEOPROC_SCREENSHOTS") or site.root / "screenshots") / name


def test_home_page_renders_without_console_errors(site, browser):
    png = _screenshot_path(site, "home.png")
    page = screenshot(site.html / "index.html", png, width=1280, height=900, evaluate={
        "nav": "Array.from(document.querySelectorAll('.navbar-nav a')).map(a => a.textContent.trim())",
        "stylesheets": "document.styleSheets.length",
        "title": "document.querySelector('h1').textContent"})
    assert page.errors == [], page.errors
    assert page.values["title"].startswith("geoproc")
    assert {"Getting started", "User guide", "Notebooks", "API reference", "Benchmarks"} <= set(page.values["nav"])
    assert page.values["stylesheets"] >= 2  # the theme's CSS loaded (a page without it has only inline styles)
    assert _png_size(png) == (1280, 900)
    pixels = _pixels(png)
    # the page is drawn: mostly the white background, with dark text on it
    assert (pixels.min(axis=2) > 0.95).mean() > 0.5 and (pixels.max(axis=2) < 0.3).mean() > 0.005


def test_notebook_page_shows_its_figures(site, browser):
    executed = nbformat.read(site.executed / "notebooks" / "quickstart.ipynb", as_version=4)
    figures = [o["data"]["image/png"] for c in executed.cells if c.cell_type == "code"
               for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, "the executed quick start has no figure"
    # the reference: the width of each PNG the notebook drew, read from the notebook itself
    widths = [struct.unpack(">I", base64.b64decode(f)[16:20])[0] for f in figures]

    png = _screenshot_path(site, "notebook-quickstart.png")
    page = screenshot(site.html / "notebooks" / "quickstart.html", png, width=1280, height=900,
                      scroll_to=".cell_output img",
                      wait_for="Array.from(document.querySelectorAll('.cell_output img')).every(i => i.complete)",
                      evaluate={"widths": "Array.from(document.querySelectorAll('.cell_output img'))"
                                          ".map(i => i.naturalWidth)",
                                "visible": "(() => { const r = document.querySelector('.cell_output img')"
                                           ".getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0"
                                           " && r.width > 300; })()"})
    assert page.errors == [], page.errors
    assert page.values["widths"] == widths  # every figure is on the page, and loaded (0 if it failed)
    assert page.values["visible"] is True
    # the figure is in the screenshot: the NDVI map's red-yellow-green pixels, which the theme never uses
    pixels = _pixels(png)
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.3
    assert saturated.mean() > 0.05, f"only {saturated.mean():.1%} of the screenshot is coloured"
