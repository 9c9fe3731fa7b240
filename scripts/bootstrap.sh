#!/usr/bin/env bash
# Gets a machine ready to build and run perception_retrieval, then builds it, on
# one of two stacks (docs/stacks.md), chosen by PE_STACK:
#   PE_STACK=debian (default)  Debian's LibTorch 1.13 and python3-torch; .venv made from
#                              /usr/bin/python3 with --system-site-packages (torch, numpy,
#                              faiss come from Debian)
#   PE_STACK=pypi              torch 2.x and the peers from PyPI, pinned in
#                              scripts/requirements-pypi.txt; .venv-pypi made from
#                              /usr/bin/python3 without system site packages
# PE_VENV=DIR puts the venv elsewhere (e.g. one outside the tree, shared by worktrees).
#  1. installs the Debian 12 packages below that are missing (as root, or via sudo);
#     on another system it lists what to install and stops;
#  2. creates the venv (pypi: pip-installs the pinned requirements; pip's cache
#     serves a rerun);
#  3. pip-installs this source tree into it with --no-build-isolation, against the
#     venv's torch (incremental: CMake reuses its build folder).
# Safe to rerun; it only does what is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/stack.sh

PACKAGES=(
  cmake g++ make git
  libtorch-dev python3-torch           # LibTorch 1.13 (C++ and Python): the Debian stack
  libopenblas0-pthread                 # without it torch and numpy use reference BLAS, ~45x slower
  libeigen3-dev libstb-dev libspdlog-dev libgtest-dev pybind11-dev nlohmann-json3-dev
  libjpeg62-turbo-dev                  # JPEG decoding: libjpeg-turbo, the decoder PIL uses
  libwebp-dev                          # WebP decoding: libwebp, the decoder PIL uses
  libxxhash-dev                        # index file checksums (XXH64)
  libpng-dev zlib1g-dev                # PNG decoding: libpng (zlib for PIL's text-chunk limit)
  libtiff-dev                          # TIFF decoding: libtiff 4.5+, the library PIL uses for compressed TIFF
  python3-dev python3-venv python3-pip python3-setuptools python3-wheel python3-pybind11
  python3-numpy python3-pil python3-pytest python3-hypothesis
  python3-faiss                        # the benchmark peer
  python3-distributed python3-dask     # optional scale-out on a Dask cluster (perception_retrieval.distributed)
  chromium                             # headless check of the HTML report (tests/python/test_html_report.py)
  clang libclang-rt-14-dev llvm        # scripts/fuzz.sh and scripts/sanitize.sh: libFuzzer, ASan/UBSan/TSan
)

missing_packages() {
  local package
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  mapfile -t missing < <(missing_packages)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "bootstrap: not root and no sudo; as root run: apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  echo "bootstrap: this is not a Debian system. perception_retrieval needs the equivalents of:" >&2
  printf '  %s\n' "${PACKAGES[@]}" >&2
  echo "(LibTorch 1.13 with its Python torch, Eigen 3.3+, libjpeg-turbo, libpng, libtiff 4.5+, libwebp, zlib," >&2
  echo " stb_image_write (tests), spdlog, GoogleTest, pybind11 2.10+," >&2
  echo " CMake 3.18+, a C++17 compiler, Python 3.9+ with numpy, Pillow, pytest). Install them, then run:" >&2
  echo "  python3 -m venv --system-site-packages .venv && .venv/bin/pip install --no-build-isolation ." >&2
  echo "(or, with torch from PyPI: see docs/stacks.md)" >&2
  exit 1
fi

if [ "$PE_STACK" = debian ]; then
  if [ ! -x "$PE_VENV/bin/python" ] || ! "$PE_VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: creating $PE_VENV from /usr/bin/python3 (--system-site-packages)"
    rm -rf "$PE_VENV"
    /usr/bin/python3 -m venv --system-site-packages "$PE_VENV"
  fi
else
  requirements=scripts/requirements-pypi.txt
  stamp="$PE_VENV/.perception_retrieval-requirements"
  if [ ! -x "$PE_VENV/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
    # A venv that sees Debian's site packages would import Debian's torch: make a clean one.
    if [ ! -x "$PE_VENV/bin/python" ] || grep -qs "include-system-site-packages = true" "$PE_VENV/pyvenv.cfg"; then
      echo "bootstrap: creating $PE_VENV from /usr/bin/python3 (no system site packages)"
      rm -rf "$PE_VENV"
      /usr/bin/python3 -m venv "$PE_VENV"
    fi
    echo "bootstrap: installing $requirements into $PE_VENV (torch is ~4 GB with its CUDA libraries; pip's cache serves reruns)"
    started=$(date +%s)
    "$PE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off -r "$requirements"
    cp "$requirements" "$stamp"
    echo "bootstrap: requirements installed in $(( $(date +%s) - started )) s"
  fi
fi

echo "bootstrap: building and installing perception_retrieval into $PE_VENV ($PE_STACK stack)"
# setup.py keeps one CMake folder per interpreter and torch, so switching stacks never
# reuses objects compiled against the other torch.
PE_BUILD_JOBS=${PE_BUILD_JOBS:-$(nproc)} "$PE_VENV/bin/python" -m pip install --quiet \
  --no-build-isolation --no-deps --disable-pip-version-check .
"$PE_VENV/bin/python" -c "import perception_retrieval as p, torch; print('bootstrap: perception_retrieval', p.__version__, 'with torch', torch.__version__, 'ready in $PE_VENV')"
