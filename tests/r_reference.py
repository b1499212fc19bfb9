"""R as the reference: run Rscript on arrays from a test and read back what it computes.

``run_r(script, **arrays)`` writes each array to a text file (NaN as ``NA``), runs
``script`` with two helpers defined, ``input(name)`` (a numeric vector) and
``output(name, x)`` (written with 17 significant digits), and returns the outputs
as float64 arrays. :func:`bfastmonitor_r` is R's ``bfastmonitor`` for many series
at once: bfast itself is not packaged in Debian, so its steps are written out
below on top of strucchange (``efp``, ``sctest``, ``boundary``, ``mefp``,
``monitor``), zoo and ``lm``, from bfast's documented algorithm (bfastts,
bfastpp, the reverse-ordered CUSUM history and bfastmonitor's monitoring).

Needs ``Rscript`` with strucchange (Debian: r-base-core, r-cran-strucchange;
``scripts/install.sh test`` installs them). Without them the tests skip, and
fail under CI (:func:`require_r`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import lru_cache

import numpy as np

RSCRIPT = shutil.which("Rscript")

_PRELUDE = r"""
.dir <- commandArgs(trailingOnly = TRUE)[1]
input <- function(name) scan(file.path(.dir, paste0(name, ".in")), quiet = TRUE, na.strings = "NA")
output <- function(name, x) writeLines(ifelse(is.na(x), "NA", sprintf("%.17g", as.numeric(x))),
                                       file.path(.dir, paste0(name, ".out")))
"""


@lru_cache(maxsize=1)
def _r_problem() -> str | None:
    if RSCRIPT is None:
        return "Rscript is not installed (bash scripts/install.sh test installs r-base-core)"
    probe = subprocess.run([RSCRIPT, "-e", "library(strucchange)"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "R's strucchange is not installed (bash scripts/install.sh test installs r-cran-strucchange)"
    return None


def require_r() -> None:
    """Skip (fail under CI) unless Rscript and strucchange are there."""
    from tests.helpers import missing_data

    problem = _r_problem()
    if problem:
        missing_data(problem)


def run_r(script: str, timeout: float = 120, **arrays) -> dict[str, np.ndarray]:
    """Run ``script`` under Rscript with ``arrays`` as inputs; every ``output(name, x)`` comes back as an array."""
    require_r()
    with tempfile.TemporaryDirectory(prefix="geoproc-r-") as tmp:
        for name, values in arrays.items():
            flat = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
            text = "\n".join("NA" if not np.isfinite(v) else repr(float(v)) for v in flat)
            with open(os.path.join(tmp, f"{name}.in"), "w") as f:
                f.write(text + "\n")
        path = os.path.join(tmp, "script.R")
        with open(path, "w") as f:
            f.write(_PRELUDE + script)
        done = subprocess.run([RSCRIPT, "--vanilla", path, tmp], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"Rscript failed ({done.returncode}):\n{done.stderr[-3000:]}")
        out = {}
        for name in os.listdir(tmp):
            if name.endswith(".out"):
                with open(os.path.join(tmp, name)) as f:
                    lines = f.read().split()
                out[name[:-4]] = np.array([np.nan if v == "NA" else float(v) for v in lines], dtype=np.float64)
        return out


# bfastmonitor written out in R. The series are the columns of Y (T x S, NA for gaps): either a regular ts
# (start, frequency) or, when `days` is given (days since 1970-01-01), irregular dates made regular as bfast's
# bfastts does (type "irregular": frequency 365; "16-day": frequency 23; "10-day": frequency 36).
BFASTMONITOR_R = r"""
suppressMessages({library(zoo); library(strucchange)})
cfg <- input("cfg")  # T, S, start, frequency, order, trend, monitor start, history (NA: ROC, 0: all), h, end, level, datetype
T <- cfg[1]; S <- cfg[2]; freq <- cfg[4]; order <- cfg[5]; start <- cfg[7]; hist_opt <- cfg[8]
h <- cfg[9]; end <- cfg[10]; level <- cfg[11]; datetype <- cfg[12]
Y <- matrix(input("Y"), nrow = T, ncol = S)
formula <- if (cfg[6] == 1) response ~ trend + harmon else response ~ harmon

as_ts <- function(y) {
  if (datetype == 0) return(ts(y, start = cfg[3], frequency = freq))
  dates <- as.Date(input("days"), origin = "1970-01-01")
  if (datetype == 365) {  # bfastts(type = "irregular"): day of a 365-day year, 29 Feb counted as 1 Mar
    lt <- as.POSIXlt(dates)
    yday365 <- c(0L, 31L, 59L, 90L, 120L, 151L, 181L, 212L, 243L, 273L, 304L, 334L)[1L + lt$mon] + lt$mday
    return(as.ts(zoo(y, 1900 + lt$year + (yday365 - 1) / 365, frequency = 365)))
  }
  if (datetype == 36) {  # bfastts(type = "10-day")
    tz <- as.POSIXlt(dates)
    return(as.ts(zoo(y, 1900L + tz$year + round((tz$yday - 1L) / 10L) / 36L, frequency = 36L)))
  }
  # bfastts(type = "16-day")
  z <- zoo(y, dates)
  yr <- as.numeric(format(time(z), "%Y")); jul <- as.numeric(format(time(z), "%j"))
  as.ts(aggregate(z, yr + (jul - 1) / 16 / 23))
}

# bfastpp: time, response, trend (1..length of the regular series), harmonic terms; NA rows dropped
frame <- function(y) {
  tt <- as.numeric(time(y))
  k <- min(frequency(y), order)
  harmon <- outer(2 * pi * tt, 1:k)
  harmon <- cbind(apply(harmon, 2, cos), apply(harmon, 2, sin))
  if (2 * k == frequency(y)) harmon <- harmon[, -(2 * k), drop = FALSE]
  d <- data.frame(time = tt, response = as.numeric(y), trend = seq_along(tt))
  d$harmon <- harmon
  na.omit(d)
}

# The stable history by the reverse-ordered CUSUM test: reverse the history, take its recursive-CUSUM
# process; if the test rejects at `level`, the history starts just after the newest observation where the
# process crosses its boundary (strucchange's default 5 % boundary, as bfast's history_roc uses)
roc_start <- function(d) {
  n <- nrow(d)
  r <- d[n:1, ]
  r$response <- ts(r$response)
  e <- efp(formula, data = r, type = "Rec-CUSUM")
  if (sctest(e)$p.value < level) {
    crossing <- min(which(abs(e$process)[-1] > boundary(e)[-1]))
    d$time[length(e$process) - crossing + 1]
  } else d$time[1]
}

for (s in 1:S) {
  d <- frame(as_ts(Y[, s]))
  hist <- subset(d, time < start)
  hstart <- if (is.na(hist_opt)) roc_start(hist) else if (hist_opt == 0) hist$time[1] else hist_opt
  stable <- subset(hist, time >= hstart)
  m <- mefp(formula, data = stable, type = "OLS-MOSUM", period = end, h = h, alpha = level)
  fit <- lm(formula, data = stable)
  test <- subset(d, time >= hstart)
  mon <- monitor(m, data = test, verbose = FALSE)
  pred <- predict(fit, newdata = test)
  new <- test$time >= start
  output(paste0("history_", s), stable$time[1])
  output(paste0("n_", s), nrow(stable))
  output(paste0("time_", s), test$time[-(1:nrow(stable))])
  output(paste0("process_", s), mon$process)
  output(paste0("boundary_", s), mon$border((mon$histsize + 1):nrow(test)))
  output(paste0("breakpoint_", s), if (is.na(mon$breakpoint)) NA else test$time[mon$breakpoint])
  output(paste0("magnitude_", s), median(test$response[new] - pred[new]))
  output(paste0("sigma_", s), summary(fit)$sigma)
}
"""


def bfastmonitor_r(
    y: np.ndarray,
    monitor_start: float,
    *,
    start: float = 0.0,
    frequency: int = 23,
    days: np.ndarray | None = None,
    history="ROC",
    order: int = 3,
    trend: bool = True,
    h: float = 0.25,
    end: int = 10,
    level: float = 0.05,
) -> list[dict]:
    """R's bfastmonitor on each column of ``y`` ``(T, S)``: per series, the R results as a dict.

    ``y`` is a regular ts from ``start`` with ``frequency`` per year, or, with
    ``days`` (days since 1970-01-01 of each row), irregular dates made regular
    by bfastts (``frequency`` 365: "irregular", 23: "16-day", 36: "10-day"). ``history``:
    "ROC", "all" or a decimal year. Keys: ``history``, ``n``, ``time``,
    ``process``, ``boundary``, ``breakpoint``, ``magnitude``, ``sigma``.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    t_len, s = y.shape
    hist = np.nan if history == "ROC" else (0.0 if history == "all" else float(history))
    cfg = [t_len, s, start, frequency, order, int(trend), monitor_start, hist, h, end, level,
           0 if days is None else frequency]
    arrays = {"cfg": np.array(cfg, dtype=np.float64), "Y": y.T.ravel()}
    if days is not None:
        arrays["days"] = np.asarray(days, dtype=np.float64)
    out = run_r(BFASTMONITOR_R, **arrays)
    keys = ("history", "n", "time", "process", "boundary", "breakpoint", "magnitude", "sigma")
    return [{k: out[f"{k}_{i + 1}"] if k in ("time", "process", "boundary") else out[f"{k}_{i + 1}"][0] for k in keys}
            for i in range(s)]
