"""Rebuild ``geoproc/data/spectral_indices.json`` from the Awesome Spectral Indices catalog shipped by spyndex.

Usage::

    python scripts/update_spectral_indices.py            # write the vendored file
    python scripts/update_spectral_indices.py --check    # exit 1 if the vendored file is out of date

Keeps the indices whose bands Sentinel-2 or Landsat can deliver: the optical bands listed in :data:`BANDS`
(no thermal, no radar, no kernel indices, no yellow or 0.5 um green band, which neither sensor has). Each index is
copied unchanged (formula, long name, reference, contributor, platforms, ...); only the constants those indices use
are kept. The catalog is MIT-licensed (Copyright (c) 2021 David Montero Loaiza); its licence text goes into the file.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from importlib.metadata import version
from pathlib import Path

#: Catalog band letters we select, with the names geoproc looks the band up by (see geoproc.indices.BAND_NAMES).
BANDS = ("A", "B", "G", "R", "RE1", "RE2", "RE3", "N", "N2", "WV", "S1", "S2")
#: Application domains left out: kernel indices need kernel-matrix inputs, radar ones Sentinel-1.
SKIP_DOMAINS = ("kernel", "radar")

TARGET = Path(__file__).resolve().parents[1] / "geoproc" / "data" / "spectral_indices.json"
SOURCE_URL = "https://github.com/awesome-spectral-indices/awesome-spectral-indices"


def _names(formula: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(formula, mode="eval")) if isinstance(n, ast.Name)}


def build() -> dict:
    import spyndex

    data = Path(spyndex.__file__).parent / "data"
    catalog = json.loads((data / "spectral-indices-dict.json").read_text())["SpectralIndices"]
    constants = json.loads((data / "constants.json").read_text())
    bands = json.loads((data / "bands.json").read_text())
    dist = Path(spyndex.__file__).parent.parent / f"spyndex-{version('spyndex')}.dist-info"
    licence = next(dist.glob("licenses/LICENSE*"), None) or next(dist.glob("LICENSE*"))

    selected, used_constants = {}, set()
    for name, spec in sorted(catalog.items(), key=lambda kv: kv[0].upper()):
        names = _names(spec["formula"])
        if set(spec["bands"]) != names:
            raise SystemExit(f"{name}: catalog bands {spec['bands']} differ from the formula's names {sorted(names)}")
        letters = names - set(constants)
        if spec["application_domain"] in SKIP_DOMAINS or not letters <= set(BANDS):
            continue
        selected[name] = spec
        used_constants |= names & set(constants)

    return {
        "about": (
            "Spectral indices of the Awesome Spectral Indices catalog (" + SOURCE_URL + "), by David Montero Loaiza "
            "and contributors, MIT licence (text below). Selected for the optical bands of Sentinel-2 and Landsat and "
            "written by scripts/update_spectral_indices.py from the copy shipped by spyndex "
            + version("spyndex")
            + "; "
            "formulas, references and contributors are unchanged."
        ),
        "license": licence.read_text().strip().splitlines(),
        "source": {"url": SOURCE_URL, "spyndex": version("spyndex")},
        "bands": {
            b: {k: bands[b][k] for k in ("short_name", "long_name", "common_name", "min_wavelength", "max_wavelength")}
            for b in BANDS
        },
        "constants": {c: constants[c] for c in sorted(used_constants)},
        "indices": selected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the vendored file")
    args = parser.parse_args(argv)
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = TARGET.exists() and TARGET.read_text() == text
        print("up to date" if same else f"{TARGET} differs from the catalog; run without --check")
        return 0 if same else 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {len(json.loads(text)['indices'])} indices to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
