"""Workflow files and job specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoproc.errors import InvalidArgumentError
from geoproc.workflow import DEMO_SPEC, JobSpec, load_spec

REPO = Path(__file__).resolve().parents[1]


def test_demo_yaml_is_the_embedded_default():
    assert load_spec(REPO / "workflows" / "demo.yaml") == JobSpec.from_dict(DEMO_SPEC)


def test_overrides_and_unknown_keys(tmp_path):
    spec = load_spec(REPO / "workflows" / "demo.yaml", output="elsewhere.zarr", overwrite=None)
    assert spec.output == "elsewhere.zarr" and spec.overwrite is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog: x\noutput: y\nindx: NDVI\n")
    with pytest.raises(InvalidArgumentError, match="unknown job keys.*indx"):
        load_spec(bad)
    bad.write_text("catalog: [unclosed\n")
    with pytest.raises(InvalidArgumentError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(InvalidArgumentError, match="lacks"):
        JobSpec.from_dict({"catalog": "x"})


def test_cli_resume_keeps_the_regions_already_written(tmp_path, archive, capsys):
    """`geoproc run JOB --resume` after an interrupted run writes only the missing regions: the chunk files already
    stored keep their bytes and modification times (an overwrite would rewrite them all), and the result equals
    that of an uninterrupted run. Without --resume (or --overwrite) the existing output is refused."""
    import json
    import os

    import numpy as np
    import yaml
    from distributed import LocalCluster

    import geoproc
    from geoproc.cli import main
    from geoproc.io.zarr import output_status

    out = tmp_path / "out.zarr"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "catalog": str(archive.catalog), "output": str(out), "index": "NDVI", "composite": "median",
        "load": {"bands": ["red", "nir", "scl"], "resolution": 20, "chunks": 64},
    }))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        run = ["run", str(job), "--no-progress", "--cluster", cluster.scheduler_address]
        assert main(run) == 0
        var = out / "ndvi_median"
        full = geoproc.open_result(out)["ndvi_median"].values
        total = output_status(out)["regions_total"]
        assert total >= 4
        # the state an interrupted run leaves: half the regions neither stored nor marked, status "writing"
        chunk = json.loads((var / "zarr.json").read_text())["chunk_grid"]["configuration"]["chunk_shape"]
        markers = sorted((tmp_path / "out.zarr.geoproc" / "done" / "1" / "ndvi_median").iterdir())
        assert len(markers) == total
        lost = []
        for marker in markers[::2]:
            (y0, _), (x0, _) = (part.split("+") for part in marker.name.split("_"))
            path = var / "c" / str(int(y0) // chunk[0]) / str(int(x0) // chunk[1])
            if path.exists():  # an all-NaN chunk is not stored at all
                path.unlink()
                lost.append(path)
            marker.unlink()
        assert lost
        manifest_path = tmp_path / "out.zarr.geoproc" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest_path.write_text(json.dumps({**manifest, "status": "writing"}))
        kept = sorted(p for p in (var / "c").rglob("*") if p.is_file())
        assert kept
        for p in kept:
            os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # 2001-09-09, a time no write sets
        before = {p: p.read_bytes() for p in kept}

        capsys.readouterr()
        assert main(run) == 2  # neither --resume nor --overwrite: refused, nothing touched
        assert "already exists" in capsys.readouterr().err
        assert main([*run, "--resume"]) == 0
        for p in kept:
            assert p.stat().st_mtime_ns == 1_000_000_000_000_000_000, f"{p} was written again"
            assert p.read_bytes() == before[p]
        assert all(p.exists() for p in lost)
        status = output_status(out)
        assert status["status"] == "complete" and status["regions_done"] == total
        np.testing.assert_array_equal(geoproc.open_result(out)["ndvi_median"].values, full)
        # --overwrite, by contrast, writes every region again
        assert main([*run, "--overwrite"]) == 0
    assert all(p.stat().st_mtime_ns != 1_000_000_000_000_000_000 for p in kept)
    np.testing.assert_array_equal(geoproc.open_result(out)["ndvi_median"].values, full)


def test_job_generates_its_archive_only_when_missing(tmp_path, capsys):
    import yaml
    from distributed import LocalCluster

    from geoproc.cli import main

    catalog = tmp_path / "arc" / "catalog.json"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "catalog": str(catalog), "output": str(tmp_path / "out.zarr"),
        "generate": {"size": 64, "dates": 2, "tiles": 1, "seed": 2}, "load": {"bands": ["red", "nir", "scl"], "resolution": 20},
    }))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        run = ["run", str(job), "--no-progress", "--cluster", cluster.scheduler_address]
        assert main(run) == 0
        assert catalog.exists() and f"generating a synthetic archive in {tmp_path / 'arc'}" in capsys.readouterr().out
        stamp = catalog.stat().st_mtime_ns
        assert main([*run, "--overwrite"]) == 0
        assert catalog.stat().st_mtime_ns == stamp and "generating" not in capsys.readouterr().out


def test_job_keys_reach_the_library_functions(tmp_path, archive, capsys):
    """Each job key is forwarded: search (bbox, datetime), load (bands, resolution; the search bbox bounds the grid),
    mask (classes), index, composite; the output equals the same calls made directly, carries the job as provenance,
    and the summary reports it; a quicklook is written when asked for."""
    import numpy as np
    import yaml
    from distributed import LocalCluster

    import geoproc
    from geoproc.cli import main

    bbox = [17.95, 45.46, 18.02, 45.50]
    spec = {
        "catalog": str(archive.catalog), "output": str(tmp_path / "out.zarr"), "index": "NDWI", "composite": "mean",
        "search": {"bbox": bbox, "datetime": "2024-05-01/2024-05-15"},  # 3 of the archive's 5 dates
        "load": {"bands": ["green", "nir", "scl"], "resolution": 20, "chunks": 64},
        "mask": {"classes": [0, 8, 9]}, "quicklook": str(tmp_path / "q.png"),
    }
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(spec))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        assert main(["run", str(job), "--no-progress", "--cluster", cluster.scheduler_address]) == 0
        assert cluster.scheduler.transition_counter > 0, "the job did not run on the given scheduler"
    printed = capsys.readouterr().out
    items = geoproc.search(str(archive.catalog), bbox=bbox, datetime="2024-05-01/2024-05-15")
    assert len({it.datetime.date() for it in items}) == 3
    ds = geoproc.load(items, ["green", "nir", "scl"], resolution=20, chunks=64, bbox=bbox)
    expected = geoproc.composite(geoproc.index(ds, "NDWI"), "mean", mask=geoproc.cloud_mask(ds, classes=[0, 8, 9]))
    got = geoproc.open_result(spec["output"])
    assert list(got.data_vars) == ["ndwi_mean"]
    np.testing.assert_array_equal(got["ndwi_mean"].values, expected.values)
    np.testing.assert_array_equal(got.x.values, expected.x.values)
    assert got.attrs["job"]["mask"] == {"classes": [0, 8, 9]} and got.attrs["job"]["index"] == "NDWI"
    assert sorted(got.attrs["input_items"]) == sorted(it.id for it in items)
    assert (tmp_path / "q.png").stat().st_size > 0
    h, w = expected.shape
    assert f"scenes     {len(items)} items in {ds.sizes['time']} time slices" in printed
    assert f"pixels     {h * w:,} ({h} x {w})" in printed
    assert f"output     {spec['output']}" in printed and f"quicklook  {tmp_path / 'q.png'}" in printed


def test_job_spec_defaults_and_conflicts():
    spec = JobSpec.from_dict({"catalog": "c.json", "output": "o.zarr"})
    assert (spec.index, spec.composite, dict(spec.load), spec.overwrite, spec.resume, spec.quicklook) == (
        "NDVI", "median", {"bands": ["red", "nir", "scl"]}, False, False, None)
    with pytest.raises(InvalidArgumentError, match="both overwrite and resume"):
        JobSpec.from_dict({"catalog": "c", "output": "o", "overwrite": True, "resume": True})
    assert JobSpec.from_dict({"catalog": "c", "output": "o"}, resume=True, overwrite=None).resume is True
    from geoproc.workflow import JobResult

    result = JobResult(scenes=4, time_slices=2, shape=(300, 1200), seconds=3.04, output="o.zarr", quicklook=None,
                       dashboard=None)
    assert result.pixels == 360_000
    assert result.summary() == ("scenes     4 items in 2 time slices\npixels     360,000 (300 x 1200)\n"
                                "seconds    3.0\noutput     o.zarr")


def test_workflow_file_errors_say_what_to_do(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- catalog: x\n")
    with pytest.raises(InvalidArgumentError, match=f"workflow file {bad} must hold a mapping of job keys"):
        load_spec(bad)
    with pytest.raises(InvalidArgumentError, match="a job cannot both overwrite and resume its output; choose one"):
        load_spec(REPO / "workflows" / "demo.yaml", overwrite=True, resume=True)
    with pytest.raises(InvalidArgumentError, match=r"the job lacks \['output'\]; give a catalog path/URL and an output path"):
        JobSpec.from_dict({"catalog": "x"})
