#!/usr/bin/env bash
# Mutation testing of one module with mutmut: change the code on purpose, one small change ("mutant") at a
# time, and check that the module's tests fail. A mutant that survives is a change no test notices.
#
#   bash scripts/mutation.sh MODULE [TIMEOUT_SECONDS]
#   bash scripts/mutation.sh masking            geoproc/masking.py against its test files (below)
#   bash scripts/mutation.sh io/zarr 1800       geoproc/io/zarr.py, stopped after 30 minutes
#
# The run happens in a copy under .mutation/MODULE (ignored by git), so the checkout is never touched: the package
# as committed plus the module and its test files as they are in the working tree (MUTATION_REV=<commit>:
# everything as of that commit; MUTATION_TESTS_REV=<commit>: the code as committed, the tests of that commit, e.g.
# to measure the score before new tests). Afterwards `cd .mutation/MODULE && ../../.venv/bin/mutmut results` lists the survivors and
# `../../.venv/bin/mutmut show NAME` shows one. The last line printed is the score: killed / (mutants tested).
# Needs the test extra (`bash scripts/install.sh test`), which brings mutmut.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
module="${1:?usage: bash scripts/mutation.sh MODULE [TIMEOUT_SECONDS], e.g. masking, spectral_mask, io/zarr}"
limit="${2:-3600}"
module="${module%.py}"
source="geoproc/${module}.py"
[ -f "$source" ] || { echo "mutation.sh: no module $source" >&2; exit 2; }

# the tests that judge each module: its own tests and its kernels' (the slow end-to-end and service tests are
# left out; they would run for every mutant)
case "$module" in
    masking)       tests="tests/test_masking.py tests/kernels/test_mask_kernels.py" ;;
    spectral_mask) tests="tests/test_spectral_mask.py tests/kernels/test_mask_kernels.py" ;;
    timeseries)    tests="tests/test_change.py tests/kernels/test_timeseries_kernels.py" ;;
    io/zarr)       tests="tests/io/test_zarr.py" ;;
    workflow)      tests="tests/test_workflow.py" ;;
    *)             tests="${MUTATION_TESTS:?no test files known for $module: set MUTATION_TESTS='tests/a.py tests/b.py'}" ;;
esac
tests="${MUTATION_TESTS:-$tests}"

work="$repo/.mutation/${module//\//_}"
rm -rf "$work"
mkdir -p "$work"
# the package and tests as committed (MUTATION_REV, default HEAD: others' unfinished edits elsewhere in the tree
# stay out), then, unless MUTATION_REV is given, the module and its tests as they are in the working tree
rev="${MUTATION_REV:-HEAD}"
git archive "$rev" -- geoproc tests conftest.py pyproject.toml workflows | tar -x -C "$work"
if [ -n "${MUTATION_TESTS_REV:-}" ]; then  # today's code against the tests of another revision (a score "before")
    rm -rf "$work/tests"
    git archive "$MUTATION_TESTS_REV" -- tests | tar -x -C "$work"
elif [ -z "${MUTATION_REV:-}" ]; then
    for f in "$source" $tests tests/conftest.py tests/helpers.py; do
        [ -f "$f" ] && cp --parents -t "$work" "$f"
    done
fi
list=""
for t in $tests; do list="$list\"$t\", "; done
cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["geoproc"]
also_copy = ["workflows", "conftest.py"]
only_mutate = ["$source"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]
# tests start dask thread pools; a mutant forked from a process that has them can hang on their locks, so mutants
# fork from a fork server that has only collected the tests
process_isolation = "forkserver"
# mutmut's estimate of a test's time leaves out its fixtures (a generated archive, numba compiling on first call), so
# a mutant's time limit gets a generous constant: a mutant that only hits the limit is not counted as killed by luck
timeout_constant = 30.0
timeout_multiplier = 4.0
pytest_add_cli_args_test_selection = [${list%, }]
EOF
# the copy's tests read the real data from the checkout's ../shared/data (older conftests look for ../shared beside
# the copy: a link there)
export GEOPROC_SHARED_DATA="${GEOPROC_SHARED_DATA:-$repo/../shared/data}"
[ -e "$repo/.mutation/shared" ] || ln -s "$(dirname "$GEOPROC_SHARED_DATA")" "$repo/.mutation/shared"
cd "$work"
echo "mutation.sh: mutants of $source against $tests (at most ${limit} s)"
rc=0
timeout --signal=INT --kill-after=60 "$limit" "$repo/.venv/bin/mutmut" run --max-children "${MUTATION_JOBS:-2}" \
    > mutmut.log 2>&1 || rc=$?
tail -c 2000 mutmut.log | tr '\r' '\n' | grep -v '^\s*$' | tail -3
[ "$rc" = 124 ] && echo "mutation.sh: stopped after ${limit} s; the score counts the mutants tested so far"
"$repo/.venv/bin/mutmut" results --all true > results.txt 2>&1 || true
"$repo/.venv/bin/python" - "$source" <<'EOF'
import collections, re, sys
counts = collections.Counter()
for line in open("results.txt"):
    m = re.match(r"\s*(\S+): (\w[\w ]*)$", line)
    if m:
        counts[m.group(2).strip()] += 1
tested = sum(v for k, v in counts.items() if k not in ("not checked", "skipped"))
killed = counts["killed"] + counts["timeout"] + counts["segfault"]
print(f"{sys.argv[1]}: {dict(counts)}")
print(f"{sys.argv[1]}: mutation score {killed}/{tested} = {killed / max(tested, 1):.1%} "
      f"(survivors: {counts['survived']}, no test ran them: {counts['no tests']})")
EOF
