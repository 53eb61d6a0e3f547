#!/usr/bin/env bash
# vlm's kernel levels side by side on this CPU: `vlm bench` (tiny, batch 64)
# with VLM_ISA capped at each level the CPU has (portable is skipped unless
# --portable), in fp32 and amp_bf16, in rotating order, medians of N rounds.
# Shows that the AVX-512 kernels are not slower than the AVX2 ones and what
# amp_bf16 gains with vdpbf16ps and without it (emulated). Ends with one JSON line.
#
# usage: bench/isa.sh [--rounds N] [--steps N] [--portable]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=3 steps=10 portable=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --portable) portable=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "isa: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
vlm=${VLM:-$root/build/vlm}
[[ -x $vlm ]] || { echo "isa: $vlm not built" >&2; exit 2; }
export OMP_WAIT_POLICY=PASSIVE
hw=$("$vlm" --version | sed -n 's/^cpu: \([a-z0-9_]*\).*/\1/p')
levels=()
((portable)) && levels+=(portable)
for l in avx2 avx512 avx512_bf16; do
  levels+=("$l")
  [[ $l == "$hw" ]] && break
done
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1); flags: $(grep -o -w 'avx2\|fma\|avx512f\|avx512bw\|avx512vl\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '); best level $hw"
jget() { grep -o "\"$1\": [^,}]*" <<<"$2" | head -n 1 | sed 's/.*: //'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
runs=()
for l in "${levels[@]}"; do for p in fp32 amp_bf16; do runs+=("$l:$p"); done; done
declare -A ms mfu
for k in "${runs[@]}"; do ms[$k]="" mfu[$k]=""; done
n=${#runs[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < n; i++)); do
    k=${runs[$(((i + r - 1) % n))]}
    out=$(VLM_ISA=${k%%:*} "$vlm" bench --steps "$steps" --precision "${k##*:}" --json 2>/dev/null | tail -n 1)
    ms[$k]+="$(jget step_ms "$out") " mfu[$k]+="$(jget mfu "$out") "
  done
done
echo "| kernels | precision | step ms (median of $rounds) | pairs/s | MFU |"
echo "|---|---|---|---|---|"
json=""
for k in "${runs[@]}"; do
  m=$(tr ' ' '\n' <<<"${ms[$k]}" | grep . | median) f=$(tr ' ' '\n' <<<"${mfu[$k]}" | grep . | median)
  echo "| ${k%%:*} | ${k##*:} | $m | $(awk -v m="$m" 'BEGIN {printf "%.1f", 64000 / m}') | $f |"
  json+="${json:+, }\"${k%%:*}_${k##*:}_step_ms\": $m"
done
echo "{$json}"
