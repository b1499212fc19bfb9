"""Quick-look PNGs of results: the picture, a colour bar with units (or a legend of classes), a title that
says what, when and where, and the map coordinates on the axes.

The colours are those of :func:`geoproc.explore` (``geoproc/_display.py``): a product looks the same in
the PNG a workflow writes and on the interactive map. Drawn with matplotlib, imported when a picture is
made (``import geoproc`` does not pay for it).
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from ._display import Style, rgba, sample, style_of, title_of
from .errors import InvalidArgumentError, OutputError

__all__ = ["quicklook", "colorize", "as_picture"]

#: the colour of missing pixels, shown as "no data" in the legend
NODATA_GREY = "#d9d9d9"


def colorize(values: np.ndarray, vmin: float = -0.2, vmax: float = 0.9) -> np.ndarray:
    """Map a 2-D float array to RGBA uint8 ``(4, H, W)`` with the index ramp; NaN becomes transparent.

    Examples
    --------
    >>> colorize(np.array([[np.nan, 0.9]]))[:, 0, :].T.tolist()
    [[0, 0, 0, 0], [26, 152, 80, 255]]
    """
    return rgba(values, Style("index", "index", "1", "RdYlGn", float(vmin), float(vmax)))


def as_picture(data) -> xr.DataArray:
    """``data`` as one picture: a 2-D DataArray, or ``(band, y, x)`` with red, green, blue for true colour."""
    if isinstance(data, xr.Dataset):
        if all(b in data.data_vars for b in ("red", "green", "blue")):
            arr = xr.concat([data[b] for b in ("red", "green", "blue")], dim="band", coords="minimal",
                            compat="override", join="override").assign_coords(band=["red", "green", "blue"])
            arr.attrs = {**data.attrs, "long_name": "true colour"}
            if data.rio.crs is not None:
                arr = arr.rio.write_crs(data.rio.crs)
        elif len(data.data_vars) == 1:
            arr = next(iter(data.data_vars.values()))
        else:
            raise InvalidArgumentError(
                f"a picture shows one variable (or red, green and blue); the Dataset has {', '.join(map(str, data.data_vars))}: "
                "pick one, e.g. ds['ndvi']"
            )
    elif isinstance(data, xr.DataArray):
        arr = data
    else:
        arr = xr.DataArray(np.asarray(data), dims=("y", "x")[-np.ndim(data):] if np.ndim(data) <= 2 else None)
    if "time" in arr.dims:
        if arr.sizes["time"] != 1:
            raise InvalidArgumentError(
                f"a picture shows one date; this result has {arr.sizes['time']}: pick one (data.isel(time=0)) "
                "or reduce them (geoproc.composite)"
            )
        arr = arr.isel(time=0)
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[0] == 3):
        raise InvalidArgumentError(
            f"a picture takes a 2-D array (or 3 bands red, green, blue), got dims {arr.dims} of shape {arr.shape}"
        )
    return arr


def _extent(arr: xr.DataArray, step: int) -> tuple[list[float] | None, str, str]:
    """imshow's extent in map coordinates, and the axis labels."""
    y, x = arr.dims[-2], arr.dims[-1]
    if x not in arr.coords or y not in arr.coords or arr.sizes[x] < 2 or arr.sizes[y] < 2:
        return None, "column", "row"
    xs, ys = arr[x].values, arr[y].values
    dx, dy = (xs[-1] - xs[0]) / (len(xs) - 1), (ys[-1] - ys[0]) / (len(ys) - 1)
    extent = [xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2]
    crs = arr.rio.crs if hasattr(arr, "rio") else None
    if crs is None:
        return extent, x, y
    from pyproj import CRS

    info = CRS.from_user_input(crs)
    code = info.to_string() if info.to_epsg() else info.name
    unit = info.axis_info[0].unit_name if info.axis_info else ""
    unit = {"metre": "m", "meter": "m", "degree": "°"}.get(unit, unit)
    if info.is_geographic:
        return extent, f"longitude [{unit}] ({code})", f"latitude [{unit}] ({code})"
    return extent, f"easting [{unit}] ({code})", f"northing [{unit}] ({code})"


def quicklook(
    values,
    path: str | os.PathLike,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    kind: str | None = None,
    title: str | None = None,
    max_size: int = 1024,
) -> str:
    """Write a PNG of a result: colours, a colour bar with units (a legend for classes), a title and coordinates.

    ``values`` may be lazy (xarray/dask): only the pixels shown (strided to at most
    ``max_size`` a side) are read.

    Parameters
    ----------
    values
        A 2-D DataArray (one date of a series, a composite, an index, a mask, classes), a
        Dataset with ``red``/``green``/``blue`` (true colour) or one variable, or a numpy array.
    path
        Where the PNG goes.
    vmin, vmax
        The range of the colours; default by product kind (``geoproc/_display.py``):
        -0.2..0.9 for vegetation indices, -1..1 for other indices, the 2nd..98th
        percentile otherwise.
    kind
        ``"index"``, ``"class"``, ``"rgb"`` or ``"continuous"``; guessed from the
        data's dtype, name and attributes when None.
    title
        Default: the product's ``long_name``, its acquisition span
        (``input_start``/``input_end``) and its centre and size.
    max_size
        Pixels a side of the picture at most.

    Returns
    -------
    str
        ``path``. The title is also stored in the PNG's ``Title`` text chunk.

    Examples
    --------
    >>> ndvi_composite = np.linspace(-0.2, 0.9, 64 * 96, dtype="float32").reshape(64, 96)
    >>> quicklook(ndvi_composite, "ndvi.png")
    'ndvi.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from . import __version__

    arr = as_picture(values)
    small, step = sample(arr, max_size)
    pixels = np.asarray(small.values, dtype=np.float64)
    style = style_of(arr, pixels, kind)
    if vmin is not None or vmax is not None:
        style = Style(style.kind, style.label, style.units, style.cmap or "viridis",
                      style.vmin if vmin is None else float(vmin), style.vmax if vmax is None else float(vmax),
                      style.classes, style.nodata)
    image = np.moveaxis(rgba(pixels, style), 0, -1)
    heading = title or title_of(arr, style)
    extent, xlabel, ylabel = _extent(small, step)

    h, w = image.shape[:2]
    aspect = h / w
    fig = Figure(figsize=(8.0, min(10.0, max(3.5, 6.4 * aspect + 1.2))), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_facecolor(NODATA_GREY)
    ax.imshow(image, extent=extent, interpolation="nearest", origin="upper")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=8)
    ax.set_title(heading, fontsize=10, wrap=True)
    legend = [Patch(facecolor=NODATA_GREY, edgecolor="0.5", label="no data")]
    if style.kind in ("index", "continuous"):
        cmap = LinearSegmentedColormap.from_list(style.cmap or "ramp", style.ramp() / 255.0)
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(ScalarMappable(Normalize(style.vmin, style.vmax), cmap), ax=ax, shrink=0.85,
                           extend="both")
        bar.set_label(f"{style.label} [{style.units}]" if style.units else style.label)
    elif style.kind == "class":
        legend = [Patch(facecolor=np.asarray(colour) / 255.0, edgecolor="0.5", label=name)
                  for name, colour in style.classes.values()] + legend
    else:
        ax.text(0.01, 0.01, "true colour: red, green, blue stretched together from their 2nd to 98th percentile",
                transform=ax.transAxes, fontsize=7, va="bottom", color="white",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 2, "linewidth": 0})
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0 if style.kind == "class" else 0.0, 1.0),
              fontsize=8, framealpha=0.8, title=style.label if style.kind == "class" else None)
    path = os.fspath(path)
    try:
        fig.savefig(path, format="png", metadata={"Title": heading.replace("\n", " · "), "Software": f"geoproc {__version__}",
                                                   "Description": f"{style.kind}: {style.label}"})
    except OSError as exc:
        raise OutputError(f"cannot write quick-look {path}: {exc.strerror or exc}; choose a writable location") from None
    return path
