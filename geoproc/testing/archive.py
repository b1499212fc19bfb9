"""A synthetic Sentinel-2 L2A-like archive with known ground truth.

One "world" is simulated on a 10 m grid in EPSG:32633 (land cover and clouds on
20 m cells, reflectance per 10 m pixel), then sampled into tiles: adjacent
tiles in UTM zone 33 that overlap (their shared pixels are identical), and,
when ``tiles >= 2``, one tile in UTM zone 34 that overlaps the last zone-33 tile
across the zone boundary at 18 deg E, so a loader must reproject and mosaic.

Per item, one tiled, deflate-compressed Cloud-Optimized GeoTIFF per band
(10 m: B02 blue, B03 green, B04 red, B08 nir; 20 m: B11 swir16, B12 swir22,
SCL), uint16 reflectance with ``raster:bands`` scale 0.0001, offset -0.1 and
nodata 0, SCL coded from the truth (3 shadow, 8/9 cloud, 10 cirrus, 4
vegetation, 5 bare, 6 water, 0 no data). Beside each item, ``truth.tif`` on the
item's 10 m grid: band 1 land cover (SCL codes 4/5/6), band 2 cloud state
(:data:`CLOUD_STATES`, 255 where the scene has no data). ``truth.json`` at the
root records the change event (vegetation cleared to bare soil at a known date
in a known patch), dates and parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import pystac
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile

from ..grid import GridSpec, transform_bounds

__all__ = ["generate_archive", "Archive", "BANDS", "CLOUD_STATES", "LAND_CLASSES", "SCALE", "OFFSET"]

SCALE, OFFSET = 0.0001, -0.1
#: asset key -> (common name, centre wavelength in micrometres, resolution in m)
BANDS = {
    "B02": ("blue", 0.490, 10),
    "B03": ("green", 0.560, 10),
    "B04": ("red", 0.665, 10),
    "B08": ("nir", 0.842, 10),
    "B11": ("swir16", 1.610, 20),
    "B12": ("swir22", 2.190, 20),
}
#: land-cover class codes (SCL values) and their names
LAND_CLASSES = {4: "vegetation", 5: "bare", 6: "water"}
#: cloud-state codes of truth band 2
CLOUD_STATES = {0: "clear", 1: "cloud", 2: "shadow", 3: "cirrus", 255: "no_data"}

# surface reflectance per class, in BANDS order
_SPECTRA = {
    4: np.array([0.035, 0.065, 0.040, 0.380, 0.190, 0.090]),
    5: np.array([0.100, 0.130, 0.170, 0.240, 0.310, 0.270]),
    6: np.array([0.070, 0.060, 0.040, 0.020, 0.012, 0.008]),
}
_CLOUD = np.array([0.52, 0.50, 0.49, 0.52, 0.40, 0.30])
_CIRRUS_HAZE = 0.06
_SHADOW_FACTOR = 0.4
_SHADOW_SHIFT = (5, -7)  # (rows, cols) of 20 m cells from cloud to its shadow
_COLLECTION = "sentinel-2-l2a-synthetic"
_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]


@dataclass(frozen=True)
class Archive:
    """What :func:`generate_archive` wrote.

    Attributes
    ----------
    root
        The archive folder.
    catalog
        Path of ``catalog.json``.
    item_ids
        All item ids, by date then tile.
    dates
        Acquisition datetimes (UTC), one per date.
    tiles
        Per tile: ``(name, EPSG code, GridSpec of its 10 m grid)``.
    world
        The 10 m EPSG:32633 grid the truth was simulated on.
    bbox
        ``(west, south, east, north)`` in degrees covering all tiles.
    change
        The change event: ``date_index``, ``date``, ``bounds`` (EPSG:32633), ``from``, ``to``.
    cloud_cover
        ``eo:cloud_cover`` (percent) per item id.
    """

    root: str
    catalog: str
    item_ids: list[str]
    dates: list[dt.datetime]
    tiles: list[tuple[str, int, GridSpec]]
    world: GridSpec
    bbox: tuple[float, float, float, float]
    change: dict
    cloud_cover: dict[str, float] = field(default_factory=dict)

    def item_dir(self, item_id: str) -> str:
        return os.path.join(self.root, _COLLECTION, item_id)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise (via FFT), standardised to mean 0, std 1."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    field_ = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    return (field_ - field_.mean()) / (field_.std() + 1e-12)


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(a)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def _write_cog(path: str, array: np.ndarray, grid: GridSpec, nodata, resampling: str) -> None:
    count = 1 if array.ndim == 2 else array.shape[0]
    data = array[None] if array.ndim == 2 else array
    h, w = data.shape[1:]
    levels = max(1, int(math.log2(min(h, w) / 64)))
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff", height=h, width=w, count=count, dtype=data.dtype.name,
            crs=grid.crs, transform=grid.transform, nodata=nodata,
        ) as tmp:
            tmp.write(data)
        with mem.open() as src:
            rasterio.shutil.copy(
                src, path, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=256,
                OVERVIEW_RESAMPLING=resampling, OVERVIEW_COUNT=levels,
            )


class _World:
    """The simulated scene on the 10 m world grid (20 m cells for classes and clouds)."""

    def __init__(self, grid: GridSpec, n_dates: int, seed: int):
        self.grid = grid
        self.seed = seed
        h2, w2 = grid.height // 2, grid.width // 2
        rng = np.random.default_rng([seed, 0])
        relief = _smooth_noise(rng, (h2, w2), sigma=12.0)
        land = np.where(relief < np.quantile(relief, 0.12), 6, np.where(relief < np.quantile(relief, 0.45), 5, 4))
        # the change patch: vegetation that is cleared to bare soil
        r0, r1 = int(h2 * 0.30), int(h2 * 0.55)
        c0, c1 = int(w2 * 0.12), int(w2 * 0.27)
        land[r0:r1, c0:c1] = 4
        self.land = land.astype(np.uint8)
        self.patch = (r0, r1, c0, c1)
        self.change_index = n_dates // 2
        # cloud cover per date: one clear date, one very cloudy one, the rest in between
        covers = np.random.default_rng([seed, 1]).uniform(0.08, 0.35, n_dates)
        covers[0] = 0.02
        if n_dates >= 4:  # a date the demo's cloud-cover filter drops; not the change date
            covers[n_dates - 2] = 0.80
        self.covers = covers

    def land_at(self, d: int) -> np.ndarray:
        land = self.land.copy()
        if d >= self.change_index:
            r0, r1, c0, c1 = self.patch
            land[r0:r1, c0:c1] = 5
        return land

    def scene(self, d: int):
        """Per date: 10 m reflectance (4, H, W), 20 m reflectance (2, H/2, W/2), SCL and cloud state at 20 m."""
        rng = np.random.default_rng([self.seed, 100 + d])
        h2, w2 = self.land.shape
        land = self.land_at(d)
        cloud_field = _smooth_noise(rng, (h2, w2), sigma=6.0)
        cover = self.covers[d]
        cloud = cloud_field > np.quantile(cloud_field, 1 - cover)
        core = cloud_field > np.quantile(cloud_field, 1 - cover * 0.6)
        cirrus = np.zeros_like(cloud)
        if d % 3 == 2:
            cirrus_field = _smooth_noise(rng, (h2, w2), sigma=10.0)
            cirrus = (cirrus_field > np.quantile(cirrus_field, 0.9)) & ~cloud
        shadow = _shift(cloud, *_SHADOW_SHIFT) & ~cloud & ~cirrus
        state = np.zeros((h2, w2), np.uint8)
        state[shadow], state[cirrus], state[cloud] = 2, 3, 1
        scl = land.copy()
        scl[shadow], scl[cirrus] = 3, 10
        scl[cloud & ~core], scl[core] = 8, 9

        season = 0.9 + 0.2 * math.sin(math.pi * d / max(1, len(self.covers) - 1))
        spectra = np.stack([_SPECTRA[c] for c in (4, 5, 6)])  # (3, 6)
        cls_index = (land - 4).astype(np.intp)
        base = spectra[cls_index]  # (h2, w2, 6)
        base = np.moveaxis(base, -1, 0).astype(np.float32)
        base[3][land == 4] *= season
        thickness = 0.85 + 0.25 * _sigmoid(cloud_field)

        def effects(refl: np.ndarray, st: np.ndarray, thick: np.ndarray, bands: slice) -> np.ndarray:
            out = refl.copy()
            out[:, st == 2] *= _SHADOW_FACTOR
            out[:, st == 3] += _CIRRUS_HAZE
            out[:, st == 1] = _CLOUD[bands, None] * thick[st == 1][None, :]
            return out

        # 10 m bands: upsample cells, add per-pixel texture
        up = lambda a: np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)  # noqa: E731
        texture = 1.0 + 0.03 * rng.standard_normal((4, 2 * h2, 2 * w2), dtype=np.float32)
        r10 = effects(up(base[:4]) * texture, up(state), up(thickness), slice(0, 4))
        texture20 = 1.0 + 0.03 * rng.standard_normal((2, h2, w2), dtype=np.float32)
        r20 = effects(base[4:] * texture20, state, thickness, slice(4, 6))
        return r10, r20, scl.astype(np.uint8), state


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _to_dn(refl: np.ndarray) -> np.ndarray:
    return np.clip(np.round((refl - OFFSET) / SCALE), 1, 65535).astype(np.uint16)


def _tile_layout(size: int, tiles: int) -> tuple[list[tuple[str, int, GridSpec]], GridSpec]:
    """Tiles (name, epsg, 10 m grid) and the world grid covering them."""
    n33 = max(1, tiles - 1) if tiles >= 2 else 1
    n34 = tiles - n33
    ov = (size // 8) // 2 * 2
    step = size - ov
    to33 = Transformer.from_crs(4326, 32633, always_xy=True)
    e18, n45 = to33.transform(18.0, 45.5)
    x0 = math.floor((e18 + 1000 - (n33 * step + ov) * 10) / 20) * 20
    y_top = math.floor(n45 / 20) * 20
    layout = []
    for i in range(n33):
        t = Affine(10, 0, x0 + i * step * 10, 0, -10, y_top)
        layout.append((f"33T{chr(ord('A') + i)}", 32633, GridSpec("EPSG:32633", t, (size, size))))
    east = x0 + ((n33 - 1) * step + size) * 10
    for j in range(n34):
        # west edge of the zone-34 tile overlaps the last zone-33 tile by `ov` pixels
        x_west, y_mid = east - ov * 10 + j * step * 10, y_top - size * 5
        x34, y34 = Transformer.from_crs(32633, 32634, always_xy=True).transform(x_west, y_mid)
        t = Affine(10, 0, math.floor(x34 / 20) * 20, 0, -10, math.floor((y34 + size * 5) / 20) * 20)
        layout.append((f"34T{chr(ord('A') + j)}", 32634, GridSpec("EPSG:32634", t, (size, size))))
    fps = [transform_bounds(g.bounds, g.crs, "EPSG:32633") for _, _, g in layout]
    union = (min(f[0] for f in fps) - 200, min(f[1] for f in fps) - 200, max(f[2] for f in fps) + 200, max(f[3] for f in fps) + 200)
    world = GridSpec.from_bounds(union, 20, "EPSG:32633")  # snap to 20 m cells...
    world = GridSpec(world.crs, Affine(10, 0, world.transform.c, 0, -10, world.transform.f), (world.height * 2, world.width * 2))
    return layout, world


def _sample_index(grid: GridSpec, world: GridSpec, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """World (row, col) indices, at ``cell`` metres, of ``grid``'s pixel centres."""
    xs, ys = np.meshgrid(grid.xs(), grid.ys())
    if grid.crs != world.crs:
        xs, ys = Transformer.from_crs(grid.crs, world.crs, always_xy=True).transform(xs, ys)
    wt = world.transform
    cols = np.floor((xs - wt.c) / cell).astype(np.intp)
    rows = np.floor((wt.f - ys) / cell).astype(np.intp)
    return rows, cols


def _nodata_mask(shape20: tuple[int, int], tile: int, d: int) -> np.ndarray:
    """A swath edge on 20 m pixels: the first tile has no data in a corner triangle on date 1."""
    mask = np.zeros(shape20, bool)
    if tile == 0 and d == 1:
        h, w = shape20
        r, c = np.ogrid[:h, :w]
        mask = c > (h - r) + int(0.9 * w)
    return mask


def generate_archive(
    root: str | os.PathLike,
    *,
    size: int = 512,
    dates: int = 6,
    tiles: int = 3,
    seed: int = 0,
    start: str = "2024-05-03",
    revisit_days: int = 5,
) -> Archive:
    """Write a synthetic Sentinel-2 L2A-like archive with ground truth.

    Parameters
    ----------
    root
        Folder to write into (created).
    size
        Tile width and height in 10 m pixels (even, >= 64).
    dates
        Number of acquisition dates.
    tiles
        Number of tiles; with 2 or more, the last lies in UTM zone 34, the others
        in zone 33, overlapping their neighbours.
    seed
        Everything written is a deterministic function of the parameters.
    start, revisit_days
        First acquisition date and the interval between dates.

    Returns
    -------
    Archive

    Examples
    --------
    >>> from geoproc.testing import generate_archive
    >>> arc = generate_archive("archive", size=64, dates=3)
    >>> len(arc.item_ids)
    9
    """
    if size < 64 or size % 2:
        raise ValueError(f"size must be even and >= 64, got {size}")
    if dates < 1 or tiles < 1:
        raise ValueError("dates and tiles must be >= 1")
    root = os.path.abspath(os.fspath(root))
    layout, world_grid = _tile_layout(size, tiles)
    world = _World(world_grid, dates, seed)
    first = dt.datetime.fromisoformat(start).replace(hour=9, minute=50, tzinfo=dt.timezone.utc)
    when = [first + dt.timedelta(days=revisit_days * d) for d in range(dates)]

    samplers = {name: (_sample_index(g, world_grid, 10), _sample_index(_grid20(g), world_grid, 20), _sample_index(g, world_grid, 20)) for name, _, g in layout}

    collection = pystac.Collection(
        id=_COLLECTION,
        description="Synthetic Sentinel-2 L2A-like scenes with known ground truth (geoproc.testing)",
        extent=pystac.Extent(pystac.SpatialExtent([[0, 0, 0, 0]]), pystac.TemporalExtent([[when[0], when[-1]]])),
        license="CC0-1.0",
    )
    catalog = pystac.Catalog(id="geoproc-synthetic", description="geoproc synthetic archive")
    catalog.add_child(collection)
    item_ids, covers, bboxes = [], {}, []
    for d in range(dates):
        r10, r20, scl20, state20 = world.scene(d)
        land20 = world.land_at(d)
        for t, (name, epsg, grid) in enumerate(layout):
            (r_10, c_10), (r_20, c_20), (r_t, c_t) = samplers[name]
            item_id = f"S2X_{name}_{when[d]:%Y%m%d}_L2A"
            folder = os.path.join(root, _COLLECTION, item_id)
            os.makedirs(folder, exist_ok=True)
            g20 = _grid20(grid)
            nd20 = _nodata_mask(g20.shape, t, d)
            nd10 = np.repeat(np.repeat(nd20, 2, 0), 2, 1)
            assets = {}
            for b, (key, (common, wl, res)) in enumerate(BANDS.items()):
                if res == 10:
                    dn, g, nd = _to_dn(r10[b][r_10, c_10]), grid, nd10
                else:
                    dn, g, nd = _to_dn(r20[b - 4][r_20, c_20]), g20, nd20
                dn[nd] = 0
                _write_cog(os.path.join(folder, f"{key}.tif"), dn, g, 0, "AVERAGE")
                assets[key] = _asset(f"{key}.tif", g, res, [{"name": key, "common_name": common, "center_wavelength": wl}],
                                     {"nodata": 0, "data_type": "uint16", "scale": SCALE, "offset": OFFSET, "spatial_resolution": res, "unit": "1"})
            scl = scl20[r_20, c_20]
            scl[nd20] = 0
            _write_cog(os.path.join(folder, "SCL.tif"), scl, g20, 0, "NEAREST")
            assets["SCL"] = _asset("SCL.tif", g20, 20, None, {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20})
            truth = np.stack([land20[r_t, c_t], state20[r_t, c_t]]).astype(np.uint8)
            truth[1][nd10] = 255
            _write_cog(os.path.join(folder, "truth.tif"), truth, grid, None, "NEAREST")

            valid = scl != 0
            cover = float(100.0 * np.isin(scl[valid], (8, 9, 10)).mean()) if valid.any() else 100.0
            footprint = _footprint(grid)
            bboxes.append(footprint[1])
            item = pystac.Item(
                id=item_id, geometry=footprint[0], bbox=list(footprint[1]),
                datetime=when[d] + dt.timedelta(seconds=5 * t),
                properties={
                    "platform": "sentinel-2a", "constellation": "sentinel-2", "instruments": ["msi"],
                    "gsd": 10, "eo:cloud_cover": round(cover, 3), "proj:epsg": epsg,
                    "s2:mgrs_tile": name, "processing:level": "L2A",
                },
                stac_extensions=list(_EXTENSIONS), collection=_COLLECTION,
            )
            for key, asset in assets.items():
                item.add_asset(key, asset)
            collection.add_item(item)
            item_ids.append(item_id)
            covers[item_id] = cover

    union = (min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes))
    collection.extent.spatial = pystac.SpatialExtent([list(union)])
    # the trailing separator says "folder": pystac takes a root whose name has a dot for a file
    catalog.normalize_hrefs(os.path.join(root, ""))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)

    r0, r1, c0, c1 = world.patch
    wt = world_grid.transform
    change = {
        "date_index": world.change_index,
        "date": when[world.change_index].isoformat() if world.change_index < dates else None,
        "bounds": [wt.c + c0 * 20, wt.f - r1 * 20, wt.c + c1 * 20, wt.f - r0 * 20],
        "crs": "EPSG:32633",
        "from": "vegetation",
        "to": "bare",
    }
    meta = {
        "generator": "geoproc.testing.generate_archive",
        "parameters": {"size": size, "dates": dates, "tiles": tiles, "seed": seed, "start": start, "revisit_days": revisit_days},
        "scale": SCALE, "offset": OFFSET,
        "land_classes": LAND_CLASSES, "cloud_states": CLOUD_STATES,
        "truth_bands": {"1": "land cover (SCL codes)", "2": "cloud state"},
        "dates": [w.isoformat() for w in when],
        "tiles": [{"name": n, "epsg": e, **g.to_dict()} for n, e, g in layout],
        "world": world_grid.to_dict(),
        "change": change,
        "cloud_cover": covers,
    }
    with open(os.path.join(root, "truth.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    return Archive(root, os.path.join(root, "catalog.json"), item_ids, when, layout, world_grid, union, change, covers)


def _grid20(grid: GridSpec) -> GridSpec:
    t = grid.transform
    return GridSpec(grid.crs, Affine(20, 0, t.c, 0, -20, t.f), (grid.height // 2, grid.width // 2))


def _asset(href: str, grid: GridSpec, res: int, eo_bands, raster_band: dict) -> pystac.Asset:
    extra = {"proj:shape": list(grid.shape), "proj:transform": list(grid.transform)[:6], "raster:bands": [raster_band], "gsd": res}
    if eo_bands:
        extra["eo:bands"] = eo_bands
    roles = ["data"] if eo_bands else ["data", "cloud"]
    return pystac.Asset(href, media_type=pystac.MediaType.COG, roles=roles, extra_fields=extra)


def _footprint(grid: GridSpec) -> tuple[dict, tuple[float, float, float, float]]:
    minx, miny, maxx, maxy = grid.bounds
    n = 8
    edge = np.linspace(0, 1, n, endpoint=False)
    xs = np.concatenate([minx + (maxx - minx) * edge, np.full(n, maxx), maxx - (maxx - minx) * edge, np.full(n, minx)])
    ys = np.concatenate([np.full(n, maxy), maxy - (maxy - miny) * edge, np.full(n, miny), miny + (maxy - miny) * edge])
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat)]
    ring.append(ring[0])
    bbox = (min(lon), min(lat), max(lon), max(lat))
    return {"type": "Polygon", "coordinates": [ring]}, tuple(round(float(v), 7) for v in bbox)
