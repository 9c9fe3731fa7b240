#!/usr/bin/env bash
# Fuzzing: builds the libFuzzer harnesses in fuzz/ with clang (libFuzzer +
# AddressSanitizer + UndefinedBehaviorSanitizer) in build/fuzz, writes the seed
# corpus, replays every saved crash input in tests/data/fuzz_regressions/, then
# runs each harness for PE_FUZZ_SECONDS seconds (default 60). Fails on any
# crash, sanitizer report, leak, timeout or out-of-memory; the input that did
# it is left in build/fuzz/artifacts/<harness>/ — fix the bug, then copy the
# input to tests/data/fuzz_regressions/<harness>/ so ctest replays it forever.
#
#   bash scripts/fuzz.sh                      # all harnesses, 60 s each
#   PE_FUZZ_SECONDS=600 bash scripts/fuzz.sh fuzz_image   # one harness, longer
#
# The corpus grown by earlier runs (build/fuzz/corpus/) is reused.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
SECONDS_EACH=${PE_FUZZ_SECONDS:-60}
JOBS=${PE_BUILD_JOBS:-$(nproc)}
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(fuzz_image fuzz_index fuzz_npy)

# clang, its libFuzzer/sanitizer runtimes and llvm-symbolizer (readable stack
# traces), installed like scripts/bootstrap.sh installs its packages.
FUZZ_PACKAGES=(clang libclang-rt-14-dev llvm)
missing=()
for package in "${FUZZ_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "fuzz: not root and no sudo; as root run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The seed corpus writes index files with the Python binding.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import perception_retrieval" >/dev/null 2>&1; then
  bash scripts/bootstrap.sh
fi

echo "== fuzz: building the harnesses (clang, -fsanitize=fuzzer,address,undefined)"
CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPE_BUILD_FUZZERS=ON \
  -DPE_BUILD_TESTS=OFF -DPE_BUILD_ENCODER=OFF -DPE_BUILD_PYTHON=OFF >/dev/null
cmake --build build/fuzz -j "$JOBS" --target "${HARNESSES[@]}"

echo "== fuzz: seed corpus"
rm -rf build/fuzz/seeds
.venv/bin/python fuzz/make_seed_corpus.py build/fuzz/seeds

# The harnesses' scratch files (fuzz/targets.hpp) stay inside the build tree.
export TMPDIR=$ROOT/build/fuzz/tmp
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
# The decoders log images over max_pixels as warnings: not news for a fuzzer.
export PE_LOG_LEVEL=${PE_LOG_LEVEL:-error}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for harness in "${HARNESSES[@]}"; do
  binary=build/fuzz/fuzz/$harness
  regressions=tests/data/fuzz_regressions/$harness
  artifacts=build/fuzz/artifacts/$harness
  corpus=build/fuzz/corpus/$harness
  mkdir -p "$artifacts" "$corpus" "$regressions"
  log=build/fuzz/$harness.log

  mapfile -t saved < <(find "$regressions" -type f -not -name '.*' | sort)
  if [ ${#saved[@]} -gt 0 ]; then
    echo "== fuzz: $harness replays ${#saved[@]} saved crash inputs"
    if ! "$binary" "${saved[@]}" >"$log.replay" 2>&1; then
      tail -n 40 "$log.replay"
      failed+=("$harness (a saved regression input fails again: $log.replay)")
      continue
    fi
  fi

  echo "== fuzz: $harness for $SECONDS_EACH s"
  set +e
  # -timeout: one input running 25 s is a hang; -rss_limit_mb also caps single
  # allocations (malloc_limit_mb defaults to it), so a bomb that slips past a
  # size check shows up as an out-of-memory crash instead of thrashing.
  "$binary" -max_total_time="$SECONDS_EACH" -timeout=25 -rss_limit_mb=2560 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "build/fuzz/seeds/$harness" "$regressions" \
    >"$log" 2>&1
  status=$?
  set -e
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n1)
  units=$(find "$corpus" -type f | wc -l)
  summary+=("$harness: ${runs:-?} inputs in ${SECONDS_EACH} s (${rate:-?} exec/s), corpus $units files, exit $status")
  if [ "$status" -ne 0 ]; then
    grep -E "ERROR|runtime error|SUMMARY|Test unit written|terminate|what\(\)" "$log" | head -n 20 || true
    failed+=("$harness (exit $status; input in $artifacts/, log $log)")
  fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
echo "fuzz: finished in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
  echo "fuzz: reproduce with build/fuzz/fuzz/<harness> <input>; after fixing, copy the input to" \
    "tests/data/fuzz_regressions/<harness>/" >&2
  exit 1
fi
