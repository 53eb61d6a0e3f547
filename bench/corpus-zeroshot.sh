#!/usr/bin/env bash
# Recipe: build the packaged image-caption corpus (data/get-corpus.sh), check
# that no unseen-emoji image is in it, pretrain a CLIP on it for MINUTES
# (default 60), then classify the unseen emoji (382 classes) and the emoji
# categories (9) zero-shot and retrieve on val_twitter. Ends with one JSON line:
# unseen_top1, unseen_top5, categories_top1, twitter_i2t_r1, minutes, checkpoint.
# usage: bench/corpus-zeroshot.sh     MINUTES=60 MODEL=tiny BATCH=256 PRECISION=amp_bf16 bench/corpus-zeroshot.sh
#        TRAIN=emoji uses data/emoji/train.tsv instead (the emoji-only recipe, same settings)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
MODEL=${MODEL:-tiny}
BATCH=${BATCH:-256}
LR=${LR:-1e-3}
PRECISION=${PRECISION:-amp_bf16}
PD=${PATCH_DROPOUT:-0}
LOSS=${LOSS:-clip}
TRAIN=${TRAIN:-corpus}
LOGS=${LOGS:-runs}
RUN=${RUN:-$TRAIN-zeroshot-${MINUTES}m}
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bash data/get-emoji.sh data/emoji >/dev/null
if [[ $TRAIN == corpus ]]; then
  bash data/get-corpus.sh data/corpus > "$LOGS.corpus-stats.json"
  DATA=$(cat data/corpus/shards.txt)
  bash scripts/check-corpus.sh "$DATA" data/emoji/unseen.tsv > "$LOGS.corpus-check.json"
else
  DATA=data/emoji/train.tsv
fi
export OMP_WAIT_POLICY=PASSIVE
t0=$(date +%s)
# The CLIP loss (duplicate captions in a batch are not negatives: the corpus
# has few distinct Fashion-MNIST captions; LOSS=siglip for SigLIP, which sat
# at its trivial solution for the first 650 steps at LR 2e-3), the
# RandomResizedCrop augmentation of the trainer, one of each sample's captions
# drawn per epoch, bf16 autocast, a cosine over the time budget;
# PATCH_DROPOUT=P for FLIP's patch dropout.
build/vlm pretrain --train-data "$DATA" --val-data data/emoji/val_twitter.tsv --model "$MODEL" \
  --batch-size "$BATCH" --max-minutes "$MINUTES" --time-schedule --lr "$LR" --warmup 300 --wd 0.1 \
  $([[ $LOSS == siglip ]] && echo --siglip) --patch-dropout "$PD" --precision "$PRECISION" --composite 255,255,255 --workers 2 \
  --logs "$LOGS" --name "$RUN" --save-every-steps 500 --log-every 50 > "$LOGS.$RUN.pretrain.json"
CKPT="$LOGS/$RUN/checkpoints/epoch_latest.safetensors"
zs() { build/vlm zeroshot --clip "$CKPT" --data "$1" --classnames "$2" --templates "$3" --composite 255,255,255 --json | tail -n 1; }
zs data/emoji/unseen.tsv data/emoji/unseen_classnames.txt emoji > "$LOGS.$RUN.unseen.json"
zs data/emoji/categories.tsv data/emoji/category_classnames.txt emoji > "$LOGS.$RUN.categories.json"
t1=$(date +%s)
jget() { tail -n 1 "$2" | grep -o "\"$1\": [^,}]*" | head -n 1 | sed 's/.*: //; s/"//g'; }
P="$LOGS.$RUN.pretrain.json" U="$LOGS.$RUN.unseen.json" C="$LOGS.$RUN.categories.json"
printf '{"train": "%s", "model": "%s", "unseen_top1": %s, "unseen_top5": %s, "categories_top1": %s, "categories_top5": %s, ' \
  "$TRAIN" "$MODEL" "$(jget top1 "$U")" "$(jget top5 "$U")" "$(jget top1 "$C")" "$(jget top5 "$C")"
printf '"twitter_i2t_r1": %s, "twitter_i2t_r5": %s, "twitter_t2i_r1": %s, "steps": %s, "pairs_seen": %s, "minutes": %s, ' \
  "$(jget i2t_r1 "$P")" "$(jget i2t_r5 "$P")" "$(jget t2i_r1 "$P")" "$(jget steps "$P")" "$(jget pairs_seen "$P")" "$(jget minutes "$P")"
printf '"total_minutes": %s, "checkpoint": "%s"}\n' "$(( (t1 - t0 + 30) / 60 ))" "$CKPT"
