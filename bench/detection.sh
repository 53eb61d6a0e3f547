#!/usr/bin/env bash
# Open-vocabulary detection recipe, end to end: build the scene dataset from
# Fashion-MNIST and emoji (`vlm data scenes`), fine-tune the detection head and
# image tower from an emoji-pretrained CLIP (`vlm detect train`), evaluate on
# the validation split (seen classes) and on the held-out classes (never boxed
# in training, queried by name only) with the COCO evaluator. Ends with one
# JSON line: the seen-class stats (val_*), the held-out stats (heldout_*) and
# minutes (detection training time).
#
# usage: bench/detection.sh [--minutes M] [--clip CKPT] [--image-size S] [--patch-size P] [--batch-size B]
#                           [--lr LR] [--seed S]
#   --minutes M     detection training budget (default 45); the LR is a cosine over it
#   --image-size S, --patch-size P   detector input (default 64 px at patch 8: the tiny CLIP's
#                   32 px / patch 4 tower reads full-resolution scenes with its own 8 x 8 grid)
#   --clip CKPT     the CLIP to start from (default: pretrain the tiny emoji CLIP for
#                   CLIP_MINUTES=30 first, as bench/emoji-zeroshot.sh does, unless
#                   runs/emoji-zeroshot-30m/checkpoints/epoch_latest.safetensors exists)
# Environment: VLM (binary, default build/vlm), SCENES (dataset folder, default data/scenes).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=45 clip="" size=64 patch=8 batch=32 lr=1e-3 seed=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --clip) clip=$2; shift 2 ;;
    --image-size) size=$2; shift 2 ;;
    --patch-size) patch=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "detection: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
vlm=${VLM:-$root/build/vlm}
if [[ ! -x $vlm ]]; then
  bash scripts/deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" >/dev/null
fi
bash data/get-emoji.sh data/emoji >/dev/null
bash data/get-fashion-mnist.sh data/fashion-mnist >/dev/null
export OMP_WAIT_POLICY=PASSIVE
if [[ -z $clip ]]; then
  clip=runs/emoji-zeroshot-30m/checkpoints/epoch_latest.safetensors
  if [[ ! -e $clip ]]; then
    MINUTES=${CLIP_MINUTES:-30} BATCH=128 bash bench/emoji-zeroshot.sh >&2
  fi
fi
scenes=${SCENES:-data/scenes}
# Held-out classes: emoji the CLIP saw as captions but that are never boxed here.
if [[ ! -e $scenes/train.json ]]; then
  "$vlm" data scenes --out "$scenes" --seed "$seed" >&2
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$vlm" detect train --clip "$clip" --train-data "$scenes/train.json" --val-data "$scenes/val.json" \
  --heldout-data "$scenes/heldout.json" --image-size "$size" --patch-size "$patch" --batch-size "$batch" --lr "$lr" --seed "$seed" \
  --max-minutes "$minutes" --time-schedule --epochs 1000 --logs runs --name "detect-s$size-p$patch" --json > "$out"
tail -n 1 "$out"
