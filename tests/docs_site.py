"""The documentation site, built the way CI and a contributor build it: Sphinx, warnings as errors.

One build per test session (the ``docs_site`` fixture of tests/conftest.py) serves tests/test_docs.py, which
checks the site and opens it in Chromium, and tests/test_notebooks.py, which checks the notebooks that the build
executed (so they run once, not twice).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@dataclass
class DocsBuild:
    """Where a build put things, and how it went."""

    root: Path
    returncode: int
    log: str
    seconds: float

    @property
    def html(self) -> Path:
        return self.root / "html"

    @property
    def executed(self) -> Path:
        """The notebooks as the build executed them, outputs included (myst-nb writes them beside ``html``)."""
        return self.root / "jupyter_execute"

    def problems(self) -> list[str]:
        """The build's warnings and errors, one line each."""
        return [line for line in self.log.splitlines() if "WARNING:" in line or "ERROR:" in line
                or line.startswith(("Exception occurred", "Traceback"))]


def build(root: Path) -> DocsBuild:
    """Build ``docs/`` into ``root/html`` with ``-W --keep-going`` (every warning reported, any fails the build)."""
    root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               "-d", str(root / "doctrees"), str(DOCS), str(root / "html")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return DocsBuild(root, done.returncode, done.stdout + done.stderr, time.perf_counter() - start)
