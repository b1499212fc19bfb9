"""The demo job end to end through the CLI, on a real multi-process LocalCluster, against numpy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
import yaml

import geoproc
from geoproc.grid import transform_bounds
from geoproc.workflow import DEMO_SPEC

from .helpers import offset_in, read, reflectance

GEOPROC = [sys.executable, "-m", "geoproc.cli"]


def _run(args, cwd, timeout=300):
    return subprocess.run(GEOPROC + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    proc = _run(["demo", "--root", str(root / "geoproc-demo"), "--workers", "2"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "geoproc-demo", proc


def _reference(root: Path, x, y, masked: bool):
    """Median NDVI from the zone-33 COGs, masking with the *truth* cloud states, on the output grid."""
    meta = json.load(open(root / "archive" / "truth.json"))
    limit = DEMO_SPEC["search"]["query"]["eo:cloud_cover"]["lt"]
    coll = root / "archive" / "sentinel-2-l2a-synthetic"
    h, w = len(y), len(x)
    x0, y1 = float(x[0]) - 5.0, float(y[0]) + 5.0
    stack = []
    for when in meta["dates"]:
        day = when[:10].replace("-", "")
        slot = np.full((h, w), np.nan, np.float32)
        have = np.zeros((h, w), bool)
        for tile in meta["tiles"]:
            if tile["epsg"] != 32633:
                continue
            item = f"S2X_{tile['name']}_{day}_L2A"
            if meta["cloud_cover"][item] >= limit:
                continue
            red = reflectance(read(str(coll / item / "B04.tif")))
            nir = reflectance(read(str(coll / item / "B08.tif")))
            state = read(str(coll / item / "truth.tif"), 2)
            ndvi = (nir - red) / (nir + red)
            if masked:
                ndvi[state != 0] = np.nan
            row, col = offset_in(x0, y1, rasterio.Affine(*tile["transform"]))
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + ndvi.shape[0], h), min(col + ndvi.shape[1], w)
            sub = (slice(r0, r1), slice(c0, c1))
            tsub = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            take = ~have[sub] & (state[tsub] != 255)  # first tile with data wins
            slot[sub][take] = ndvi[tsub][take]
            have[sub] |= take
        stack.append(slot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.stack(stack), axis=0), meta


def test_demo_output_equals_numpy_reference(demo):
    root, _ = demo
    ds = xr.open_zarr(root / "ndvi_median.zarr")
    assert ds.rio.crs.to_epsg() == 32633
    assert ds.rio.resolution() == (10.0, -10.0)
    out = ds["ndvi_median"].values
    expected, meta = _reference(root, ds.x.values, ds.y.values, masked=True)
    # only the part that no zone-34 pixel reaches: there the reference needs no resampling
    t34 = next(t for t in meta["tiles"] if t["epsg"] == 32634)
    tb = rasterio.Affine(*t34["transform"])
    fp = transform_bounds((tb.c, tb.f - 10 * t34["shape"][0], tb.c + 10 * t34["shape"][1], tb.f), "EPSG:32634", "EPSG:32633")
    west = ds.x.values < fp[0] - 10
    assert west.mean() > 0.5
    np.testing.assert_allclose(out[:, west], expected[:, west], rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.isfinite(out[:, west]).mean() > 0.5
    # the zone-34 part is filled too
    assert np.isfinite(out[:, ~west]).mean() > 0.3

    # cloudy pixels never contribute: without the mask the answer differs on many pixels
    unmasked, _ = _reference(root, ds.x.values, ds.y.values, masked=False)
    differs = ~np.isclose(out[:, west], unmasked[:, west], rtol=1e-6, atol=1e-7, equal_nan=True)
    assert differs.mean() > 0.02


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a PNG has no CRS
def test_demo_provenance_quicklook_and_summary(demo):
    root, proc = demo
    ds = xr.open_zarr(root / "ndvi_median.zarr")
    meta = json.load(open(root / "archive" / "truth.json"))
    limit = DEMO_SPEC["search"]["query"]["eo:cloud_cover"]["lt"]
    assert sorted(ds.attrs["input_items"]) == sorted(k for k, v in meta["cloud_cover"].items() if v < limit)
    assert ds.attrs["job"]["index"] == "NDVI"
    from PIL import Image

    with Image.open(root / "ndvi_median.png") as png:  # the quick-look names what, when and where (tests/test_pictures.py)
        title = png.text["Title"]
    span = f"{ds.attrs['input_start'][:10]} to {ds.attrs['input_end'][:10]}"
    assert title.startswith(f"Normalized Difference Vegetation Index · {span} · "), title
    for word in ("dask dashboard: http://", "scenes", "pixels", "seconds", "output", "quicklook"):
        assert word in proc.stdout
    assert "Completed" in proc.stdout  # the progress bar
    assert "Traceback" not in proc.stderr


def _spec(tmp_path, demo_root: Path, **changes) -> str:
    spec = json.loads(json.dumps(DEMO_SPEC))
    spec["catalog"] = str(demo_root / "archive" / "catalog.json")
    spec["output"] = str(tmp_path / "out.zarr")
    spec["quicklook"] = None
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            spec[section][field] = value
        else:
            spec[section] = value
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"search__datetime": "2031-01-01/2031-12-31"}, "no items"),
        ({"load": {"bands": ["red", "nir", "scl"], "bbox": [10.0, 40.0, 10.1, 40.1]}}, "none of the"),
        ({"load": {"bands": ["red", "nir", "purple"]}}, "band 'purple' not found"),
        ({"output": "/proc/geoproc-out.zarr"}, "cannot write output"),
    ],
    ids=["empty-search", "no-overlap", "unknown-band", "unwritable-output"],
)
def test_cli_bad_input_one_line_error(tmp_path, demo, changes, message):
    root, _ = demo
    proc = _run(["run", _spec(tmp_path, root, **changes)], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("geoproc: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not os.path.exists(tmp_path / "out.zarr")


def test_cli_runs_on_an_existing_scheduler(tmp_path, demo):
    """--cluster ADDRESS: the job runs on a scheduler with worker processes started elsewhere, same result."""
    from distributed import LocalCluster

    root, _ = demo
    job = _spec(tmp_path, root)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0") as cluster:
        proc = _run(["run", job, "--cluster", cluster.scheduler_address, "--no-progress"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert cluster.scheduler.transition_counter > 0, "the scheduler saw no work"
    ours = xr.open_zarr(tmp_path / "out.zarr")["ndvi_median"].values
    theirs = xr.open_zarr(root / "ndvi_median.zarr")["ndvi_median"].values
    np.testing.assert_array_equal(ours, theirs)


def test_cli_reports_an_unreachable_scheduler(tmp_path, demo):
    root, _ = demo
    proc = _run(["run", _spec(tmp_path, root), "--cluster", "tcp://127.0.0.1:9"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot reach a Dask scheduler at tcp://127.0.0.1:9" in proc.stderr


def test_cli_read_failure_on_workers_is_one_line_and_resumable(tmp_path, demo):
    """An asset that fails on a cluster worker reaches the user as one typed error, not a bare Exception
    with tracebacks; the unfinished output cannot be opened, and once the asset is back, --resume finishes it
    (which regions a resume computes is tested in tests/io/test_zarr.py)."""
    import shutil

    from geoproc.errors import OutputError
    from geoproc.io.zarr import output_status

    root, _ = demo
    copy = tmp_path / "copy"
    shutil.copytree(root / "archive", copy / "archive")
    victim = sorted((copy / "archive" / "sentinel-2-l2a-synthetic").glob("S2X_33TA_*"))[0]
    (victim / "B04.tif").rename(tmp_path / "B04.tif")
    proc = _run(["run", _spec(tmp_path, copy), "--no-progress"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("geoproc: error: cannot read item"), proc.stderr[-2000:]
    assert victim.name in lines[0] and "'B04'" in lines[0]
    out = tmp_path / "out.zarr"
    assert output_status(out)["status"] == "writing"
    with pytest.raises(OutputError, match="unfinished"):
        geoproc.open_result(out)
    (tmp_path / "B04.tif").rename(victim / "B04.tif")
    proc = _run(["run", _spec(tmp_path, copy), "--no-progress", "--resume"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = output_status(out)
    assert status["status"] == "complete" and status["regions_done"] == status["regions_total"]
    reference = _run(["run", _spec(tmp_path, copy), "--no-progress", "--output", str(tmp_path / "ref.zarr")], cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    np.testing.assert_array_equal(
        geoproc.open_result(out)["ndvi_median"].values, geoproc.open_result(tmp_path / "ref.zarr")["ndvi_median"].values
    )