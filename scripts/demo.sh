#!/usr/bin/env bash
# The main job, end to end: installs what is missing, builds, runs the demo.
# Extra arguments go to `perception-retrieval demo` (e.g. --out results/).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/perception-retrieval" demo "$@"
