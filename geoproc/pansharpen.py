"""Pan-sharpening: multispectral bands sharpened with a panchromatic band on the same grid.

The multispectral bands must already be on the pan grid (for Landsat 8/9, the 30 m
bands loaded at the 15 m resolution of band 8: ``geoproc.load`` resamples them
when asked for that resolution). Three methods, all from the intensity
``I = sum_i w_i MS_i`` (weights summing to 1; equal by default):

* ``"brovey"``: ``MS_i * PAN / I`` (Gillespie et al. 1987, with the weighted mean as
  intensity so radiometry is kept; the original divides by the plain sum of three
  bands). Each pixel's spectrum is scaled by one factor, so its spectral angle is
  unchanged.
* ``"ihs"``: generalised (fast) IHS, ``MS_i + (PAN - I)`` (Tu et al. 2001): the
  weighted mean of the fused bands is the pan.
* ``"gs"``: Gram-Schmidt in its component-substitution form (GS mode 1, Laben &
  Brower 2000; Aiazzi et al. 2007): ``MS_i + g_i (P - I)`` with
  ``g_i = cov(MS_i, I) / var(I)`` and ``P`` the pan matched to the mean and
  standard deviation of ``I``. The statistics are global (every chunk and date,
  over the pixels where all inputs are valid), summed in float64: chunked and
  unchunked results agree to float rounding of those sums, not bit for bit.

NaN in the pan or any band makes the pixel NaN in every output band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from .enhance import lazy_call
from .errors import InvalidArgumentError, UnknownBandError
from .filters import float_values, result_attrs, spatial_dims
from .kernels.pansharpen import N_MOMENTS, brovey, component_substitution, cs_moments

__all__ = ["pansharpen", "pansharpen_array", "PANSHARPEN_METHODS"]

PANSHARPEN_METHODS = ("brovey", "ihs", "gs")


# --------------------------------------------------------------------------- dask / numpy layer


def _stack(pan: np.ndarray, bands: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    ms = np.stack([np.ascontiguousarray(b).reshape(-1) for b in bands])
    return ms, np.ascontiguousarray(pan).reshape(-1)


def _moments_block(weights: np.ndarray, pan: np.ndarray, *bands: np.ndarray) -> np.ndarray:
    ms, p = _stack(pan, bands)
    return cs_moments(ms, p, weights).reshape((1,) * pan.ndim + (-1,))


def _gs_params(moments: np.ndarray, nb: int) -> np.ndarray:
    """``[g_1 .. g_B, pan_scale, pan_offset]`` of the Gram-Schmidt fusion from :func:`cs_moments` sums."""
    n = moments[0]
    if n == 0:
        return np.full(nb + 2, np.nan)
    mean_i, mean_p = moments[1] / n, moments[3] / n
    var_i = max(moments[2] / n - mean_i * mean_i, 0.0)
    var_p = max(moments[4] / n - mean_p * mean_p, 0.0)
    means = moments[N_MOMENTS : N_MOMENTS + nb] / n
    cov = moments[N_MOMENTS + nb :] / n - means * mean_i
    gains = cov / var_i if var_i > 0 else np.ones(nb)
    scale = np.sqrt(var_i / var_p) if var_p > 0 else 0.0
    return np.array([*gains, scale, mean_i - scale * mean_p])


def _fuse_block(method: str, weights: np.ndarray, nb: int, pan: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
    """``arrays``: the ``nb`` bands, then (component substitution) the parameters of :func:`_gs_params`."""
    bands = arrays[:nb]
    ms, p = _stack(pan, bands)
    out = np.empty(ms.shape, dtype=np.float32)  # numpy's allocator: huge pages for large blocks
    if method == "brovey":
        brovey(ms, p, weights, out)
    else:
        params = np.asarray(arrays[nb], dtype=np.float64)
        component_substitution(ms, p, weights, params[:nb], float(params[nb]), float(params[nb + 1]), out)
    return out.reshape((nb, *pan.shape))


def _check_method(method: str) -> None:
    if method not in PANSHARPEN_METHODS:
        choices = ", ".join(PANSHARPEN_METHODS)
        raise InvalidArgumentError(f"unknown pan-sharpening method {method!r}; use one of {choices}")


def _weights(weights, nb: int) -> np.ndarray:
    if weights is None:
        return np.full(nb, 1.0 / nb)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (nb,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidArgumentError(
            f"weights must be {nb} finite numbers >= 0 with a positive sum (one per band), got {weights!r}"
        )
    return w / w.sum()


def pansharpen_array(bands: Sequence, pan, method: str = "brovey", weights: Sequence[float] | None = None):
    """The dask/numpy layer: float32 ``(B, *pan.shape)`` from ``B`` bands shaped like ``pan``.

    ``weights`` (normalised to sum 1; equal by default) define the intensity. Lazy for
    dask input; ``"gs"`` adds one global reduction for its statistics.
    """
    _check_method(method)
    nb = len(bands)
    if nb < 1:
        raise InvalidArgumentError("pan-sharpening needs at least one multispectral band")
    for b in bands:
        if b.shape != pan.shape:
            raise InvalidArgumentError(
                f"a band of shape {b.shape} differs from the pan's {pan.shape}; load the bands onto the pan grid first"
            )
    w = _weights(weights, nb)
    lazy = is_dask(pan) or any(is_dask(b) for b in bands)
    if lazy:
        pan = da.asarray(pan)
        bands = [da.asarray(b).rechunk(pan.chunks) for b in bands]
    if method == "brovey":
        params = None
    elif method == "ihs":
        params = np.array([*np.ones(nb), 1.0, 0.0])
    elif lazy:
        chunks = tuple((1,) * n for n in pan.numblocks) + ((N_MOMENTS + 2 * nb,),)
        moments = partial(_moments_block, w)
        parts = da.map_blocks(moments, pan, *bands, new_axis=pan.ndim, chunks=chunks, dtype=np.float64)
        params = lazy_call(_gs_params, nb + 2, np.float64, parts.sum(axis=tuple(range(pan.ndim))), nb)
    else:
        params = _gs_params(_moments_block(w, np.asarray(pan), *(np.asarray(b) for b in bands)).reshape(-1), nb)
    func = partial(_fuse_block, method, w, nb)
    extra = [] if params is None else [params]
    if not lazy:
        return func(np.asarray(pan), *(np.asarray(b) for b in bands), *extra)
    meta = np.empty((0,) * (pan.ndim + 1), np.float32)
    chunks = ((nb,), *pan.chunks)
    return da.map_blocks(func, pan, *bands, *extra, new_axis=0, chunks=chunks, dtype=np.float32, meta=meta)


# --------------------------------------------------------------------------- xarray layer


def _bands(ms: xr.Dataset | xr.DataArray, dims: tuple[str, str]) -> list[tuple[object, xr.DataArray]]:
    if isinstance(ms, xr.Dataset):
        out = [(k, v) for k, v in ms.data_vars.items() if all(d in v.dims for d in dims)]
        if not out:
            raise UnknownBandError(f"the dataset has no variable with dims {dims}; pass the multispectral bands")
        return out
    if isinstance(ms, xr.DataArray):
        spatial_dims(ms, dims)
        if "band" not in ms.dims:
            return [(ms.name, ms)]
        return [(b, ms.isel(band=i)) for i, b in enumerate(ms.band.values.tolist())]
    raise InvalidArgumentError(f"expected the multispectral bands as a Dataset or DataArray, got {type(ms).__name__}")


def _check_grid(first: xr.DataArray, pan: xr.DataArray, dims: tuple[str, str]) -> None:
    spatial_dims(pan, dims)
    for d in dims:
        same_size = first.sizes[d] == pan.sizes[d]
        same_coords = d not in first.coords or d not in pan.coords or np.array_equal(first[d].values, pan[d].values)
        if not (same_size and same_coords):
            raise InvalidArgumentError(
                f"the pan and the multispectral bands are on different grids along {d!r}; "
                "load the bands onto the pan grid first (same resolution and bounds)"
            )
    extra = set(pan.dims) - set(first.dims)
    if extra:
        raise InvalidArgumentError(f"pan has dims {sorted(extra)} that the bands lack; select them away first")


def pansharpen(
    ms: xr.Dataset | xr.DataArray,
    pan: xr.DataArray,
    method: str = "brovey",
    *,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.Dataset | xr.DataArray:
    """Sharpen multispectral bands with a panchromatic band on the same grid.

    Parameters
    ----------
    ms
        The multispectral bands, already on the pan grid: a Dataset (one variable
        per band) or a DataArray with a ``band`` dim.
    pan
        The panchromatic band; its spatial coords must equal the bands'. Other dims
        (``time``) are broadcast against the bands'.
    method
        ``"brovey"``, ``"ihs"`` (generalised IHS) or ``"gs"`` (Gram-Schmidt, GS
        mode 1); see the module docstring for the formulas.
    weights
        Share of each band in the intensity ``I`` (normalised to sum 1), in band
        order or by band name; equal by default. Weights following the pan's
        spectral response (for Landsat 8/9 band 8, mostly green and red) make ``I``
        closer to the pan.
    dims
        The spatial dims.

    Returns
    -------
    Same type as ``ms``: float32 bands on the pan grid, with the bands' dims,
    coords, attrs and CRS; NaN where the pan or any band is NaN; lazy if the inputs are.

    Examples
    --------
    >>> ms = xr.Dataset({"red": (("y", "x"), np.float32([[0.2, 0.1]])),
    ...                  "green": (("y", "x"), np.float32([[0.4, 0.3]]))})
    >>> pan = xr.DataArray(np.float32([[0.6, 0.4]]), dims=("y", "x"))
    >>> pansharpen(ms, pan, "brovey").red.values.round(3)  # red * pan / mean(red, green)
    array([[0.4, 0.2]], dtype=float32)
    >>> pansharpen(ms, pan, "ihs").red.values.round(3)  # red + (pan - mean(red, green))
    array([[0.5, 0.3]], dtype=float32)
    """
    _check_method(method)
    if not isinstance(pan, xr.DataArray):
        raise InvalidArgumentError(f"pan must be an xarray DataArray, got {type(pan).__name__}")
    bands = _bands(ms, dims)
    names = [name for name, _ in bands]
    if isinstance(weights, Mapping):
        missing = [n for n in names if n not in weights]
        if missing:
            raise InvalidArgumentError(f"weights has no entry for band {missing[0]!r}; give one per band: {names}")
        weights = [weights[n] for n in names]
    first = bands[0][1].transpose(..., *spatial_dims(bands[0][1], dims))
    _check_grid(first, pan, dims)
    pan_b = pan.drop_vars([c for c in pan.coords if c not in pan.dims]).broadcast_like(first).transpose(*first.dims)
    values = [float_values(v.transpose(*first.dims)) for _, v in bands]
    fused = pansharpen_array(values, float_values(pan_b), method, weights)
    outs = []
    for i, (name, var) in enumerate(bands):
        arr = xr.DataArray(fused[i], dims=first.dims, coords=var.transpose(*first.dims).coords, name=var.name)
        arr.attrs = result_attrs(var, pansharpen=method)
        outs.append((name, arr.transpose(*var.dims)))
    if isinstance(ms, xr.Dataset):
        out = xr.Dataset(dict(outs))
        out.attrs = dict(ms.attrs)
        return out
    if "band" not in ms.dims:
        return outs[0][1]
    res = xr.concat([a for _, a in outs], dim="band", combine_attrs="override").transpose(*ms.dims)
    res.attrs = result_attrs(ms, pansharpen=method)
    return res
