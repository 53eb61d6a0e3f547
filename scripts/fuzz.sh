#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c; clang, ASan + UBSan,
# build-fuzz/) and runs each for SECONDS (default 15) on a copy of its
# committed seed corpus (tests/fuzz/corpus/NAME/, with tests/fuzz/NAME.dict
# when present). A crash, leak, timeout or out-of-memory fails the run and is
# left in build-fuzz/crashes/NAME/; copy the input to tests/fuzz/repro/NAME/
# once fixed (the regular suite replays every file there: tests/test_fuzz_repro.c).
# Per-harness figures (executions, coverage, corpus, CPU seconds the fuzzer
# really used) go to build-fuzz/fuzz-report.tsv.
#
# usage: [FUZZ_JOBS=N] scripts/fuzz.sh [SECONDS] [NAME...]
#   FUZZ_JOBS: harnesses run at once (default 1; one libFuzzer process each, one core each)
#   tests/fuzz/NAME.options: extra libFuzzer flags
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
[[ $# -gt 0 ]] && shift
bash scripts/deps.sh --fuzz
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVLM_FUZZ=ON \
  -DVLM_OPENMP=OFF -DVLM_SHARED=OFF -DVLM_BUILD_TESTS=OFF >/dev/null
names=("$@")
if ((${#names[@]} == 0)); then
  for f in tests/fuzz/fuzz_*.c; do names+=("$(basename "$f" .c)"); done
fi
cmake --build build-fuzz -j"$(nproc)" --target "${names[@]}"
report=build-fuzz/fuzz-report.tsv
echo -e "harness\tseconds\texecs\tcov\tft\tcorpus\tcpu_s\tresult" >"$report"
fail=0
run_one() {
  local name=$1 short=${1#fuzz_}
  local work=build-fuzz/corpus/$short crashes=build-fuzz/crashes/$short log=build-fuzz/$name.log
  mkdir -p "$work" "$crashes"
  [[ -d tests/fuzz/corpus/$short ]] && cp -n tests/fuzz/corpus/$short/* "$work"/ 2>/dev/null || true
  local dict=()
  [[ -f tests/fuzz/$short.dict ]] && dict=(-dict="tests/fuzz/$short.dict")
  [[ -f tests/fuzz/$short.options ]] && read -r -a extra <"tests/fuzz/$short.options" && dict+=("${extra[@]}")
  local rc=0 TIMEFORMAT='%U %S'
  # CPU time (user + system) of the fuzzer itself, not wall time: a busy
  # machine would otherwise inflate the CPU-minutes reported.
  { time LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    TMPDIR=$(mktemp -d) ./build-fuzz/"$name" "$work" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$crashes/" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || rc=$?; } 2>"$log.cpu"
  local cpu
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$log.cpu")
  local execs cov ft corp
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  corp=$(ls "$work" | wc -l)
  local result=ok
  ((rc)) && result="FAILED (rc $rc, see $log, input in $crashes/)"
  echo -e "$name\t$secs\t${execs:-0}\t${cov:-0}\t${ft:-0}\t$corp\t${cpu:-0}\t$result" >>"$report"
  # every run, kept: build-fuzz/fuzz-history.tsv (date, harness, seconds asked,
  # executions, edges, features, result, CPU seconds used)
  echo -e "$(date -u +%FT%TZ)\t$name\t$secs\t${execs:-0}\t${cov:-0}\t${ft:-0}\t${result%% *}\t${cpu:-0}" >>build-fuzz/fuzz-history.tsv
  printf '%-20s %8s execs  cov %6s  ft %6s  corpus %5s  cpu %6ss  %s\n' "$name" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$corp" "${cpu:-0}" "$result"
  return $rc
}
jobs=${FUZZ_JOBS:-1}
running=0
for n in "${names[@]}"; do
  if ((running >= jobs)); then
    wait -n || fail=1
    running=$((running - 1))
  fi
  run_one "$n" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || fail=1
  running=$((running - 1))
done
exit $fail
