"""The ``geoproc`` command.

Errors that geoproc raises on purpose (:class:`geoproc.errors.GeoprocError`)
print one line, ``geoproc: error: ...``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geoproc", description="Satellite imagery processing at scale.")
    sub = p.add_subparsers(dest="command", required=True)

    def job_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--output", metavar="URL", help="output Zarr store (path, file:// or s3:// URL)")
        sp.add_argument(
            "--cluster", metavar="SPEC",
            help="the Dask cluster: tcp://HOST:PORT, gateway:URL[?min=1&max=8], kubernetes:NAME, slurm:PROFILE, "
            "pbs:PROFILE or a cluster YAML file (default: the job's cluster key, else a LocalCluster)",
        )
        sp.add_argument(
            "--preflight", choices=("check", "exclude", "off"),
            help="before compute, check every worker's versions, input access and output access: stop naming the "
            "bad ones (check, the default), retire them and go on (exclude), or skip (off)",
        )
        sp.add_argument("--workers", type=int, metavar="N", help="worker processes of the LocalCluster (default: one per core)")
        sp.add_argument("--no-progress", action="store_true", help="do not show the progress bar")

    demo = sub.add_parser(
        "demo",
        help="run the embedded demo job (generates a small synthetic archive on first use)",
        description="Search a local catalog, load red/nir/SCL on a 10 m grid, mask clouds, NDVI, median over time, write Zarr and a PNG.",
    )
    demo.add_argument("--root", default="geoproc-demo", metavar="DIR", help="folder for the archive and outputs (default: ./geoproc-demo)")
    job_options(demo)

    run = sub.add_parser("run", help="run a workflow file (YAML)")
    run.add_argument("workflow", help="path of the workflow YAML file")
    run.add_argument("--overwrite", action="store_true", help="replace the output store if it exists")
    run.add_argument(
        "--resume", action="store_true", help="finish an interrupted run: keep the regions already written"
    )
    run.add_argument("--from", dest="date_from", metavar="DATE",
                     help="workflow files with steps: (re)process every item dated from DATE (a backfill)")
    run.add_argument("--to", dest="date_to", metavar="DATE",
                     help="workflow files with steps: (re)process every item dated up to DATE (a backfill)")
    job_options(run)

    gen = sub.add_parser("generate", help="write a synthetic Sentinel-2-like archive with ground truth")
    gen.add_argument("root", help="folder to write into")
    gen.add_argument("--size", type=int, default=512, help="tile size in 10 m pixels (default 512)")
    gen.add_argument("--dates", type=int, default=6, help="number of dates (default 6)")
    gen.add_argument("--tiles", type=int, default=3, help="number of tiles, the last in the next UTM zone (default 3)")
    gen.add_argument("--seed", type=int, default=0)
    return p


def _demo_spec(root: str, output: str | None):
    import os

    from .workflow import DEMO_SPEC, JobSpec

    spec = dict(DEMO_SPEC)
    spec["catalog"] = os.path.join(root, "archive", "catalog.json")
    spec["output"] = output or os.path.join(root, "ndvi_median.zarr")
    spec["quicklook"] = os.path.join(root, "ndvi_median.png")
    spec["overwrite"] = True
    return JobSpec.from_dict(spec)


def _run_workflow(args) -> int:
    """A workflow file with steps and products: one incremental run (see geoproc.run.incremental)."""
    from .errors import InvalidArgumentError
    from .run.incremental import run_workflow
    from .run.workflow_file import read_workflow

    wf = read_workflow(args.workflow)  # the whole file is checked before anything runs
    if args.output or args.overwrite:  # --resume is accepted: every workflow run resumes (the CronJob passes it)
        raise InvalidArgumentError(
            f"{args.workflow}: --output/--overwrite apply to single-pipeline jobs; a workflow's products name "
            "their outputs, and a rerun resumes and updates them by itself (delete a store to rebuild it)"
        )
    backfill = (args.date_from, args.date_to) if args.date_from or args.date_to else None
    cluster = args.cluster if args.cluster is not None else wf.cluster
    if cluster is None and args.workers is None:
        report = run_workflow(wf, backfill=backfill)  # the threaded scheduler of this process
    else:
        from .run.cluster import ClusterSpec, connect

        with connect(ClusterSpec.parse(cluster), n_workers=args.workers) as client:
            report = run_workflow(wf, backfill=backfill, client=client)
    return 1 if report.failures else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.command in ("demo", "run") and args.preflight != "off":
        # pre-flight names each worker whose versions differ in one line; distributed's table would come first
        import warnings

        from distributed.versions import VersionMismatchWarning

        warnings.filterwarnings("ignore", category=VersionMismatchWarning)
    from .errors import GeoprocError

    try:
        if args.command == "generate":
            from .testing import generate_archive

            arc = generate_archive(args.root, size=args.size, dates=args.dates, tiles=args.tiles, seed=args.seed)
            print(f"wrote {len(arc.item_ids)} items to {arc.catalog}")
            return 0
        from .workflow import is_workflow_file, load_spec, run_job

        if args.command == "run" and is_workflow_file(args.workflow):
            return _run_workflow(args)
        if args.command == "demo":
            spec = _demo_spec(args.root, args.output)
        else:
            spec = load_spec(args.workflow, output=args.output, overwrite=args.overwrite or None, resume=args.resume or None)
        result = run_job(spec, cluster=args.cluster, n_workers=args.workers, progress=not args.no_progress,
                         preflight=args.preflight)
        print(result.summary())
        return 0
    except GeoprocError as exc:
        print(f"geoproc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("geoproc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
