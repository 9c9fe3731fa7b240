#!/usr/bin/env bash
# The two outcomes of installing from source into a venv that already has torch
# (docs/stacks.md), each a check; prints "install checks: N passed, M failed".
#  1. pip with build isolation (plain `pip install .`): the isolated build
#     environment has no torch, so the build must stop with the one message that
#     says to use --no-build-isolation (checked with `pip wheel`, which installs
#     nothing either way).
#  2. pip install --no-build-isolation . (what scripts/bootstrap.sh ran): the
#     package records the torch it was built against, and its module loads
#     after `import torch` with no LD_LIBRARY_PATH, the encoder included.
#
#   bash scripts/check_install.sh VENV
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${1:?usage: check_install.sh VENV}
PYTHON=$VENV/bin/python
passed=0
failed=0
pass() { echo "install check passed: $1"; passed=$((passed + 1)); }
fail() { echo "install check FAILED: $1" >&2; failed=$((failed + 1)); }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# 1. isolated build
"$PYTHON" -m pip wheel --no-deps --disable-pip-version-check --progress-bar off -w "$scratch/wheels" . \
  >"$scratch/isolated.log" 2>&1
status=$?
if [ "$status" -ne 0 ] && grep -q "cannot import torch" "$scratch/isolated.log" \
    && grep -q "pip install --no-build-isolation \." "$scratch/isolated.log"; then
  pass "an isolated build (pip install .) stops with the --no-build-isolation message"
else
  fail "an isolated build exited $status without the expected message; its log:"
  tail -n 30 "$scratch/isolated.log" >&2
fi

# 2. the --no-build-isolation install in the venv
if (cd "$scratch" && env -u LD_LIBRARY_PATH "$PYTHON" - <<'PY'
import torch
import perception_retrieval as pr
from perception_retrieval import _build_info, _native
assert _build_info.TORCH_VERSION == torch.__version__, (_build_info.TORCH_VERSION, torch.__version__)
assert _native.HAS_ENCODER, "built without the encoder"
assert pr.__file__.startswith(__import__("sys").prefix), pr.__file__  # the installed copy, not the tree
print("installed", pr.__version__, "built against torch", _build_info.TORCH_VERSION, "from", pr.__file__)
PY
); then
  pass "pip install --no-build-isolation . gives a package built against this venv's torch that loads"
else
  fail "the installed package does not load against this venv's torch"
fi

echo "install checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
