"""``ds.geoproc.explore()``: a product on an interactive web map, in a notebook or as an HTML file.

Why folium (Leaflet) and not lonboard: a raster product is shown as one picture laid on the map, which
Leaflet does natively (an image overlay) and folium writes as a self-contained HTML page that any
notebook renders and any browser opens, with no kernel behind it. folium brings jinja2, branca and
requests (about 1 MB installed); a product shown at 1,024 pixels a side takes 0.6-1.2 s to map here, most of it
encoding the PNG that the page inlines.
lonboard is built for millions of vector features on the GPU (deck.gl): it needs pyarrow, geoarrow
and anywidget (pyarrow alone is tens of MB), draws rasters only as tiles or bitmaps through its widget, and its maps
need a live Jupyter kernel to appear. For pictures of rasters, folium is the lighter and faster fit.
It is an optional extra (``pip install geoproc[map]``), imported when a map is made.

The picture is the product strided to at most ``max_size`` pixels a side (only those pixels are read),
coloured as the quick-look PNG is (``geoproc/_display.py``: index, class, true colour or continuous, with
missing pixels transparent), and warped to Web Mercator so it sits exactly where it belongs on the
basemap. A legend (a colour ramp with its range and units, or the classes) is plain HTML: the page
loads nothing but Leaflet and, when asked for, the basemap tiles.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import xarray as xr

from ._display import rgba, sample, style_of, title_of
from .errors import InvalidArgumentError
from .quicklook import as_picture

__all__ = ["explore", "LEAFLET_JS", "LEAFLET_CSS"]

#: Leaflet, as folium 0.20 loads it (only Leaflet: the jQuery, Bootstrap and marker assets folium adds by
#: default are not needed for a picture on a map)
LEAFLET_JS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"
LEAFLET_CSS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"
_BASEMAPS = ("OpenStreetMap", "CartoDB positron", "CartoDB dark_matter")


def _png(image: np.ndarray) -> str:
    """RGBA ``(4, H, W)`` as a ``data:image/png`` URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(image, 0, -1), mode="RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _to_web_mercator(image: np.ndarray, small: xr.DataArray) -> tuple[np.ndarray, list[list[float]]]:
    """Warp the RGBA picture of ``small`` to EPSG:3857; its bounds as ``[[south, west], [north, east]]``."""
    import rasterio.warp
    from pyproj import Transformer
    from rasterio.enums import Resampling

    crs = small.rio.crs
    transform = small.rio.transform(recalc=True)
    bands, height, width = image.shape
    dst_transform, dst_w, dst_h = rasterio.warp.calculate_default_transform(
        crs, "EPSG:3857", width, height, *small.rio.bounds(recalc=True))
    out = np.zeros((bands, dst_h, dst_w), dtype=np.uint8)
    rasterio.warp.reproject(image, out, src_transform=transform, src_crs=crs, dst_transform=dst_transform,
                            dst_crs="EPSG:3857", resampling=Resampling.nearest, src_nodata=None, dst_nodata=0,
                            tolerance=0)  # exact transforms: the approximate one shifts edges by a pixel in steps
    west, north = dst_transform.c, dst_transform.f
    east, south = west + dst_transform.a * dst_w, north + dst_transform.e * dst_h
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    (lon0, lon1), (lat0, lat1) = to_lonlat.transform([west, east], [south, north])
    return out, [[float(lat0), float(lon0)], [float(lat1), float(lon1)]]


def _legend(style, heading: str) -> str:
    """The legend's HTML (no external asset)."""
    rows = [f"<div style='font-weight:bold;margin-bottom:4px'>{html.escape(heading).replace(chr(10), '<br>')}</div>"]
    if style.kind in ("index", "continuous"):
        stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in style.ramp())
        unit = f" [{html.escape(str(style.units))}]" if style.units else ""
        rows.append(f"<div>{html.escape(style.label)}{unit}</div>")
        rows.append(f"<div class='geoproc-ramp' style='height:12px;width:220px;background:linear-gradient(to right, {stops})'></div>")
        rows.append(f"<div style='display:flex;justify-content:space-between;width:220px'><span>{style.vmin:.3g}</span>"
                    f"<span>{style.vmax:.3g}</span></div>")
    elif style.kind == "class":
        for name, (r, g, b) in style.classes.values():
            rows.append(f"<div><span style='display:inline-block;width:12px;height:12px;background:rgb({r},{g},{b});"
                        f"border:1px solid #777;margin-right:6px'></span>{html.escape(name)}</div>")
    else:
        rows.append("<div>true colour (red, green, blue), 2nd-98th percentile stretch</div>")
    rows.append("<div style='margin-top:4px;color:#555'>no data: transparent</div>")
    return "".join(rows)


def _legend_control(folium, inner: str):
    """A Leaflet control in the map's bottom-right corner holding ``inner`` (HTML)."""
    from branca.element import MacroElement
    from jinja2 import Template

    class Legend(MacroElement):
        _template = Template(
            "{% macro script(this, kwargs) %}"
            "var {{ this.get_name() }} = L.control({position: 'bottomright'});"
            "{{ this.get_name() }}.onAdd = function () {"
            " var div = L.DomUtil.create('div', 'geoproc-legend');"
            " div.style.cssText = 'background:rgba(255,255,255,0.9);padding:6px 8px;border-radius:4px;"
            "font:12px sans-serif;box-shadow:0 1px 4px rgba(0,0,0,0.3)';"
            " div.innerHTML = {{ this.inner|tojson }}; return div; };"
            "{{ this.get_name() }}.addTo({{ this._parent.get_name() }});"
            "{% endmacro %}"
        )

        def __init__(self, inner: str):
            super().__init__()
            self._name = "GeoprocLegend"
            self.inner = inner

    return Legend(inner)


def explore(
    data: xr.DataArray | xr.Dataset,
    *,
    kind: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    basemap: str | None = "OpenStreetMap",
    opacity: float = 0.85,
    max_size: int = 1024,
    width: str | int = "100%",
    height: str | int = 500,
):
    """Show a product on an interactive web map (folium/Leaflet): in a notebook, or saved as HTML.

    Parameters
    ----------
    data
        A 2-D DataArray with a CRS (an index, a composite, a mask, classes; a
        single date of a series), or a Dataset with ``red``, ``green``, ``blue``
        (true colour) or a single variable.
    kind
        ``"index"``, ``"class"``, ``"rgb"`` or ``"continuous"``: the colour map
        (guessed from the dtype, name and attributes when None; see
        :func:`geoproc.quicklook.quicklook`).
    vmin, vmax
        The range of the colour ramp (default by kind).
    basemap
        ``"OpenStreetMap"``, ``"CartoDB positron"``, ``"CartoDB dark_matter"``,
        a tile URL template, or None for no basemap (offline).
    opacity
        Of the product over the basemap.
    max_size
        Pixels a side of the picture at most (the product is strided; only
        those pixels are read).
    width, height
        Of the map in the page.

    Returns
    -------
    folium.Map
        Shown by the notebook; ``.save("map.html")`` writes a page. The product
        is the map's image overlay (``img.leaflet-image-layer``).

    Raises
    ------
    InvalidArgumentError
        The data has no CRS, several dates, or more than one variable to show.

    Examples
    --------
    >>> ds = geoproc.load(geoproc.search("geoproc-demo/archive/catalog.json"), ["red", "nir"], resolution=40)
    >>> m = geoproc.composite(geoproc.ndvi(ds), "median").geoproc.explore(basemap=None)
    >>> m.save("ndvi_map.html")
    >>> "L.imageOverlay(" in open("ndvi_map.html").read()
    True
    """
    try:
        import folium
    except ImportError:
        raise InvalidArgumentError(
            "explore() draws with folium, which is not installed: pip install 'geoproc[map]' (or pip install folium)"
        ) from None
    arr = as_picture(data)
    if arr.rio.crs is None:
        raise InvalidArgumentError(
            "explore(): the product has no CRS to place it by; set it with data.rio.write_crs('EPSG:32633')"
        )
    small, _ = sample(arr, max_size)
    pixels = np.asarray(small.values, dtype=np.float64)
    style = style_of(arr, pixels, kind)
    if vmin is not None or vmax is not None:
        from dataclasses import replace

        style = replace(style, cmap=style.cmap or "viridis", vmin=style.vmin if vmin is None else float(vmin),
                        vmax=style.vmax if vmax is None else float(vmax))
    picture, bounds = _to_web_mercator(rgba(pixels, style), small)
    (south, west), (north, east) = bounds
    tiles = None
    if basemap is not None:
        tiles = basemap
        if "{" not in basemap and basemap not in _BASEMAPS:
            raise InvalidArgumentError(f"basemap must be one of {', '.join(_BASEMAPS)}, a tile URL or None, got {basemap!r}")
    m = folium.Map(location=[(south + north) / 2, (west + east) / 2], tiles=tiles, width=width, height=height,
                   control_scale=True, attr="basemap" if tiles and "{" in tiles else None)
    m.default_js = [("leaflet", LEAFLET_JS)]
    m.default_css = [("leaflet_css", LEAFLET_CSS)]
    heading = title_of(arr, style)
    folium.raster_layers.ImageOverlay(
        image=_png(picture), bounds=bounds, opacity=opacity, name=style.label, interactive=False, zindex=1,
    ).add_to(m)
    m.fit_bounds(bounds)
    _legend_control(folium, _legend(style, heading)).add_to(m)
    return m
