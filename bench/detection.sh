#!/usr/bin/env bash
# Open-vocabulary detection recipe, end to end: build the scene dataset from
# Fashion-MNIST and emoji (`vlm data scenes`), pretrain the detection CLIP on
# image-caption pairs of the sources (every emoji image and 4,000 Fashion-MNIST
# items, captions = their names; data/get-detection-clip.sh), fine-tune the
# detection head and image tower from it (`vlm detect train`), evaluate on the
# validation split (seen classes) and on the held-out classes (never boxed in
# training, queried by name only) with the COCO evaluator. Ends with one JSON
# line: the seen-class stats (val_*), the held-out stats (heldout_*), minutes
# (detection training time) and clip_minutes (CLIP pretraining time, 0 when an
# existing CLIP was given or reused).
#
# usage: bench/detection.sh [--minutes M] [--clip CKPT] [--image-size S] [--patch-size P] [--batch-size B]
#                           [--lr LR] [--tower-lr-scale F] [--one-to-many K] [--seed S] [--train-images N]
#   --minutes M       detection training budget (default 60); the LR is a cosine over it
#   --image-size S, --patch-size P   detector input (default 64 px at patch 8, the CLIP's own)
#   --clip CKPT       the CLIP to start from (default: runs/detection-clip/checkpoints/
#                     epoch_latest.safetensors, pretrained first for CLIP_MINUTES=20 if missing)
#   --lr LR, --tower-lr-scale F   head LR (default 1e-3) and the tower's factor (default 1)
#   --one-to-many K   each box matched to K tokens, NMS 0.5 at inference (default 4; 1 = OWL-ViT's
#                     one-to-one matching without NMS)
#   --train-images N  training scenes (default 30000; val 1000, held-out 500)
#   --ensemble SEEN,NOVEL   also evaluate with the CLIP's scores fused in (vlm detect train --ensemble:
#                     p_det^(1-w) * p_clip^w on token crops; 0,0.65 keeps the seen classes' scores);
#                     the JSON adds the fused figures as fused_*
# Environment: VLM (binary, default build/vlm), SCENES (dataset folder, default data/scenes),
# CLIP_MINUTES (20).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=60 clip="" ensemble="" size=64 patch=8 batch=32 lr=1e-3 tower=1 o2m=4 seed=0 ntrain=30000
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --clip) clip=$2; shift 2 ;;
    --image-size) size=$2; shift 2 ;;
    --patch-size) patch=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --train-images) ntrain=$2; shift 2 ;;
    --tower-lr-scale) tower=$2; shift 2 ;;
    --one-to-many) o2m=$2; shift 2 ;;
    --ensemble) ensemble=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
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
clip_minutes=0
if [[ -z $clip ]]; then
  clip=runs/detection-clip/checkpoints/epoch_latest.safetensors
  if [[ ! -e $clip ]]; then
    pairs=$(bash data/get-detection-clip.sh data/detection-clip)
    clip_minutes=${CLIP_MINUTES:-20}
    "$vlm" pretrain --train-data "$pairs" --model bench/detection-clip.json --batch-size 128 \
      --max-minutes "$clip_minutes" --time-schedule --lr 1e-3 --warmup 50 --wd 0.1 --composite 255,255,255 \
      --workers 2 --logs runs --name detection-clip --save-every-steps 200 --log-every 25 >&2
  fi
fi
scenes=${SCENES:-data/scenes}
# Rebuilt when missing or built with another train size.
if [[ ! -e $scenes/train.json ]] || ! grep -qE "^train +$ntrain " "$scenes/README" 2>/dev/null; then
  rm -rf "$scenes"
  "$vlm" data scenes --out "$scenes" --train "$ntrain" --seed "$seed" >&2
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$vlm" detect train --clip "$clip" --train-data "$scenes/train.json" --val-data "$scenes/val.json" \
  --heldout-data "$scenes/heldout.json" --image-size "$size" --patch-size "$patch" --batch-size "$batch" --lr "$lr" --seed "$seed" \
  --tower-lr-scale "$tower" --one-to-many "$o2m" \
  --max-minutes "$minutes" --time-schedule --epochs 1000 --logs runs --name "detect-s$size-p$patch" --json > "$out"
line=$(tail -n 1 "$out" | sed "s/}\$/, \"clip_minutes\": $clip_minutes}/")
if [[ -n $ensemble ]]; then
  det=$(sed -n 's/.*"checkpoint": "\([^"]*\)".*/\1/p' <<< "$line")
  fused=$("$vlm" detect train --eval-only --checkpoint "$det" --clip "$clip" --ensemble "$ensemble" \
    --val-data "$scenes/val.json" --heldout-data "$scenes/heldout.json" --batch-size "$batch" --logs runs --json | tail -n 1 |
    sed -e 's/"val_/"fused_val_/g' -e 's/"heldout_/"fused_heldout_/g' -e 's/^{//' -e 's/}$//')
  line=$(sed "s/}\$/, \"ensemble\": \"$ensemble\", $fused}/" <<< "$line")
fi
echo "$line"
