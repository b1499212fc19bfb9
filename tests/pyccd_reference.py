"""lcmap-pyccd as the reference for CCDC: run ``ccd.detect`` on series from a test and read back its segments.

pyccd 2021.7.19 (the last release) needs scipy < 1.11 (``stats.mode``'s old
output shape) and numpy < 1.24 (``np.bool``), so it lives in a venv of its
own, ``/tmp/geoproc-pyccd`` (``GEOPROC_PYCCD_VENV``), that
``scripts/install.sh test`` makes; it is run in a subprocess on JSON.
Without it the tests skip, and fail under CI (:func:`require_pyccd`).

As a script (run by that venv's python) it reads
``{"series": [{"dates", "bands" (7 x T), "qa"}], "params": {...}}`` on
stdin and writes ``{"results": [[segment, ...], ...], "cpu_seconds": s}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache

VENV = os.environ.get("GEOPROC_PYCCD_VENV", "/tmp/geoproc-pyccd")
PYTHON = os.path.join(VENV, "bin", "python")
#: pyccd's QA without bit packing (its CFMask values), as the tests pass it
CFMASK_PARAMS = {"QA_BITPACKED": False, "QA_FILL": 255, "QA_CLEAR": 0, "QA_WATER": 1, "QA_SHADOW": 2,
                 "QA_SNOW": 3, "QA_CLOUD": 4}
BANDS = ("blue", "green", "red", "nir", "swir1", "swir2", "thermal")


@lru_cache(maxsize=1)
def _problem() -> str | None:
    if not os.path.exists(PYTHON):
        return f"lcmap-pyccd's venv {VENV} is missing (bash scripts/install.sh test makes it)"
    probe = subprocess.run([PYTHON, "-c", "import ccd"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"lcmap-pyccd does not import in {VENV}: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def require_pyccd() -> None:
    """Skip (fail under CI) unless pyccd's venv is there."""
    from tests.helpers import missing_data

    problem = _problem()
    if problem:
        missing_data(problem)


def pyccd_detect(series: list[dict], params: dict | None = None) -> tuple[list[list[dict]], float]:
    """pyccd's segments of each series (dates: ordinals; bands: 7 x T in its units; qa: CFMask values)."""
    require_pyccd()
    payload = json.dumps({"series": series, "params": {**CFMASK_PARAMS, **(params or {})}})
    run = subprocess.run([PYTHON, __file__], input=payload, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pyccd failed: {run.stderr[-2000:]}")
    out = json.loads(run.stdout)
    return out["results"], out["cpu_seconds"]


def synthetic_series(seed: int, n: int, dates, *, cloud: float = 0.3, spikes: float = 0.03, max_breaks: int = 3,
                     kind: str = "changes") -> list[dict]:
    """``n`` Landsat-like pixel series in pyccd's units on ``dates`` (ordinals), numpy only (runs in both venvs).

    Per pixel: band levels and an annual cycle of random amplitude and phase, Gaussian noise (40), up to
    ``max_breaks`` abrupt changes (every band's level scaled by 0.55-1.7) at random dates, ``cloud`` of the
    dates flagged cloud (CFMask 4) with bright values, and ``spikes`` of the clear dates hit by an unflagged
    bright outlier (what Tmask and the outlier test are for). ``kind="snow"``: 80 % of the dates snow (3);
    ``"cloudy"``: 85 % cloud. Thermal in kelvin x 10.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    dates = np.asarray(dates, dtype=np.int64)
    t = dates.size
    w = 2 * np.pi / 365.2425
    out = []
    for _ in range(n):
        level = np.array([500, 800, 700, 3000, 2000, 1000, 2900.0])[:, None] * rng.uniform(0.7, 1.3, (7, 1))
        level = np.repeat(level, t, axis=1)
        for _ in range(rng.integers(0, max_breaks + 1)):  # a land-cover change: every level scaled at once
            at = rng.uniform(dates[0] + 500, dates[-1] - 200)
            factor = np.r_[rng.uniform(0.55, 1.7, 6), rng.uniform(0.98, 1.02)]
            level[:, dates > at] *= factor[:, None]
        amp = np.r_[np.full(6, rng.uniform(0.1, 0.3)), 0.02]
        season = np.cos(w * dates + rng.uniform(0, 2 * np.pi))[None]
        spec = level * (1 + amp[:, None] * season) + rng.normal(0, 40, (7, t)) * np.array([1, 1, 1, 1, 1, 1, 0.5])[:, None]
        qa = np.zeros(t, np.int64)
        share = {"snow": 0.0, "cloudy": 0.85}.get(kind, cloud)
        cloudy = rng.random(t) < share
        qa[cloudy] = 4
        spec[:6, cloudy] += 3000
        if kind == "snow":
            snowy = rng.random(t) < 0.8
            qa[snowy] = 3
            spec[:6, snowy] = 6000 + rng.normal(0, 300, (6, snowy.sum()))
        spiky = (rng.random(t) < spikes) & (qa == 0)
        spec[:6, spiky] += rng.uniform(1500, 3000, (6, spiky.sum()))
        spec[:6] = np.clip(spec[:6], 1, 9999)
        out.append({"dates": dates.tolist(), "bands": np.round(spec).tolist(), "qa": qa.tolist()})
    return out


def _main() -> None:  # runs in pyccd's venv
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import ccd
    import numpy as np

    inp = json.load(sys.stdin)
    results = []
    start = time.process_time()
    for s in inp["series"]:
        r = ccd.detect(np.array(s["dates"]), *[np.array(b, dtype=float) for b in s["bands"]], np.array(s["qa"]),
                       params=inp.get("params"))
        results.append(r["change_models"])
    json.dump({"results": results, "cpu_seconds": time.process_time() - start}, sys.stdout)


if __name__ == "__main__":
    _main()
