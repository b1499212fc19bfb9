#!/usr/bin/env bash
# Install geoproc into ./.venv on a fresh Debian machine with Python >= 3.11.
#   bash scripts/install.sh        the package (enough for `geoproc demo`)
#   bash scripts/install.sh test   the package and everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-run}"
py="${PYTHON:-python3}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "install.sh: '$*' needs root; run it as root or install sudo" >&2; exit 1
    fi
}

"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "install.sh: geoproc needs Python >= 3.11, found $("$py" --version 2>&1); set PYTHON=python3.11" >&2
    exit 1
}

if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv >/dev/null 2>&1; then
        # Debian ships venv/ensurepip separately
        rm -rf .venv
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$py" -m venv .venv
    fi
fi

.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
case "$what" in
    run)  .venv/bin/python -m pip install -q --disable-pip-version-check -e . ;;
    test)
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
        # geozarr-toolkit validates the stores' GeoZarr conventions in the tests; it declares Python >= 3.12 but
        # runs on 3.11 (Debian 12's python3, tested), so it is installed without that check
        .venv/bin/python -m pip install -q --disable-pip-version-check --ignore-requires-python "geozarr-toolkit==0.1.2"
        # lcmap-pyccd, the reference CCDC is compared with (tests/pyccd_reference.py, tests/test_ccdc.py), needs
        # scipy < 1.11 (stats.mode's old shape) and numpy < 1.24 (np.bool): pinned in a venv of its own
        pyccd="${GEOPROC_PYCCD_VENV:-/tmp/geoproc-pyccd}"
        if [ ! -x "$pyccd/bin/python" ] || ! "$pyccd/bin/python" -c 'import ccd' 2>/dev/null; then
            "$py" -m venv "$pyccd"
            "$pyccd/bin/python" -m pip install -q --disable-pip-version-check "lcmap-pyccd==2021.7.19" \
                "numpy==1.23.5" "scipy==1.10.1" "scikit-learn==1.3.2"
        fi
        # the search tests run a real STAC API (stac-fastapi-pgstac) on a private PostgreSQL + PostGIS cluster
        missing=""
        # chromium (headless) renders the built documentation in tests/test_docs.py (tests/browser.py)
        # R + strucchange are the reference BFAST Monitor is compared with (tests/r_reference.py, tests/test_bfast.py)
        # libjs-leaflet: explore()'s maps load Leaflet from a CDN; the offline browser test loads Debian's copy
        for pkg in postgresql-15 postgresql-contrib postgresql-15-postgis-3 chromium r-base-core r-cran-strucchange libjs-leaflet; do
            [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing="$missing $pkg"
        done
        if [ -n "$missing" ]; then
            as_root apt-get update -qq
            # shellcheck disable=SC2086
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
        fi
        ;;
    *)    echo "install.sh: unknown target '$what' (use: run, test)" >&2; exit 2 ;;
esac
echo "install.sh: geoproc installed in .venv ($what)"
