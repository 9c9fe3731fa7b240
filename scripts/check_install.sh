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
#  3. PE_BUILD_ENCODER=OFF pip install --no-build-isolation . into a venv without
#     torch (numpy, Pillow, setuptools and pybind11 at the PyPI stack's pins): the
#     torch-free core installs without pulling torch in, metrics, image and
#     Retriever work, and Encoder says how to get it. Needs PyPI, so the PyPI
#     stack runs it.
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

# 3. the torch-free core
pins=()
for name in numpy pillow setuptools pybind11; do
  pins+=("$(grep -E "^$name==" scripts/requirements-pypi.txt)")
done
core=$scratch/core
if /usr/bin/python3 -m venv "$core" >"$scratch/core.log" 2>&1 \
    && "$core/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off "${pins[@]}" \
      >>"$scratch/core.log" 2>&1 \
    && PE_BUILD_ENCODER=OFF "$core/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-build-isolation . >>"$scratch/core.log" 2>&1 \
    && (cd "$scratch" && "$core/bin/python" - >>"$scratch/core.log" 2>&1 <<'PY'
import importlib.util, sys
import numpy as np
import perception_retrieval as pr
assert importlib.util.find_spec("torch") is None and "torch" not in sys.modules, "torch got installed or imported"
# metrics: query 0 (instance 0) finds its one relevant item first: P@1 = 1, mAP@1 = 1
result = pr.metrics.evaluate(np.array([[0, 1]]), np.array([0]), np.array([0, 1]), ks=(1,), map_k=1)
assert result["P@1"] == 1.0 and result["mAP@1"] == 1.0, result
assert pr.image.decode(b"P5 2 1 255 \x00\xff").tolist() == [[[0, 0, 0], [255, 255, 255]]]
index = pr.Retriever(2)
index.add(np.array([[1, 0], [0, 1]], dtype=np.float32), np.array([7, 9]))
scores, ids = index.search(np.array([[0.0, 1.0]], dtype=np.float32), 1)
assert ids.tolist() == [[9]], ids
try:
    pr.Encoder("model.pt")
except ImportError as error:
    assert "built without the encoder" in str(error) and "install torch" in str(error), error
else:
    raise AssertionError("Encoder worked in a torch-free package")
print("torch-free core: metrics, image and Retriever work; Encoder says how to get it")
PY
); then
  pass "PE_BUILD_ENCODER=OFF pip install --no-build-isolation . installs a torch-free core that works"
else
  fail "the torch-free core did not install or work; its log:"
  tail -n 30 "$scratch/core.log" >&2
fi

echo "install checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
