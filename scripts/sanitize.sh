#!/usr/bin/env bash
# Sanitizer builds, failing on any report:
#  1. build/asan: clang with AddressSanitizer + UndefinedBehaviorSanitizer
#     (-fno-sanitize-recover=all: the first report aborts the test). Runs the
#     whole C++ suite under ctest (metrics, image, retriever, retriever_io,
#     retriever_threads, the hardening tests and the fuzz regression replay,
#     and the encoder tests with LibTorch), then the Python tests that reach
#     the compiled module, against an ASan build of it with the ASan runtime
#     preloaded into Debian's python3.
#  2. build/tsan: clang with ThreadSanitizer for the concurrency tests
#     (searches racing adds, removes, reserves and serialisation).
#
#   bash scripts/sanitize.sh            # both
#   bash scripts/sanitize.sh asan       # or only one: asan, python, tsan
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
JOBS=${PE_BUILD_JOBS:-$(nproc)}
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(asan python tsan)
wants() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

# clang and its sanitizer runtimes, installed like scripts/bootstrap.sh does.
SANITIZER_PACKAGES=(clang libclang-rt-14-dev llvm)
missing=()
for package in "${SANITIZER_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "sanitize: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "sanitize: not root and no sudo; as root run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

phase_start=0
phase() { phase_start=$(date +%s); echo "== sanitize: $*"; }
phase_done() { echo "sanitize: $1 took $(( $(date +%s) - phase_start )) s"; }

# -O1: fast enough to run, still close to the optimised code paths. The
# ignore list exempts one file only: stb_image_write.h, the JPEG/PNG *writer*
# some tests use to make their inputs (its JPEG encoder left-shifts negative
# values); the library never includes it, and its own image readers, which
# decode untrusted images, stay checked.
mkdir -p build/asan
echo "src:*/stb/stb_image_write.h" > build/asan/ubsan_ignore.txt
ASAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
ASAN_COMPILE_FLAGS="$ASAN_FLAGS -fsanitize-ignorelist=$ROOT/build/asan/ubsan_ignore.txt"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Debian's python3 is not instrumented: to load the ASan build of the module it
# runs with the ASan runtime preloaded, PYTHONMALLOC=malloc routes Python's own
# allocations through it, and leak checking is off (CPython and torch free
# many objects only at exit, or never); a failed allocation returns null, as
# under glibc, so numpy's MemoryError stays an exception instead of an ASan
# abort. The encoder tests' ctest fixture exports its tiny model with this
# interpreter and the working tree's package.
ASAN_RUNTIME=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
ASAN_PYTHON="env LD_PRELOAD=$ASAN_RUNTIME PYTHONMALLOC=malloc PYTHONPATH=$ROOT/build/asan/python \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 /usr/bin/python3"

if wants asan || wants python; then
  phase "ASan + UBSan build (build/asan)"
  # The package's .py files beside the ASan-built _core.
  mkdir -p build/asan/python/perception_retrieval
  for file in python/perception_retrieval/*.py python/perception_retrieval/data; do
    name=$(basename "$file")
    [ "$name" = _build_info.py ] || ln -sfn "$ROOT/$file" "build/asan/python/perception_retrieval/$name"
  done
  CC=clang CXX=clang++ cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="$ASAN_COMPILE_FLAGS" \
    -DCMAKE_EXE_LINKER_FLAGS="$ASAN_FLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$ASAN_FLAGS" \
    -DCMAKE_MODULE_LINKER_FLAGS="$ASAN_FLAGS" -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
    -DPE_BUILD_TESTS=ON -DPE_BUILD_ENCODER=ON -DPE_BUILD_PYTHON=ON -DPython_EXECUTABLE=/usr/bin/python3 \
    -DPE_PYTHON_OUTPUT_DIR="$ROOT/build/asan/python/perception_retrieval" \
    -DPE_TEST_PYTHON="$ASAN_PYTHON" >/dev/null
  cmake --build build/asan -j "$JOBS"
  phase_done "ASan build"
fi

if wants asan; then
  phase "C++ tests under ASan + UBSan"
  # The consumer test installs and builds a separate project: nothing of ours
  # to sanitize there, and it would need the sanitizer flags passed through.
  (cd build/asan && ctest --output-on-failure -j "$JOBS" -E installed_package_consumer) 2>&1 | tee build/asan/ctest.log
  grep -qE "^100% tests passed" build/asan/ctest.log || { echo "sanitize: ASan/UBSan C++ tests failed" >&2; exit 1; }
  phase_done "ASan C++ tests"
fi

if wants python; then
  phase "Python tests against the ASan build of the module"
  $ASAN_PYTHON -m pytest -q -p no:cacheprovider tests/python/test_retriever.py tests/python/test_image.py \
    tests/python/test_image_formats.py tests/python/test_image_regressions.py \
    tests/python/test_metrics.py tests/python/test_encoder.py tests/python/test_boundary.py \
    tests/python/test_hardening.py -k "not l14"
  phase_done "Python tests under ASan"
fi

if wants tsan; then
  phase "ThreadSanitizer build (build/tsan) and concurrency tests"
  TSAN_FLAGS="-fsanitize=thread -fno-omit-frame-pointer"
  CC=clang CXX=clang++ cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="$TSAN_FLAGS" \
    -DCMAKE_EXE_LINKER_FLAGS="$TSAN_FLAGS" -DPE_BUILD_TESTS=ON -DPE_BUILD_ENCODER=OFF -DPE_BUILD_PYTHON=OFF >/dev/null
  targets=(test_retriever_threads test_hardening_threads test_hardening_index)
  cmake --build build/tsan -j "$JOBS" --target "${targets[@]}"
  for target in "${targets[@]}"; do
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:exitcode=66" "build/tsan/tests/cpp/$target" \
      --gtest_brief=1
  done
  phase_done "TSan"
fi

echo "sanitize: finished in $(( $(date +%s) - start )) s"
