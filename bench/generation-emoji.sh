#!/usr/bin/env bash
# Emoji generation conditioned on emoji names: `vlm generate train` on the emoji
# image-caption pairs (apple, google, facebook; caption = the emoji's name; 32x32
# RGB composited on white) with the frozen detection CLIP (bench/generation.sh
# pretrains it if missing), with the Fashion-MNIST recipe (cosine noise schedule,
# the CLIP embedding also as 4 extra tokens, Min-SNR-5 loss weights), then a
# sample grid of a few names (guidance 3 at noise levels sigma in (0.28, 2.5],
# DDIM 100 steps).
#
# usage: bench/generation-emoji.sh [--minutes M] [--clip CKPT] [--out PNG] [--logs DIR] [--name NAME] [--seed S]
#   --minutes M   training budget (default 88)
#   --out PNG     sample grid (default docs/generate-emoji.png), one row per name, 8 samples each
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=88 clip=runs/detection-clip/checkpoints/epoch_latest.safetensors out=docs/generate-emoji.png logs=runs
name=gen-emoji seed=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --clip) clip=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "generation-emoji: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
vlm=${VLM:-$root/build/vlm}
[[ -x $vlm ]] || { bash scripts/deps.sh; cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null; cmake --build build -j2 >/dev/null; }
bash data/get-emoji.sh data/emoji >/dev/null
if [[ ! -e $clip ]]; then
  echo "generation-emoji: no CLIP at $clip; run bench/generation.sh (it pretrains the detection CLIP) or pass --clip" >&2
  exit 2
fi
mkdir -p "$logs"
"$vlm" generate train --clip "$clip" --train-data data/emoji/train.tsv --composite 255,255,255 --channels 3 \
  --width 192 --heads 3 --layers 6 --patch-size 4 --batch-size 64 --lr 5e-4 --warmup 500 --lr-scheduler cosine \
  --ema-decay 0.999 --min-snr 5 --schedule cosine --cond-tokens 4 --max-minutes "$minutes" --time-schedule --seed "$seed" --logs "$logs" --name "$name" \
  --save-every-steps 500 > "$logs/$name.train.json"
cat "$logs/$name.train.json" >&2
names=("grinning face" "face with tears of joy" "blue heart" "cat face" "banana" "rocket" "fire" "red apple" "four leaf clover" "deciduous tree")
args=()
for n in "${names[@]}"; do args+=(--prompt "$n"); done
"$vlm" generate sample --checkpoint "$logs/$name/checkpoints/epoch_latest.safetensors" "${args[@]}" --n 8 \
  --steps 100 --guidance 3 --guidance-interval 0.28,2.5 --seed "$seed" --scale 2 --out "$out"
tail -n 1 "$logs/$name.train.json"
