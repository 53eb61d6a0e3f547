#!/usr/bin/env bash
# The README's test command: installs missing Debian packages, configures,
# builds (warnings are errors) and runs the CTest suite; the MPI build
# (-DVLM_MPI=ON, build-mpi/) and its mpirun tests; then the suite under
# AddressSanitizer+UBSan.
# usage: scripts/test.sh [--fast | --asan-only | --tsan]
#   (default)    Release build + ctest, the examples against the installed package (scripts/examples.sh),
#                the serve page in headless Chromium (scripts/page_test.sh), MPI build + its tests,
#                ASan+UBSan build + ctest, then every libFuzzer harness for 15 s (scripts/fuzz.sh 15)
#   --fast       Release build + ctest, MPI build + its tests
#   --asan-only  ASan+UBSan build + ctest only
#   --tsan       ThreadSanitizer build + ctest of the threaded tests
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
bash scripts/deps.sh
jobs=$(nproc)
export OMP_WAIT_POLICY=PASSIVE
# leaks inside system libraries (libxml2 under librsvg), not vlm's: tests/lsan.supp
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"

run_suite() { # builddir sanitize [ctest args...]
  local dir=$1 san=$2 mpi=OFF; shift 2
  [[ $dir == build-mpi ]] && mpi=ON
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=$([[ -z $san ]] && echo Release || echo RelWithDebInfo) \
    -DVLM_WERROR=ON -DVLM_SANITIZE="$san" -DVLM_MPI=$mpi \
    -DVLM_SHARED=$([[ -z $san && $mpi == OFF ]] && echo ON || echo OFF) >/dev/null
  if [[ $mpi == ON ]]; then # only the CLI and the mpirun tests (the rest is the same code as build/)
    cmake --build "$dir" -j"$jobs" --target vlm_cli $(basename -s .c tests/test_mpi_*.c)
  else
    cmake --build "$dir" -j"$jobs"
  fi
  (cd "$dir" && ctest --output-on-failure "$@")
}

case "$mode" in
  all|--all)
    run_suite build ""
    bash scripts/examples.sh build
    bash scripts/page_test.sh build
    run_suite build-mpi "" -R '^test_mpi_'
    ASAN_OPTIONS=detect_leaks=1 run_suite build-asan address -E '^test_slow_'
    bash scripts/fuzz.sh 15 ;;
  --fast) run_suite build ""; bash scripts/examples.sh build; run_suite build-mpi "" -R '^test_mpi_' ;;
  --asan-only) ASAN_OPTIONS=detect_leaks=1 run_suite build-asan address ;;
  --tsan)
    # The loader's worker threads (pthreads) are what TSan checks. libgomp is
    # not TSan-instrumented, so its barriers are invisible and every OpenMP
    # region would be reported; OpenMP therefore runs one thread here.
    OMP_NUM_THREADS=1 TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=1" \
      run_suite build-tsan thread -E '^test_slow_' ;;
  *) echo "usage: scripts/test.sh [--fast | --asan-only | --tsan]" >&2; exit 2 ;;
esac
