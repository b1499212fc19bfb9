"""Pictures people look at: the quick-look PNG (colour bar with units, title, coordinates) and explore()'s web map,
rendered in a real headless Chromium (tests/browser.py) with no network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from PIL import Image
from pyproj import Transformer

import geoproc
from geoproc._display import SCL_COLOURS, rgba, style_of
from geoproc.errors import InvalidArgumentError
from geoproc.explore import LEAFLET_CSS, LEAFLET_JS
from geoproc.quicklook import NODATA_GREY, quicklook

X0, Y0, RES = 700_000.0, 5_000_000.0, 20.0
GREEN = (26, 152, 80)  # the index ramp's top: NDVI >= 0.9
LEAFLET = Path("/usr/share/javascript/leaflet")  # Debian's libjs-leaflet (scripts/install.sh test)


def _pictures(tmp_path: Path) -> Path:
    """Where the rendered PNGs go: ``$GEOPROC_PICTURES`` (to keep them for a person to look at), else tmp."""
    folder = Path(os.environ.get("GEOPROC_PICTURES") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ndvi(h=120, w=200):
    """Left half NDVI 0.9 (the ramp's green), right half missing."""
    values = np.full((h, w), 0.9, dtype="float32")
    values[:, w // 2:] = np.nan
    arr = xr.DataArray(values, dims=("y", "x"), name="NDVI",
                       coords={"y": Y0 - RES * np.arange(h) - RES / 2, "x": X0 + RES * np.arange(w) + RES / 2})
    arr.attrs = {"long_name": "Normalized Difference Vegetation Index", "formula": "(N - R)/(N + R)",
                 "input_start": "2024-05-02T10:00:00Z", "input_end": "2024-05-30T10:00:00Z", "nodata": np.nan}
    return arr.rio.write_crs(32633)


def _pixels(png) -> np.ndarray:
    return np.asarray(Image.open(png).convert("RGB"))


def _count(image: np.ndarray, colour, tol=2) -> int:
    return int((np.abs(image.astype(int) - np.asarray(colour)).max(axis=-1) <= tol).sum())


def test_styles_by_product_kind():
    assert style_of(_ndvi()).kind == "index"
    scl = xr.DataArray(np.array([[4, 6], [9, 0]], "uint8"), dims=("y", "x"), name="scl")
    style = style_of(scl, scl.values.astype(float))
    assert style.kind == "class" and style.classes[6] == ("water", SCL_COLOURS[6])
    rgb = xr.DataArray(np.random.default_rng(0).random((3, 4, 4)), dims=("band", "y", "x"),
                       coords={"band": ["red", "green", "blue"]})
    assert style_of(rgb, rgb.values).kind == "rgb"
    assert style_of(xr.DataArray(np.arange(4.0).reshape(2, 2), dims=("y", "x"), name="dem")).kind == "continuous"
    # colours: the ramp's ends, a class's fixed colour, transparent missing pixels
    out = rgba(np.array([[0.9, -0.2, np.nan]]), style_of(_ndvi()))
    assert out[:, 0, 0].tolist() == [*GREEN, 255] and out[:, 0, 1].tolist() == [215, 48, 39, 255]
    assert out[3, 0, 2] == 0
    assert rgba(scl.values.astype(float), style)[:3, 0, 1].tolist() == list(SCL_COLOURS[6])


def test_quicklook_has_title_colour_bar_and_coordinates(tmp_path):
    arr = _ndvi()
    png = quicklook(arr, _pictures(tmp_path) / "quicklook_ndvi.png")
    title = Image.open(png).text["Title"]
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(X0 + 100 * RES, Y0 - 60 * RES)
    assert title.startswith("Normalized Difference Vegetation Index · 2024-05-02 to 2024-05-30 · ")
    assert f"{lat:.3f}°N {lon:.3f}°E, 4 x 2.4 km" in title
    image = _pixels(png)
    # the product's green and the no-data grey fill comparable areas (left and right halves) ...
    green, grey = _count(image, GREEN), _count(image, tuple(int(NODATA_GREY[i:i + 2], 16) for i in (1, 3, 5)))
    assert green > 20_000 and 0.6 < green / grey < 1.6
    # ... and the colour bar holds the whole ramp: its red end appears only there
    assert 100 < _count(image, (215, 48, 39), tol=6) < 5_000


def test_quicklook_classes_get_a_legend_and_refuse_several_dates(tmp_path):
    scl = xr.DataArray(np.repeat(np.array([[4, 6, 9, 3]], "uint8"), 50, axis=0).repeat(50, axis=1), dims=("y", "x"),
                       name="scl", coords={"y": Y0 - RES * np.arange(50), "x": X0 + RES * np.arange(200)})
    png = quicklook(scl.rio.write_crs(32633), _pictures(tmp_path) / "quicklook_scl.png")
    image = _pixels(png)
    for value in (4, 6, 3):
        assert _count(image, SCL_COLOURS[value]) > 1000, value  # each class in the picture (and its legend patch)
    series = _ndvi().expand_dims(time=np.array(["2024-05-01", "2024-05-11"], "datetime64[ns]"))
    with pytest.raises(InvalidArgumentError, match="has 2: pick one"):
        quicklook(series, tmp_path / "x.png")


def _required() -> bool:
    return os.environ.get("GEOPROC_REQUIRE_SERVICES", os.environ.get("CI", "")).lower() not in ("", "0", "false")


@pytest.fixture(scope="module")
def browser():
    """Chromium and Debian's Leaflet (scripts/install.sh test): skipped where missing, failed under CI."""
    from tests.browser import BrowserUnavailable, chromium_path

    try:
        chromium_path()
        if not (LEAFLET / "leaflet.js").exists():
            raise BrowserUnavailable("Debian's libjs-leaflet is missing: bash scripts/install.sh test")
    except BrowserUnavailable as exc:
        if _required():
            pytest.fail(f"chromium and Leaflet must be here (CI or GEOPROC_REQUIRE_SERVICES): {exc}")
        pytest.skip(str(exc))


def _offline(html_path: Path) -> Path:
    """The saved map with Leaflet from Debian's package instead of the CDN (no network in the tests)."""
    text = html_path.read_text()
    assert LEAFLET_JS in text and LEAFLET_CSS in text
    assert text.count("<script src=") == 1, "the map loads only Leaflet"
    text = text.replace(LEAFLET_JS, (LEAFLET / "leaflet.js").as_uri()).replace(LEAFLET_CSS, (LEAFLET / "leaflet.css").as_uri())
    html_path.write_text(text)
    return html_path


def test_explore_map_in_a_browser(tmp_path, browser):
    from tests.browser import screenshot

    arr = _ndvi()
    m = arr.geoproc.explore(basemap=None, opacity=1.0)
    m.save(tmp_path / "map.html")
    page = _offline(tmp_path / "map.html")
    overlay = "document.querySelector('img.leaflet-image-layer')"
    report = screenshot(page, _pictures(tmp_path) / "explore_ndvi.png", width=900, height=500,
                        wait_for=f"{overlay} && {overlay}.complete && {overlay}.naturalWidth > 0",
                        evaluate={
                            "overlays": "document.querySelectorAll('img.leaflet-image-layer').length",
                            "rect": f"(() => {{ const r = {overlay}.getBoundingClientRect(); "
                                    "return [r.left, r.top, r.right, r.bottom]; })()",
                            "bounds": "(() => { const o = Object.values(window).find(v => v instanceof L.ImageOverlay);"
                                      " const b = o.getBounds(); return [b.getSouth(), b.getWest(), b.getNorth(), b.getEast()]; })()",
                            "legend": "document.querySelector('.geoproc-legend').innerText",
                        })
    assert report.errors == [], report.errors
    assert report.values["overlays"] == 1
    # the overlay covers the product's footprint (independently: its corners in degrees)
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    lons, lats = to_lonlat.transform([X0, X0 + 200 * RES, X0, X0 + 200 * RES], [Y0, Y0, Y0 - 120 * RES, Y0 - 120 * RES])
    south, west, north, east = report.values["bounds"]
    assert south == pytest.approx(min(lats), abs=2e-4) and north == pytest.approx(max(lats), abs=2e-4)
    assert west == pytest.approx(min(lons), abs=2e-4) and east == pytest.approx(max(lons), abs=2e-4)
    assert "Normalized Difference Vegetation Index" in report.values["legend"]
    assert "2024-05-02 to 2024-05-30" in report.values["legend"]
    # on screen: the left half is the ramp's green, the right half (no data) shows the map behind it
    left, top, right, bottom = (int(v) for v in report.values["rect"])
    image = _pixels(report.png)
    mid = (top + bottom) // 2
    assert tuple(image[mid, left + (right - left) // 4]) == pytest.approx(GREEN, abs=3)
    behind = tuple(image[mid, right + 5]) if right + 5 < image.shape[1] else tuple(image[top - 5, left])
    assert tuple(image[mid, left + 3 * (right - left) // 4]) == pytest.approx(behind, abs=3)


def test_explore_true_colour_classes_and_refusals(tmp_path, browser):
    from tests.browser import screenshot

    rng = np.random.default_rng(4)
    base = _ndvi().fillna(0.1)
    ds = xr.Dataset({b: base * f + float(rng.random()) for b, f in (("red", 0.3), ("green", 0.5), ("blue", 0.2))})
    m = geoproc.explore(ds, basemap=None)
    m.save(tmp_path / "rgb.html")
    report = screenshot(_offline(tmp_path / "rgb.html"),
                        _pictures(tmp_path) / "explore_rgb.png", width=700, height=450,
                        wait_for="document.querySelector('img.leaflet-image-layer')",
                        evaluate={"legend": "document.querySelector('.geoproc-legend').innerText"})
    assert report.errors == [] and "true colour" in report.values["legend"]
    with pytest.raises(InvalidArgumentError, match="no CRS"):
        geoproc.explore(xr.DataArray(np.zeros((3, 3)), dims=("y", "x")))
    with pytest.raises(InvalidArgumentError, match="basemap must be one of"):
        geoproc.explore(_ndvi(), basemap="Google")
    html = geoproc.explore(_ndvi(), basemap="OpenStreetMap").get_root().render()
    assert "tile.openstreetmap.org" in html  # with network, the basemap is there
    scl = xr.DataArray(np.array([[4, 6], [9, 0]], "uint8"), dims=("y", "x"), name="scl",
                       coords={"y": [Y0 - 10, Y0 - 30], "x": [X0 + 10, X0 + 30]}).rio.write_crs(32633)
    legend = geoproc.explore(scl, basemap=None).get_root().render()
    assert all(name in legend for name in ("vegetation", "water", "cloud, high probability"))
    assert "rgb(0,0,255)" in legend  # water in ESA's blue
