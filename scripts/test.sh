#!/usr/bin/env bash
# Every test: the C++ suite (GoogleTest via ctest, including a separate project
# built against the installed CMake package) and the Python suite (pytest
# against the package installed in .venv). Installs and builds what is missing
# first. Fails when a test fails or when no test ran at all.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${PE_BUILD_JOBS:-$(nproc)}

bash scripts/bootstrap.sh

echo "== C++ tests (ctest)"
cmake -S . -B build/cpp -DCMAKE_BUILD_TYPE=Release -DPE_BUILD_TESTS=ON -DPE_BUILD_PYTHON=OFF \
  -DPE_TEST_PYTHON="$ROOT/.venv/bin/python" >/dev/null
cmake --build build/cpp -j "$JOBS"
cpp_log=build/ctest.log
set +e
(cd build/cpp && ctest --output-on-failure -j "$JOBS") 2>&1 | tee "$cpp_log"
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
  build/cpp/Testing/Temporary/LastTest.log 2>/dev/null || true

echo "== Python tests (pytest, installed package in .venv)"
junit=build/pytest.xml
set +e
# Run from tests/python's parent with the installed package, not python/ in the tree.
# -rs: every skipped test is listed with its reason.
.venv/bin/python -m pytest tests/python -q -rs -p no:cacheprovider --junitxml="$junit" "$@"
py_status=$?
set -e
read -r py_total py_failed py_skipped < <(.venv/bin/python - "$junit" <<'PY'
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

ran=$((cpp_total + py_total))
failed=$((cpp_failed + py_failed))
echo "C++: $cpp_total run, $cpp_failed failed; Python: $py_total run, $py_failed failed, $py_skipped skipped"
if [ "$cpp_total" -eq 0 ] || [ "$py_total" -eq 0 ]; then
  echo "test.sh: a suite ran no test (C++ $cpp_total, Python $py_total): that is a failure" >&2
  exit 1
fi
echo "tests: $((ran - failed)) passed, $failed failed"
if [ "$cpp_status" -ne 0 ] || [ "$py_status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
