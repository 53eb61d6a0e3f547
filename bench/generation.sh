#!/usr/bin/env bash
# Fashion-MNIST text-conditioned generation end to end: a frozen CLIP (the
# detection CLIP of bench/detection.sh: emoji + Fashion-MNIST captions; pretrained
# for 20 min if missing), a Fashion-MNIST classifier for the conditional accuracy
# (the finetune issue's model: `vlm finetune` from scratch, bench/fashion-mnist.sh,
# 30 min if missing; trained after the generator), `vlm generate train` (DiT on
# the native 28x28 images, 7x7 patches of 4, prompts "a photo of a {class}";
# the cosine noise schedule; the CLIP embedding also as 4 extra tokens; Min-SNR-5
# weights as the timestep density (--t-sampling importance); peak lr 1.5e-3, cosine over the
# time budget; no flip augmentation: every sneaker and ankle boot in
# Fashion-MNIST points the same way, a mirrored one is off the data distribution)
# for a time budget, and `vlm generate eval` (guidance 3 at noise levels sigma in
# (0.28, 2.5] only, DDIM 100 steps). Ends with the eval JSON line plus "minutes"
# (generator training time).
#
# usage: bench/generation.sh [--minutes M] [--clip CKPT] [--classifier CKPT] [--n-per-class N]
#                            [--guidance S] [--guidance-interval LO,HI] [--sampler ddim|ddpm] [--steps N]
#                            [--logs DIR] [--name NAME] [--seed S] [-- extra train flags]
#   --minutes M        generator training budget (default 88)
#   --clip CKPT        default runs/detection-clip/checkpoints/epoch_latest.safetensors (pretrained if missing)
#   --classifier CKPT  default runs/fmnist-classifier-30m/checkpoints/epoch_latest.safetensors (trained if missing)
#   --n-per-class N    images generated per class for the evaluation (default 100; the real-vs-real
#                      baseline uses 2N test images per class)
#   --guidance S (3), --guidance-interval LO,HI (0.28,2.5; 0,inf = every step), --sampler (ddim),
#   --steps (100): the evaluation's sampling (vlm generate eval)
# Environment: VLM (binary, default build/vlm; built if missing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=88 clip="" clf="" npc=100 guidance=3 ginterval=0.28,2.5 sampler=ddim steps=100 logs=runs name=gen-fmnist seed=0
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --clip) clip=$2; shift 2 ;;
    --classifier) clf=$2; shift 2 ;;
    --n-per-class) npc=$2; shift 2 ;;
    --guidance) guidance=$2; shift 2 ;;
    --guidance-interval) ginterval=$2; shift 2 ;;
    --sampler) sampler=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "generation: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
vlm=${VLM:-$root/build/vlm}
if [[ ! -x $vlm ]]; then
  bash "$root/scripts/deps.sh"
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j2 >/dev/null
fi
fm=data/fashion-mnist
bash data/get-fashion-mnist.sh "$fm" >/dev/null
printf '%s\n' "t-shirt" "trouser" "pullover" "dress" "coat" "sandal" "shirt" "sneaker" "bag" "ankle boot" \
  > "$fm/prompt_names.txt" # the CLIP's caption words for the 10 labels

if [[ -z $clip ]]; then
  clip=runs/detection-clip/checkpoints/epoch_latest.safetensors
  if [[ ! -e $clip ]]; then
    pairs=$(bash data/get-detection-clip.sh data/detection-clip)
    "$vlm" pretrain --train-data "$pairs" --model bench/detection-clip.json --batch-size 128 \
      --max-minutes 20 --time-schedule --lr 1e-3 --warmup 50 --wd 0.1 --composite 255,255,255 \
      --workers 2 --logs runs --name detection-clip --save-every-steps 200 --log-every 25 >&2
  fi
fi
mkdir -p "$logs"
"$vlm" generate train --clip "$clip" --train-data "$fm/train-images-idx3-ubyte.gz" --classnames "$fm/prompt_names.txt" \
  --template "a photo of a {}" --channels 1 --image-size 28 --width 192 --heads 3 --layers 6 --patch-size 4 \
  --batch-size 64 --lr 1.5e-3 --warmup 500 --lr-scheduler cosine --ema-decay 0.999 --min-snr 5 \
  --schedule cosine --cond-tokens 4 --t-sampling importance \
  --max-minutes "$minutes" --time-schedule --seed "$seed" --logs "$logs" --name "$name" --save-every-steps 500 \
  "${extra[@]}" > "$logs/$name.train.json"
train=$(tail -n 1 "$logs/$name.train.json")
echo "generation: $train" >&2
train_min=$(printf '%s' "$train" | sed -E 's/.*"minutes": ([0-9.]+).*/\1/')
ckpt=$logs/$name/checkpoints/epoch_latest.safetensors
if [[ -z $clf ]]; then
  clf=runs/fmnist-classifier-30m/checkpoints/epoch_latest.safetensors
  if [[ ! -e $clf ]]; then
    bash bench/fashion-mnist.sh --minutes 30 --logs runs --name fmnist-classifier-30m >&2
  fi
fi

"$vlm" generate eval --checkpoint "$ckpt" --classifier "$clf" --classnames "$fm/prompt_names.txt" \
  --real-data "$fm/t10k-images-idx3-ubyte.gz" --n-per-class "$npc" --guidance "$guidance" --steps "$steps" \
  --guidance-interval "$ginterval" --sampler "$sampler" --seed "$seed" --grid "$logs/$name/eval_grid.png" --json > "$logs/$name.eval.txt"
cat "$logs/$name.eval.txt" >&2
tail -n 1 "$logs/$name.eval.txt" | sed "s/}\$/, \"minutes\": $train_min}/"
