#!/usr/bin/env bash
# Every test: the C++ suite (GoogleTest via ctest, including a separate project
# built against the installed CMake package) and the Python suite (pytest
# against the package installed in the stack's venv). Installs and builds what
# is missing first. Fails when a test fails or when no test ran at all.
#
#   bash scripts/test.sh                    # the Debian stack (LibTorch 1.13), .venv
#   PE_STACK=pypi bash scripts/test.sh      # the PyPI stack (torch 2.x), .venv-pypi
#   PE_SLOW_TESTS=0 bash scripts/test.sh    # leave out the full-size L14 tests (minutes)
# Extra arguments go to pytest. docs/stacks.md describes the stacks.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/stack.sh
JOBS=${PE_BUILD_JOBS:-$(nproc)}
PYTHON=$PE_VENV/bin/python
mkdir -p "$PE_BUILD_ROOT"

bash scripts/bootstrap.sh
echo "== $PE_STACK stack: $("$PYTHON" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}")')"

echo "== C++ tests (ctest)"
# Python_EXECUTABLE: CMake finds that interpreter's torch (torch.utils.cmake_prefix_path).
cmake -S . -B "$PE_BUILD_ROOT/cpp" -DCMAKE_BUILD_TYPE=Release -DPE_BUILD_TESTS=ON -DPE_BUILD_PYTHON=OFF \
  -DPython_EXECUTABLE="$PYTHON" -DPE_TEST_PYTHON="$PYTHON" >/dev/null
cmake --build "$PE_BUILD_ROOT/cpp" -j "$JOBS"
cpp_log=$PE_BUILD_ROOT/ctest.log
set +e
(cd "$PE_BUILD_ROOT/cpp" && ctest --output-on-failure -j "$JOBS") 2>&1 | tee "$cpp_log"
cpp_status=${PIPESTATUS[0]}
set -e
cpp_total=$(sed -nE 's/.* tests? failed out of ([0-9]+).*/\1/p' "$cpp_log" | tail -n1)
cpp_failed=$(sed -nE 's/.*, ([0-9]+) tests? failed out of.*/\1/p' "$cpp_log" | tail -n1)
cpp_total=${cpp_total:-0}
cpp_failed=${cpp_failed:-0}
# Every skipped C++ test with the reason it gave (GoogleTest prints
# "file:line: Skipped" and the message just before "[  SKIPPED ] name").
awk '/: Skipped$/ { getline reason; next_reason = reason }
     /^\[  SKIPPED \] [^ ]+ \([0-9]+ ms\)/ { print "skipped (C++): " $4 ": " next_reason }' \
  "$PE_BUILD_ROOT/cpp/Testing/Temporary/LastTest.log" 2>/dev/null || true

echo "== Python tests (pytest, installed package in $PE_VENV)"
junit=$PE_BUILD_ROOT/pytest.xml
rm -f "$junit"
select=()
[ "${PE_SLOW_TESTS:-1}" = 0 ] && select=(-m "not slow")
set +e
# Run from tests/python's parent with the installed package, not python/ in the tree;
# -rs lists every skipped test with its reason.
"$PYTHON" -m pytest tests/python -q -rs -p no:cacheprovider --junitxml="$junit" "${select[@]}" "$@"
py_status=$?
set -e
read -r py_total py_failed py_skipped < <("$PYTHON" - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 0, 0); raise SystemExit
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(total - skipped, failed, skipped)
PY
)

install_total=0
install_failed=0
install_status=0
if [ "$PE_STACK" = pypi ] && [ "${PE_INSTALL_CHECKS:-1}" != 0 ]; then
  echo "== install checks (pip install ., with and without build isolation)"
  set +e
  bash scripts/check_install.sh "$PE_VENV" | tee "$PE_BUILD_ROOT/install.log"
  install_status=${PIPESTATUS[0]}
  set -e
  install_total=$(sed -nE 's/^install checks: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$PE_BUILD_ROOT/install.log" \
    | awk '{print $1 + $2}')
  install_failed=$(sed -nE 's/^install checks: [0-9]+ passed, ([0-9]+) failed$/\1/p' "$PE_BUILD_ROOT/install.log")
  install_total=${install_total:-0}
  install_failed=${install_failed:-1}
fi

ran=$((cpp_total + py_total + install_total))
failed=$((cpp_failed + py_failed + install_failed))
echo "$PE_STACK stack: C++: $cpp_total run, $cpp_failed failed; Python: $py_total run, $py_failed failed," \
  "$py_skipped skipped; install checks: $install_total run, $install_failed failed"
if [ "$cpp_total" -eq 0 ] || [ "$py_total" -eq 0 ]; then
  echo "test.sh: a suite ran no test (C++ $cpp_total, Python $py_total): that is a failure" >&2
  exit 1
fi
echo "tests: $((ran - failed)) passed, $failed failed"
if [ "$cpp_status" -ne 0 ] || [ "$py_status" -ne 0 ] || [ "$install_status" -ne 0 ] || [ "$failed" -ne 0 ]; then
  exit 1
fi
