#!/usr/bin/env bash
# Side-by-side training-step benchmark: vlm vs the same CLIP in PyTorch
# (bench/torch_clip.py), alternating in one session so all see the same
# machine state. Prints every run, then the medians and the ratios, and ends
# with one JSON line.
#
# usage: bench/speed.sh [--rounds N] [--model tiny] [--batch-size 64] [--steps 10] [--amp]
#   --amp  also vlm --precision amp_bf16 and PyTorch under torch.autocast(bfloat16):
#          four programs per round, in rotating order
# Environment: VLM (default build/vlm), PYTHON (default /usr/bin/python3, needs
# python3-torch: `scripts/deps.sh --reference`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=5 model=tiny batch=64 steps=10 amp=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --amp) amp=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "speed: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
vlm=${VLM:-$root/build/vlm}
py=${PYTHON:-/usr/bin/python3}
[[ -x $vlm ]] || { echo "speed: $vlm not built (cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build)" >&2; exit 2; }
"$py" -c 'import torch' 2>/dev/null || { echo "speed: $py has no torch (bash scripts/deps.sh --reference)" >&2; exit 2; }
export OMP_WAIT_POLICY=PASSIVE
jget() { grep -o "\"$1\": [^,}]*" <<<"$2" | head -n 1 | sed 's/.*: //; s/"//g'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
flags=$(grep -o -w 'avx2\|fma\|avx512f\|avx512bw\|avx512vl\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "cpu: $cpu; flags: $flags; $("$vlm" --version | grep '^cpu:')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} (left as the machine sets it)"

progs=(vlm torch)
((amp)) && progs=(vlm vlm_amp torch torch_amp)
declare -A step rss mfu
for p in "${progs[@]}"; do step[$p]="" rss[$p]="" mfu[$p]=""; done
run() { # one program once; sets out
  case $1 in
    vlm) out=$("$vlm" bench --model "$model" --batch-size "$batch" --steps "$steps" --json | tail -n 1) ;;
    vlm_amp) out=$("$vlm" bench --model "$model" --batch-size "$batch" --steps "$steps" --precision amp_bf16 --json | tail -n 1) ;;
    torch) out=$("$py" "$root/bench/torch_clip.py" --model "$model" --batch-size "$batch" --steps "$steps" | tail -n 1) ;;
    torch_amp) out=$("$py" "$root/bench/torch_clip.py" --model "$model" --batch-size "$batch" --steps "$steps" --precision amp_bf16 | tail -n 1) ;;
  esac
}
printf '| round |'; for p in "${progs[@]}"; do printf ' %s step ms | %s RSS MB |' "$p" "$p"; done; echo ' load avg |'
printf '|---|'; for p in "${progs[@]}"; do printf -- '---|---|'; done; echo '---|'
n=${#progs[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < n; i++)); do # rotate the order, so none always runs on a warmer machine
    p=${progs[$(((i + r - 1) % n))]}
    run "$p"
    step[$p]+="$(jget step_ms "$out") " rss[$p]+="$(jget peak_rss_mb "$out") "
    [[ $p == vlm* ]] && mfu[$p]+="$(jget mfu "$out") "
  done
  printf '| %d |' "$r"
  for p in "${progs[@]}"; do printf ' %s | %s |' "$(awk '{print $NF}' <<<"${step[$p]}")" "$(awk '{print $NF}' <<<"${rss[$p]}")"; done
  echo " $(cut -d' ' -f1 /proc/loadavg) |"
done
declare -A med mrss
for p in "${progs[@]}"; do
  med[$p]=$(tr ' ' '\n' <<<"${step[$p]}" | grep . | median)
  mrss[$p]=$(tr ' ' '\n' <<<"${rss[$p]}" | grep . | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
speedup=$(ratio "${med[torch]}" "${med[vlm]}") rssr=$(ratio "${mrss[vlm]}" "${mrss[torch]}")
mfu_vlm=$(tr ' ' '\n' <<<"${mfu[vlm]}" | grep . | median)
echo "median step: vlm ${med[vlm]} ms, PyTorch ${med[torch]} ms -> vlm throughput ${speedup}x PyTorch's; median peak RSS: vlm ${mrss[vlm]} MB, PyTorch ${mrss[torch]} MB -> ${rssr}x; vlm fp32 MFU $mfu_vlm" >&2
json=$(printf '"model": "%s", "batch_size": %s, "rounds": %s, "vlm_step_ms": %s, "torch_step_ms": %s, "throughput_ratio": %s, "vlm_peak_rss_mb": %s, "torch_peak_rss_mb": %s, "rss_ratio": %s, "vlm_mfu": %s' \
  "$model" "$batch" "$rounds" "${med[vlm]}" "${med[torch]}" "$speedup" "${mrss[vlm]}" "${mrss[torch]}" "$rssr" "$mfu_vlm")
if ((amp)); then
  a_f=$(ratio "${med[vlm]}" "${med[vlm_amp]}") a_t=$(ratio "${med[torch]}" "${med[vlm_amp]}") a_ta=$(ratio "${med[torch_amp]}" "${med[vlm_amp]}")
  mfu_amp=$(tr ' ' '\n' <<<"${mfu[vlm_amp]}" | grep . | median)
  echo "amp_bf16: vlm ${med[vlm_amp]} ms (${a_f}x vlm fp32, ${a_t}x PyTorch fp32, ${a_ta}x PyTorch autocast bf16 at ${med[torch_amp]} ms); MFU $mfu_amp" >&2
  json+=$(printf ', "vlm_amp_step_ms": %s, "torch_amp_step_ms": %s, "amp_vs_vlm_fp32": %s, "amp_vs_torch_fp32": %s, "amp_vs_torch_amp": %s, "vlm_amp_mfu": %s, "vlm_amp_peak_rss_mb": %s, "torch_amp_peak_rss_mb": %s' \
    "${med[vlm_amp]}" "${med[torch_amp]}" "$a_f" "$a_t" "$a_ta" "$mfu_amp" "${mrss[vlm_amp]}" "${mrss[torch_amp]}")
fi
echo "{$json}"
