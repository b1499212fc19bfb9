"""Time the same geoproc job on a LocalCluster and through a Dask Gateway on this machine.

    .venv/bin/python cluster/bench_gateway.py [--workers 2] [--repeat 2]

Starts the tests' password-protected gateway (``tests/services/gateway.py``, config ``cluster/gateway/local_config.py``),
then runs ``geoproc.workflow.run_job`` (mask + NDVI + median over a 3-tile x 5-date synthetic archive, 64 px chunks)
alternately on a LocalCluster and on a Gateway cluster of the same number of single-threaded workers. The Gateway
times include starting the cluster's scheduler and workers; the LocalCluster's include starting it too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from geoproc.testing import generate_archive
    from geoproc.workflow import JobSpec, run_job
    from tests.services.gateway import dask_gateway

    with tempfile.TemporaryDirectory() as tmp:
        archive = generate_archive(Path(tmp) / "archive", size=256, dates=5, tiles=3, seed=1)

        def job(name: str) -> JobSpec:
            return JobSpec.from_dict({"catalog": str(archive.catalog), "output": str(Path(tmp) / name), "overwrite": True,
                                      "load": {"bands": ["red", "nir", "scl"], "resolution": 10, "chunks": 64}})

        with dask_gateway() as gateway:
            os.environ.update(gateway.env())
            for _ in range(args.repeat):
                local = run_job(job("local.zarr"), cluster="local", n_workers=args.workers, progress=False, log=lambda s: None)
                remote = run_job(job("gateway.zarr"), cluster=f"gateway:{gateway.address}?auth=basic&workers={args.workers}",
                                 progress=False, log=lambda s: None)
                print(f"{args.workers} workers: LocalCluster {local.seconds:.1f} s, Dask Gateway {remote.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
