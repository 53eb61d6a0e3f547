#!/usr/bin/env bash
# The README's test command: installs missing Debian packages, configures,
# builds (warnings are errors) and runs the CTest suite; then the same suite
# under AddressSanitizer+UBSan.
# usage: scripts/test.sh [--fast | --asan-only | --tsan]
#   (default)    Release build + ctest, then ASan+UBSan build + ctest
#   --fast       Release build + ctest only
#   --asan-only  ASan+UBSan build + ctest only
#   --tsan       ThreadSanitizer build + ctest of the threaded tests
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
bash scripts/deps.sh
jobs=$(nproc)
export OMP_WAIT_POLICY=PASSIVE

run_suite() { # builddir sanitize [ctest args...]
  local dir=$1 san=$2; shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=$([[ -z $san ]] && echo Release || echo RelWithDebInfo) \
    -DVLM_WERROR=ON -DVLM_SANITIZE="$san" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure "$@")
}

case "$mode" in
  all|--all)
    run_suite build ""
    ASAN_OPTIONS=detect_leaks=1 run_suite build-asan address -E '^test_slow_' ;;
  --fast) run_suite build "" ;;
  --asan-only) ASAN_OPTIONS=detect_leaks=1 run_suite build-asan address ;;
  --tsan)
    # The loader's worker threads (pthreads) are what TSan checks. libgomp is
    # not TSan-instrumented, so its barriers are invisible and every OpenMP
    # region would be reported; OpenMP therefore runs one thread here.
    OMP_NUM_THREADS=1 TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=1" \
      run_suite build-tsan thread -E '^test_slow_' ;;
  *) echo "usage: scripts/test.sh [--fast | --asan-only | --tsan]" >&2; exit 2 ;;
esac
