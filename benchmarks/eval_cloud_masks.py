"""Agreement of geoproc's cloud masks with reference masks, on real and synthetic scenes.

What is compared
----------------
* **Spectral detector vs s2cloudless (eo-learn).** ``spectral_classes`` on the
  5 dates of real Sentinel-2 L1C reflectance (13 bands, 101 x 100 px at 10 m,
  Slovenia, 2015) in ``eolearn/REFERENCE_SCENES.npy``, against the Sentinel Hub
  s2cloudless mask ``CLM`` of the same dates (aligned with
  ``REFERENCE_SCENES.alignment.json``). Cloud = class cloud. With and without
  the cirrus band (B10). A second row uses the 5 winter dates of the 2018
  version of the patch, whose pixels masked by a local s2cloudless run are NaN:
  the detector sees only the pixels s2cloudless kept, so the row measures
  false clouds on (mostly) clear pixels, snow included.
* **SCL vs s2cloudless (eo-learn).** Sen2Cor's SCL of the 36 dates of the 2018
  version against CLM at the same dates (``alignment_with_T68.json``): SCL
  classes 8, 9, 10 (cloud medium/high, cirrus) and the default mask (plus no
  data, saturated, shadow) as cloud.
* **Spectral detector vs QA_PIXEL (Landsat 8).** The two real Collection 2 L2
  scenes in ``stactools-landsat`` (surface reflectance, downsampled to ~450 m),
  raw integers decoded by the kernel (scale 2.75e-5, offset -0.2), sun angles
  from the MTL, ``background_radius`` 10 px (the default 500 m is one pixel
  here). Cloud: QA bits 1 or 3 (dilated cloud, cloud); shadow: bit 4. Pixels
  with the fill bit are left out.
* **Spectral detector vs the synthetic truth.** The archive of the tests
  (``generate_archive(size=256, dates=5, tiles=3, seed=1)``), each tile loaded
  with ``geoproc.load`` on its own 10 m grid; truth band 2 (1 cloud, 2 shadow,
  3 cirrus; 255 no data left out). No sun angles in those items, so shadows are
  searched within ``shadow_distance`` of clouds. No cirrus band either: the
  thin cirrus haze (truth 3) is not cloud to the detector, and its recall is
  reported on its own.

Scores: overall accuracy (OA, share of pixels where the two binary masks agree)
and F1 of the positive class (cloud or shadow), with precision and recall.

Usage::

    python benchmarks/eval_cloud_masks.py            # writes its section of benchmarks/RESULTS.md
    python benchmarks/eval_cloud_masks.py --no-save  # prints only
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import markdown_table, today, update_results, versions  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data")
SECTION = "Cloud masks: agreement with reference masks"
S2_BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12", "cirrus": "B10"}


def scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """OA, F1, precision and recall of boolean ``pred`` against ``ref`` (same shape)."""
    pred, ref = pred.astype(bool).ravel(), ref.astype(bool).ravel()
    tp = int((pred & ref).sum())
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    return {
        "n": pred.size,
        "oa": float((pred == ref).mean()),
        "f1": 2 * tp / (n_pred + n_ref) if n_pred + n_ref else float("nan"),
        "precision": tp / n_pred if n_pred else float("nan"),
        "recall": tp / n_ref if n_ref else float("nan"),
        "ref_share": n_ref / pred.size,
    }


def _cube(array: np.ndarray, band_order: list[str], names: dict[str, str], res: float = 10.0) -> xr.Dataset:
    t, h, w, _ = array.shape
    coords = {"time": np.arange(t), "y": 5_000_000.0 - np.arange(h) * res, "x": 500_000.0 + np.arange(w) * res}
    return xr.Dataset(
        {common: (("time", "y", "x"), np.ascontiguousarray(array[..., band_order.index(b)])) for common, b in names.items()},
        coords=coords,
    )


def eolearn_rows() -> list[list]:
    from geoproc.spectral_mask import spectral_classes

    eo = os.path.join(DATA, "eolearn")
    align = json.load(open(os.path.join(eo, "REFERENCE_SCENES.alignment.json")))
    scenes = np.load(os.path.join(eo, "REFERENCE_SCENES.npy"))
    clm = np.load(os.path.join(eo, "TestEOPatch", "mask", "CLM.npy"))[..., 0].astype(bool)
    ref = clm[align["index_into_TestEOPatch_timestamps"]]
    rows = []
    no_cirrus = {k: v for k, v in S2_BANDS.items() if k != "cirrus"}
    for label, names in (("with cirrus band (B10)", S2_BANDS), ("without cirrus band", no_cirrus)):
        ds = _cube(scenes, align["band_order"], names)
        cloud = spectral_classes(ds).values == 4
        s = scores(cloud, ref)
        per_date = [scores(cloud[i], ref[i])["oa"] for i in range(len(ref))]
        rows.append(["spectral vs CLM", f"S2 L1C, 5 summer dates, {label}", *fmt(s), " ".join(f"{v:.3f}" for v in per_date)])

    old = os.path.join(eo, "TestEOPatch_v2018-12-11_T36")
    align36 = json.load(open(os.path.join(old, "alignment_with_T68.json")))
    winter = np.load(os.path.join(old, "data", "REFERENCE_SCENES.npy"))
    ds = _cube(winter, align["band_order"], S2_BANDS)
    classes = spectral_classes(ds).values
    ref = clm[align36["REFERENCE_SCENES_index_into_T68"]]
    kept = classes != 255
    s = scores((classes == 4)[kept], ref[kept])
    per_date = [scores((classes[i] == 4)[kept[i]], ref[i][kept[i]])["oa"] for i in range(len(ref))]
    rows.append(["spectral vs CLM", "S2 L1C, 5 winter dates, pixels s2cloudless kept", *fmt(s),
                 " ".join(f"{v:.3f}" for v in per_date)])

    scl = np.load(os.path.join(old, "mask", "SCL.npy"))[..., 0]
    ref36 = clm[align36["index_into_T68_timestamps"]]
    for label, codes in (("classes 8, 9, 10", (8, 9, 10)), ("default mask (0, 1, 3, 8, 9, 10)", (0, 1, 3, 8, 9, 10))):
        import geoproc

        mask = geoproc.cloud_mask(xr.DataArray(scl, dims=("time", "y", "x")), classes=codes).values
        s = scores(mask, ref36)
        per_date = np.array([scores(mask[i], ref36[i])["oa"] for i in range(len(ref36))])
        rows.append(["SCL vs CLM", f"Sen2Cor SCL, 36 dates, {label}", *fmt(s),
                     f"min {per_date.min():.3f}, median {np.median(per_date):.3f}"])
    return rows


def fmt(s: dict) -> list[str]:
    return [f"{s['n']:,}", f"{s['ref_share']:.1%}"] + [f"{s[k]:.3f}" for k in ("oa", "f1", "precision", "recall")]


@dataclass
class LandsatScene:
    """One of ``../shared/data``'s Landsat 8 C2 L2 scenes: its bands (SR, and ST B10 as ``lwir11`` where present),
    QA_PIXEL's cloud (bits 1 or 3) and shadow (bit 4), and what is left out of scores (fill, bit 0)."""

    sid: str
    meta: dict
    ds: xr.Dataset
    res: float
    fill: np.ndarray
    cloud: np.ndarray
    shadow: np.ndarray


def landsat_scenes():
    """The Landsat 8 scenes, one :class:`LandsatScene` at a time."""
    import rasterio

    for folder in sorted(glob.glob(os.path.join(DATA, "stactools-landsat", "LC08_*"))):
        sid = os.path.basename(folder)
        meta = json.load(open(os.path.join(folder, f"{sid}_MTL.json")))["LANDSAT_METADATA_FILE"]["IMAGE_ATTRIBUTES"]
        files = {common: (f"SR_B{b}", {"scale": 2.75e-5, "offset": -0.2, "nodata": 0})
                 for common, b in (("blue", 2), ("green", 3), ("red", 4), ("nir", 5), ("swir16", 6), ("swir22", 7))}
        if os.path.exists(os.path.join(folder, f"{sid}_ST_B10.TIF")):
            files["lwir11"] = ("ST_B10", {"scale": 0.00341802, "offset": 149.0, "nodata": 0})
        variables = {}
        for common, (name, attrs) in files.items():
            with rasterio.open(os.path.join(folder, f"{sid}_{name}.TIF")) as src:
                variables[common] = (("y", "x"), src.read(1), attrs)
                t = src.transform
        with rasterio.open(os.path.join(folder, f"{sid}_QA_PIXEL.TIF")) as src:
            qa = src.read(1)
        h, w = qa.shape
        coords = {"y": t.f + (np.arange(h) + 0.5) * t.e, "x": t.c + (np.arange(w) + 0.5) * t.a}
        yield LandsatScene(sid, meta, xr.Dataset(variables, coords=coords), float(np.sqrt(abs(t.a * t.e))),
                           (qa & 1) != 0, ((qa >> 1) & 1 | (qa >> 3) & 1).astype(bool), ((qa >> 4) & 1).astype(bool))


def landsat_rows() -> list[list]:
    from geoproc.spectral_mask import spectral_classes

    rows = []
    for scene in landsat_scenes():
        sr = scene.ds[["blue", "green", "red", "nir", "swir16", "swir22"]]
        classes = spectral_classes(
            sr, sun_azimuth=float(scene.meta["SUN_AZIMUTH"]), sun_elevation=float(scene.meta["SUN_ELEVATION"]),
            background_radius=10 * scene.res,
        ).values
        keep = ~scene.fill & (classes != 255)
        s = scores((classes == 4)[keep], scene.cloud[keep])
        rows.append(["spectral vs QA_PIXEL", f"{scene.sid[:25]}, cloud", *fmt(s), "-"])
        if scene.shadow[keep].any():
            s = scores((classes == 2)[keep], scene.shadow[keep])
            rows.append(["spectral vs QA_PIXEL", f"{scene.sid[:25]}, shadow", *fmt(s), "-"])
    return rows


def synthetic_rows() -> list[list]:
    import rasterio

    import geoproc
    from geoproc.spectral_mask import spectral_classes
    from geoproc.testing import generate_archive

    with tempfile.TemporaryDirectory() as tmp:
        arc = generate_archive(tmp, size=256, dates=5, tiles=3, seed=1)
        items = geoproc.search(arc.catalog)
        preds, truths = [], []
        for name, _, _ in arc.tiles:
            tile = [it for it in items if f"_{name}_" in it.id]
            ds = geoproc.load(tile, ["blue", "green", "red", "nir", "swir16", "swir22"], resolution=10, chunks=128)
            preds.append(spectral_classes(ds).values)
            for iid in ds.attrs["input_items"]:
                with rasterio.open(os.path.join(arc.item_dir(iid), "truth.tif")) as src:
                    truths.append(src.read(2))
    pred = np.concatenate([p.reshape(-1) for p in preds])
    truth = np.concatenate([t.reshape(-1) for t in truths])
    keep = truth != 255
    pred, truth = pred[keep], truth[keep]
    rows = []
    for label, p, r in (("cloud", pred == 4, truth == 1), ("shadow", pred == 2, truth == 2),
                        ("cloud or shadow", np.isin(pred, (2, 4)), np.isin(truth, (1, 2)))):
        rows.append(["spectral vs truth", f"synthetic, 3 tiles x 5 dates, {label}", *fmt(scores(p, r)), "-"])
    cirrus = truth == 3
    rows.append(["spectral vs truth", "synthetic, thin cirrus (no cirrus band) masked as cloud or shadow",
                 f"{int(cirrus.sum()):,}", "-", "-", "-", "-", f"{np.isin(pred[cirrus], (2, 4)).mean():.3f}", "-"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="same as a full run (it takes seconds); prints only")
    args = parser.parse_args(argv)
    if not os.path.isdir(DATA):
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    rows = eolearn_rows() + landsat_rows() + synthetic_rows()
    header = ["comparison", "data", "pixels", "reference positive", "OA", "F1", "precision", "recall", "OA per date"]
    table = markdown_table(header, rows, "ll" + "r" * 6 + "l")
    v = versions()
    body = (
        f"Date: {today()}. Command: `python benchmarks/eval_cloud_masks.py` ({time.perf_counter() - started:.0f} s). "
        f"geoproc {v['geoproc']}, numba {v['numba']}, numpy {v['numpy']}. What each row compares: the script's docstring. "
        "Spectral detector with its defaults unless the docstring says otherwise (no buffers, 3 x 3 cloud fill).\n\n"
        + table
    )
    print(table)
    if not (args.no_save or args.quick):
        update_results(RESULTS, SECTION, body)
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
