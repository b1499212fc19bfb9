"""Fmask 4 (``geoproc.fmask_classes``) against reference masks, per sensor and in the four-band mode.

What is compared (the data of ``benchmarks/eval_cloud_masks.py``, whose docstring describes it):

* **Sentinel-2 L1C vs s2cloudless (eo-learn).** 5 summer dates, 101 x 100 px
  at 10 m, against ``CLM``: all bands Fmask 4 uses for Sentinel-2 (cirrus
  B10, CDI from B7/B8/B8A), the six bands blue..swir22 only (as the issue's
  held-back scenes), and the four-band mode. No shadow reference. The
  patch has 10,100 px, under Fmask 4's 40,000 clear pixels, so by Fmask's
  rule every potential cloud pixel is cloud; the rows with
  ``min_clear_pixels=0`` use the scene statistics all the same (on the 1 km
  patch the "clear" pixels of the overcast dates are cloud edges that failed
  a test, and they set the thresholds above the clouds). The 5 winter dates
  of the 2018 patch (pixels s2cloudless masked are NaN: what is left is
  mostly clear, haze and snow) measure false clouds, against
  ``spectral_classes``; there the statistics are what removes them.
* **Landsat 8 Collection 2 L2 vs QA_PIXEL.** The two real scenes of
  ``stactools-landsat`` (surface reflectance, ~450 m pixels), sun angles from
  the MTL, ``background_radius`` 10 px, ``sensor="landsat-8"``: with the
  thermal band (ST_B10, Kelvin), the six bands without it, and the four-band
  mode. The rows "six bands, defaults, no sun angles" are scored as the
  issue's held-back scenes are: 512 x 512 px, six bands, no thermal band,
  ``fmask_classes`` defaults (the sensor inferred: Landsat 4-7, as no cirrus
  band comes with the data), clouds only. Cloud: QA bits 1 or 3;
  shadow: bit 4; fill left out. The 2013 scene is 100 % cloud in QA_PIXEL:
  its F1 shows only how much of an overcast scene is found.
* **Synthetic archive vs its truth** (``generate_archive(size=256, dates=5,
  tiles=3, seed=1)``; cloud = truth 1, shadow = truth 2, thin cirrus left
  out of both scores as in the other script). The generator moves shadows
  (5, -7) 20 m cells from their clouds: sun azimuth 54.5 deg, with elevation
  45 deg that is a height of 172 m, so ``cloud_height=(50, 2000)``.

Scores: F1 of the positive class with precision and recall, and OA.

Usage::

    python benchmarks/eval_fmask.py            # writes its section of benchmarks/RESULTS.md
    python benchmarks/eval_fmask.py --no-save  # prints only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import markdown_table, today, update_results, versions  # noqa: E402
from eval_cloud_masks import DATA, RESULTS, _cube, fmt, landsat_scenes, scores  # noqa: E402

SECTION = "Cloud masks: Fmask 4 per sensor"
S2_ALL = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12",
          "cirrus": "B10", "rededge3": "B07", "nir08": "B8A"}
SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
FOUR = SIX[:4]
STATS = {"min_clear_pixels": 0}  # the scene statistics whatever the number of clear pixels (Fmask: over 40,000)


def sentinel2_rows(summary: dict) -> list[list]:
    from geoproc import fmask_classes, spectral_classes

    eo = os.path.join(DATA, "eolearn")
    align = json.load(open(os.path.join(eo, "REFERENCE_SCENES.alignment.json")))
    scenes = np.load(os.path.join(eo, "REFERENCE_SCENES.npy"))
    clm = np.load(os.path.join(eo, "TestEOPatch", "mask", "CLM.npy"))[..., 0].astype(bool)
    ref = clm[align["index_into_TestEOPatch_timestamps"]]
    rows = []
    cases = (("all Fmask 4 bands (cirrus, CDI)", tuple(S2_ALL), {}), ("six bands", SIX, {}), ("four bands", FOUR, {}),
             ("all bands, min_clear_pixels=0", tuple(S2_ALL), STATS), ("six bands, min_clear_pixels=0", SIX, STATS),
             ("four bands, min_clear_pixels=0", FOUR, STATS))
    for label, keys, kw in cases:
        ds = _cube(scenes, align["band_order"], {k: S2_ALL[k] for k in keys})
        s = scores(fmask_classes(ds, **kw).values == 4, ref)
        summary[("S2", label)] = s["f1"]
        rows.append(["S2 L1C vs s2cloudless CLM", f"5 summer dates, {label}, cloud", *fmt(s)])
    # the winter dates of the 2018 patch: pixels s2cloudless masked are NaN, so what is left is mostly clear
    # (snow, haze): false clouds there are what the scene-wide probability is for
    old = os.path.join(eo, "TestEOPatch_v2018-12-11_T36")
    align36 = json.load(open(os.path.join(old, "alignment_with_T68.json")))
    winter = np.load(os.path.join(old, "data", "REFERENCE_SCENES.npy"))
    ref = clm[align36["REFERENCE_SCENES_index_into_T68"]]
    for label, func in (("fmask_classes", fmask_classes), ("fmask_classes, min_clear_pixels=0",
                                                          partial(fmask_classes, **STATS)),
                        ("spectral_classes", spectral_classes)):
        classes = func(_cube(winter, align["band_order"], {k: S2_ALL[k] for k in SIX})).values
        kept = classes != 255
        s = scores((classes == 4)[kept], ref[kept])
        summary[("S2 winter", label)] = s["f1"]
        rows.append(["S2 L1C vs s2cloudless CLM", f"5 winter dates, pixels s2cloudless kept, six bands, {label}",
                     *fmt(s)])
    return rows


def landsat_rows(summary: dict) -> list[list]:
    from geoproc import fmask_classes

    rows = []
    for scene in landsat_scenes():
        sid = scene.sid
        sun = {"sun_azimuth": float(scene.meta["SUN_AZIMUTH"]), "sun_elevation": float(scene.meta["SUN_ELEVATION"]),
               "background_radius": 10 * scene.res, "sensor": "landsat-8"}
        modes = [("six bands", SIX, sun), ("four bands", FOUR, sun),
                 ("six bands, min_clear_pixels=0", SIX, {**sun, **STATS}),
                 # as the held-back scenes are scored: 512 x 512 px, six bands, no thermal, no sun angles, defaults
                 ("six bands, defaults, no sun angles", SIX, {})]
        if "lwir11" in scene.ds:
            modes.insert(0, ("six bands + thermal", SIX + ("lwir11",), sun))
        for label, keys, kw in modes:
            classes = fmask_classes(scene.ds[list(keys)], **kw).values
            keep = ~scene.fill & (classes != 255)
            s = scores((classes == 4)[keep], scene.cloud[keep])
            summary[(sid[:25], label)] = s["f1"]
            rows.append(["L8 C2 L2 vs QA_PIXEL", f"{sid[:25]}, {label}, cloud", *fmt(s)])
            if scene.shadow[keep].any() and "sun_azimuth" in kw:
                s = scores((classes == 2)[keep], scene.shadow[keep])
                summary[(sid[:25], label, "shadow")] = s["f1"]
                rows.append(["L8 C2 L2 vs QA_PIXEL", f"{sid[:25]}, {label}, shadow", *fmt(s)])
    return rows


def synthetic_rows(summary: dict) -> list[list]:
    import rasterio

    import geoproc
    from geoproc.testing import generate_archive

    azimuth = math.degrees(math.atan2(7, 5))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arc = generate_archive(tmp, size=256, dates=5, tiles=3, seed=1)
        items = geoproc.search(arc.catalog)
        truths = []
        # the tiles have 65,536 px: on dates with over 39 % potential cloud, Fmask's rule (at most 40,000 clear
        # pixels) makes every potential cloud pixel cloud and skips the shadows; min_clear_pixels=0 does not
        for label, keys, kw in (("six bands", SIX, {}), ("four bands", FOUR, {}),
                                ("six bands, min_clear_pixels=0", SIX, STATS)):
            preds = []
            for name, _, _ in arc.tiles:
                tile = [it for it in items if f"_{name}_" in it.id]
                ds = geoproc.load(tile, list(keys), resolution=10, chunks=128)
                preds.append(geoproc.fmask_classes(ds, sun_azimuth=azimuth, sun_elevation=45.0,
                                                   cloud_height=(50.0, 2000.0), **kw).values)
                if label == "six bands":
                    for iid in ds.attrs["input_items"]:
                        with rasterio.open(os.path.join(arc.item_dir(iid), "truth.tif")) as src:
                            truths.append(src.read(2))
            truth = np.concatenate([x.reshape(-1) for x in truths])
            pred = np.concatenate([p.reshape(-1) for p in preds])
            keep = (truth != 255) & (truth != 3)
            for what, p, r in (("cloud", pred == 4, truth == 1), ("shadow", pred == 2, truth == 2)):
                s = scores(p[keep], r[keep])
                summary[("synthetic", label, what)] = s["f1"]
                rows.append(["synthetic vs truth", f"3 tiles x 5 dates, {label}, {what}", *fmt(s)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if not os.path.isdir(DATA):
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    summary: dict = {}
    rows = sentinel2_rows(summary) + landsat_rows(summary) + synthetic_rows(summary)
    header = ["comparison", "data", "pixels", "reference positive", "OA", "F1", "precision", "recall"]
    table = markdown_table(header, rows, "ll" + "r" * 6)
    v = versions()
    body = (
        f"Date: {today()}. Command: `python benchmarks/eval_fmask.py` ({time.perf_counter() - started:.0f} s, "
        f"numba compilation included). geoproc {v['geoproc']}, numba {v['numba']}, numpy {v['numpy']}. "
        "`geoproc.fmask_classes` with its defaults (Fmask 4's parameters of the sensor it infers: Sentinel-2 for "
        "the eo-learn and synthetic data at 10 m; the Landsat 8 rows give `sensor=\"landsat-8\"` and the sun angles "
        "of the MTL except the row that says defaults, where the 450 m pixels without a cirrus band are taken for "
        "Landsat 4-7) unless the row says otherwise, no buffers. "
        "What each row compares: the script's docstring.\n\n" + table
    )
    print(table)
    if not args.no_save:
        update_results(RESULTS, SECTION, body)
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
