#!/usr/bin/env bash
# Data-parallel scaling on this machine: the same CLIP pretraining (same data,
# same global batch) run by one process with 2 OpenMP threads and by
# `mpirun -np 2` with 1 thread per rank, alternating, round after round.
# Throughput is global pairs per second over the steady-state steps (after the
# first 10). Prints every run, the medians, and one JSON line with the ratio
# (2 ranks x 1 thread over 1 rank x 2 threads).
#
# usage: bench/mpi-scaling.sh [--rounds N (3)] [--model NAME|JSON (tiny)] [--batch-size GLOBAL (128)]
#                             [--steps N (50)] [--train-data DATA]
#   --train-data  default: the emoji + Fashion-MNIST caption shards of data/get-detection-clip.sh
# Environment: VLM (an MPI build; default build-mpi/vlm, built if missing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rounds=3 model=tiny batch=128 steps=50 data=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --train-data) data=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "mpi-scaling: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
(( batch % 2 == 0 )) || { echo "mpi-scaling: --batch-size must be even (split over 2 ranks)" >&2; exit 2; }
(( steps > 10 )) || { echo "mpi-scaling: --steps must exceed the 10 warm-up steps" >&2; exit 2; }
vlm=${VLM:-$root/build-mpi/vlm}
if [[ ! -x $vlm ]]; then
  bash scripts/deps.sh
  cmake -S . -B build-mpi -DCMAKE_BUILD_TYPE=Release -DVLM_MPI=ON >/dev/null
  cmake --build build-mpi -j2 --target vlm_cli >/dev/null
fi
[[ -n $data ]] || data=$(bash data/get-detection-clip.sh data/detection-clip)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
logs=$(mktemp -d /tmp/vlm-mpi-scaling.XXXXXX)
trap 'rm -rf "$logs"' EXIT
common=(pretrain --train-data "$data" --model "$model" --max-steps "$steps" --warmup 10 --log-every 10
        --save-every-steps 100000 --logs "$logs")
# Global pairs/s over the logged windows after step 10: total pairs / total time.
rate() {
  awk -v g="$batch" '/"pairs_per_s"/ {
      match($0, /"step": [0-9]+/); s = substr($0, RSTART + 8, RLENGTH - 8) + 0
      match($0, /"pairs_per_s": [0-9.]+/); p = substr($0, RSTART + 15, RLENGTH - 15) + 0
      if (s > 10 && p > 0) { n += 10 * g; t += 10 * g / p } }
    END { if (t > 0) printf "%.1f", n / t; else print "nan" }' "$1"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
one=() two=()
printf '%-6s %-22s %-22s %s\n' round "1 rank x 2 threads" "2 ranks x 1 thread" ratio
for ((r = 1; r <= rounds; r++)); do
  OMP_NUM_THREADS=2 "$vlm" "${common[@]}" --batch-size "$batch" --workers 2 --name "one$r" >/dev/null 2>"$logs/one$r.err"
  mpirun -np 2 --bind-to core -x OMP_NUM_THREADS=1 "$vlm" "${common[@]}" --batch-size $((batch / 2)) --workers 1 \
    --name "two$r" >/dev/null 2>"$logs/two$r.err"
  a=$(rate "$logs/one$r/metrics.jsonl") b=$(rate "$logs/two$r/metrics.jsonl")
  one+=("$a") two+=("$b")
  printf '%-6s %-22s %-22s %s\n' "$r" "$a pairs/s" "$b pairs/s" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')"
done
ma=$(printf '%s\n' "${one[@]}" | median) mb=$(printf '%s\n' "${two[@]}" | median)
grep -h "rank 0 waited" "$logs/two$rounds.err" | sed 's/^/last 2-rank run: /' || true
echo "{\"model\": \"$model\", \"global_batch\": $batch, \"steps\": $steps, \"rounds\": $rounds," \
  "\"one_rank_two_threads_pairs_per_s\": $ma, \"two_ranks_one_thread_pairs_per_s\": $mb," \
  "\"scaling\": $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}')}"
