#!/usr/bin/env bash
# Fashion-MNIST with `vlm finetune`: fetch the data, train a ViT classifier
# (from scratch by default) for a 30-minute training budget on this machine,
# evaluate on the standard 10,000-image test set, and end with one JSON line
#   {"top1": ..., "top5": ..., "n": 10000, "minutes": ...}
# (minutes = training time; evaluation is not counted).
#
# usage: bench/fashion-mnist.sh [--minutes M] [--from CLIP_CKPT] [--logs DIR] [--name NAME] [--seed S]
#   --minutes M       training budget (default 30); the LR schedule is cosine over it
#   --from CKPT       start from a CLIP checkpoint's vision tower (e.g. an emoji CLIP from
#                     `vlm pretrain`) instead of from scratch; the tower's own architecture is used
# Environment: VLM (binary, default build/vlm; built with CMake Release if missing),
#              FMNIST_DIR (default: data/fashion-mnist, filled by data/get-fashion-mnist.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=30 from="" logs="$root/logs" name="" seed=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "fashion-mnist: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

vlm=${VLM:-$root/build/vlm}
if [[ ! -x $vlm ]]; then
  echo "fashion-mnist: building $vlm" >&2
  bash "$root/scripts/deps.sh"
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j2 >/dev/null
fi

dir=${FMNIST_DIR:-$root/data/fashion-mnist}
if [[ ! -e $dir/train-images-idx3-ubyte.gz || ! -e $dir/t10k-images-idx3-ubyte.gz ]]; then
  bash "$root/data/get-fashion-mnist.sh" "$dir"
fi

common=(--train-data "$dir/train-images-idx3-ubyte.gz" --val-data "$dir/t10k-images-idx3-ubyte.gz"
        --max-minutes "$minutes" --time-schedule --epochs 1000 --seed "$seed" --workers 2
        --logs "$logs" --log-every 50 --save-every-steps 1000 --val-frequency 2)
if [[ -z $from ]]; then
  # From scratch: a conv stem (3x3 convs: one at 32x32, then three with stride 2 -> 4x4 tokens) under
  # a 6-layer width-128 ViT, mean pooling, linear head.
  recipe=(--model tiny --image-size 32 --patch-size 8 --stem 32,32,64,128 --width 128 --layers 6 --heads 4
          --pool mean --batch-size 128 --lr 1e-3 --wd 0.05 --warmup 200 --label-smoothing 0.1
          --aug-scale 0.8,1 --hflip 0.5)
  name=${name:-fmnist-scratch-s$seed}
else
  # From a CLIP: its vision tower (image size, patch, width, depth) with a
  # linear head on mean-pooled tokens, full fine-tuning with layer-wise decay.
  recipe=(--checkpoint "$from" --pool mean --batch-size 128 --lr 1e-3 --wd 0.05 --warmup 200
          --layer-decay 0.8 --label-smoothing 0.1 --aug-scale 0.8,1 --hflip 0.5)
  name=${name:-fmnist-clip-s$seed}
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$vlm" finetune "${common[@]}" "${recipe[@]}" --name "$name" > "$out"
result=$(grep '^{' "$out" | tail -1)
echo "fashion-mnist: $result" >&2
# One JSON line: top1, top5, n (test set) and training minutes.
printf '%s\n' "$result" | sed -E 's/.*("top1": [0-9.]+, "top5": [0-9.]+, "n": [0-9]+).*("minutes": [0-9.]+).*/{\1, \2}/'
