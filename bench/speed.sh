#!/usr/bin/env bash
# Side-by-side training-step benchmark: vlm vs the same CLIP in PyTorch
# (bench/torch_clip.py), alternating in one session so both see the same
# machine state. Prints every run, then the medians and the ratios, and ends
# with one JSON line.
#
# usage: bench/speed.sh [--rounds N] [--model tiny] [--batch-size 64] [--steps 10]
# Environment: VLM (default build/vlm), PYTHON (default /usr/bin/python3, needs
# python3-torch: `scripts/deps.sh --reference`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=5 model=tiny batch=64 steps=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "speed: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
vlm=${VLM:-$root/build/vlm}
py=${PYTHON:-/usr/bin/python3}
[[ -x $vlm ]] || { echo "speed: $vlm not built (cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build)" >&2; exit 2; }
"$py" -c 'import torch' 2>/dev/null || { echo "speed: $py has no torch (bash scripts/deps.sh --reference)" >&2; exit 2; }
export OMP_WAIT_POLICY=PASSIVE
jget() { grep -o "\"$1\": [^,}]*" <<<"$2" | head -n 1 | sed 's/.*: //'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
vs=() ts=() vr=() tr=()
echo "| round | vlm step ms | vlm peak RSS MB | PyTorch step ms | PyTorch peak RSS MB | load avg |"
echo "|---|---|---|---|---|---|"
for ((r = 1; r <= rounds; r++)); do
  # alternate which program goes first, so neither always runs on a warmer machine
  for who in $( ((r % 2)) && echo "vlm torch" || echo "torch vlm"); do
    if [[ $who == vlm ]]; then
      out=$("$vlm" bench --model "$model" --batch-size "$batch" --steps "$steps" --json | tail -n 1)
      vs+=("$(jget step_ms "$out")") vr+=("$(jget peak_rss_mb "$out")")
    else
      out=$("$py" "$root/bench/torch_clip.py" --model "$model" --batch-size "$batch" --steps "$steps" | tail -n 1)
      ts+=("$(jget step_ms "$out")") tr+=("$(jget peak_rss_mb "$out")")
    fi
  done
  echo "| $r | ${vs[-1]} | ${vr[-1]} | ${ts[-1]} | ${tr[-1]} | $(cut -d' ' -f1 /proc/loadavg) |"
done
mv=$(printf '%s\n' "${vs[@]}" | median) mt=$(printf '%s\n' "${ts[@]}" | median)
rv=$(printf '%s\n' "${vr[@]}" | median) rt=$(printf '%s\n' "${tr[@]}" | median)
speedup=$(awk -v a="$mt" -v b="$mv" 'BEGIN {printf "%.2f", a / b}')
rss=$(awk -v a="$rv" -v b="$rt" 'BEGIN {printf "%.2f", a / b}')
echo "median step: vlm $mv ms, PyTorch $mt ms -> vlm throughput ${speedup}x PyTorch's; median peak RSS: vlm $rv MB, PyTorch $rt MB -> ${rss}x" >&2
printf '{"model": "%s", "batch_size": %s, "rounds": %s, "vlm_step_ms": %s, "torch_step_ms": %s, "throughput_ratio": %s, "vlm_peak_rss_mb": %s, "torch_peak_rss_mb": %s, "rss_ratio": %s}\n' \
  "$model" "$batch" "$rounds" "$mv" "$mt" "$speedup" "$rv" "$rt" "$rss"
