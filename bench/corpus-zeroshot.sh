#!/usr/bin/env bash
# Recipe: build the packaged image-caption corpus (data/get-corpus.sh), check
# that no unseen-emoji image is in it, pretrain a CLIP on it for MINUTES
# (default 60), then classify the unseen emoji (382 classes) and the emoji
# categories (9) zero-shot and retrieve on val_twitter. Ends with one JSON line:
# unseen_top1, unseen_top5, categories_top1, twitter_i2t_r1, minutes, checkpoint.
# usage: bench/corpus-zeroshot.sh     MINUTES=60 MODEL=tiny BATCH=512 PRECISION=auto bench/corpus-zeroshot.sh
#        LR: 5e-4 since 2026-12-08 01:00 (was 1e-3; at batch 512 on captions v6, 5e-4 is ahead on unseen
#          (+0.03 / +0.05) and retrieval, 2e-3 far behind at mid-run: docs/RESULTS.md)
#        BATCH: 512 since 2026-12-07 20:00 (was 256; at 60 min on captions v5 512 is ahead on unseen and
#          retrieval, even on the categories: docs/RESULTS.md)
#        PRECISION: auto (default) is amp_bf16 on CPUs with AVX512-BF16, fp32 elsewhere (emulated bf16 is
#          slower than fp32: runs before 2026-12-07 05:00 used amp_bf16 everywhere)
#        TRAIN=emoji uses data/emoji/train.tsv instead (the emoji-only recipe, same settings)
#        WARMUP=N: warmup steps of the CLIP (default 100; 300 were 44% of a 60-minute run on a Zen 3)
#        PATCH_DROPOUT=P: FLIP's patch dropout (default 0.5: 1.7x the pairs per minute, ahead on every
#          figure at equal minutes, docs/RESULTS.md; before 2026-12-07 the default was 0 with WARMUP=300)
#        UNMASKED_TAIL=F: the last fraction F of the time budget without patch dropout (FLIP's unmasked
#          tuning, --unmasked-tail; default 0.1, 0 without patch dropout)
#        EMOJI_UP=K: the corpus's emoji are listed K times an epoch (default 24: 30% of an epoch's samples)
#          (EMOJI_UP and UNMASKED_TAIL defaulted to 3 and 0 before 2026-12-07 14:30; docs/RESULTS.md)
#        LM_MINUTES=M: first a causal language model of the text tower on WordNet
#          (data/get-text.sh) for M of the MINUTES, then the CLIP from it
#          (--pretrained-text) for the rest; minutes counts both
#        DETECTION=K: also the detection CLIP's pairs (data/get-detection-clip.sh: every
#          emoji of train.tsv and val_twitter.tsv named, 4,000 Fashion-MNIST items), each listed
#          K times an epoch, for bench/detection.sh --clip; val_twitter is then seen in training,
#          so twitter_* are not held-out figures (the JSON says "detection_up")
#        RANDOM_BG=P: a training image is composited over a random colour with probability P
#          (--random-background; default 0 = white, as the evaluation sets): emoji on the many
#          backgrounds that detection scenes show them on
#        ANNEAL_MINUTES=M: the last M of the MINUTES train on the corpus's emoji shards alone, from the
#          mix's checkpoint (--pretrained), without patch dropout, at LR ANNEAL_LR (default LR/3) with a
#          20-step warmup and its own cosine: data annealing on the in-domain part of the mix (as the
#          decay phase of warmup-stable-decay runs on high-quality data); the mix gets MINUTES - M
#        THREADS=N: N OpenMP threads and N decode workers (default: all cores, 2 workers)
#        PREP=0: skip building, fetching and the leak check; PREP=only: do them and stop
#          (bench/pretrained-text.sh prepares once, then runs two arms with PREP=0)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
MODEL=${MODEL:-tiny}
BATCH=${BATCH:-512}
LR=${LR:-5e-4}
WARMUP=${WARMUP:-100}
PRECISION=${PRECISION:-auto}
PD=${PATCH_DROPOUT:-0.5}
LOSS=${LOSS:-clip}
TRAIN=${TRAIN:-corpus}
LOGS=${LOGS:-runs}
LM_MINUTES=${LM_MINUTES:-0}
EMOJI_UP=${EMOJI_UP:-24}
TAIL=${UNMASKED_TAIL:-$(awk -v p="$PD" 'BEGIN { print (p > 0) ? 0.1 : 0 }')}
LMTAG=""
((LM_MINUTES > 0)) && LMTAG="-lm${LM_MINUTES}m"
RUN=${RUN:-$TRAIN-zeroshot-${MINUTES}m$LMTAG}
ANNEAL_MINUTES=${ANNEAL_MINUTES:-0}
if [[ $ANNEAL_MINUTES != 0 && $TRAIN != corpus ]]; then
  echo "corpus-zeroshot: ANNEAL_MINUTES needs TRAIN=corpus (it anneals on the corpus's emoji shards)" >&2
  exit 2
fi
if [[ ${PREP:-1} != 0 ]]; then
  bash scripts/deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" >/dev/null
  bash data/get-emoji.sh data/emoji >/dev/null
  ((LM_MINUTES > 0)) && bash data/get-text.sh data/text >/dev/null
  if [[ $TRAIN == corpus ]]; then
    bash data/get-corpus.sh data/corpus > "$LOGS.corpus-stats.json"
    bash scripts/check-corpus.sh "$(cat data/corpus/shards.txt)" data/emoji/unseen.tsv > "$LOGS.corpus-check.json"
  fi
  [[ ${PREP:-1} == only ]] && exit 0
fi
# The corpus's sources as three '::' parts, the emoji listed EMOJI_UP times an
# epoch (open_clip's --train-data-upsampling-factors).
UPS=()
if [[ $TRAIN == corpus ]]; then
  c=data/corpus
  DATA="$(cat $c/shards.iconify.txt)::$(cat $c/shards.emoji.txt)::$(cat $c/shards.fashion-mnist.txt)"
  UPS=(--train-data-upsampling-factors "1::$EMOJI_UP::1")
  if ((${DETECTION:-0} > 0)); then
    DATA="$DATA::$(bash data/get-detection-clip.sh data/detection-clip)"
    UPS=(--train-data-upsampling-factors "1::$EMOJI_UP::1::$DETECTION::$DETECTION::$DETECTION")
  fi
else
  DATA=data/emoji/train.tsv
fi
export OMP_WAIT_POLICY=PASSIVE
WORKERS=2
[[ -n ${THREADS:-} ]] && export OMP_NUM_THREADS=$THREADS && WORKERS=$THREADS
t0=$(date +%s)
jget() { tail -n 1 "$2" | grep -o "\"$1\": [^,}]*" | head -n 1 | sed 's/.*: //; s/"//g'; }
CLIP_MINUTES=$MINUTES TEXT=() lm_min=0
if ((LM_MINUTES > 0)); then
  # The text tower first learns English from WordNet (bench/lm.sh's settings:
  # the tiny tower, context 32 as the CLIP's), then the CLIP starts from it.
  build/vlm lm train --train-data data/text/train.txt --val-data data/text/heldout.txt --objective clm --model "$MODEL" \
    --context 32 --batch-size 128 --lr 1e-3 --warmup 300 --wd 0.1 --max-minutes "$LM_MINUTES" --time-schedule \
    --precision "$PRECISION" --logs "$LOGS" --name "$RUN-text" --log-every 100 > "$LOGS.$RUN.lm.json"
  lm_min=$(jget minutes "$LOGS.$RUN.lm.json")
  CLIP_MINUTES=$(awk -v a="$MINUTES" -v b="$lm_min" 'BEGIN { printf "%.2f", a - b }')
  TEXT=(--pretrained-text "$LOGS/$RUN-text/checkpoints/epoch_latest.safetensors")
fi
# The CLIP loss (duplicate captions in a batch are not negatives: the corpus
# has few distinct Fashion-MNIST captions; LOSS=siglip for SigLIP, which sat
# at its trivial solution for the first 650 steps at LR 2e-3), the
# RandomResizedCrop augmentation of the trainer, one of each sample's captions
# drawn per epoch, bf16 autocast, a cosine over the time budget;
# FLIP's patch dropout (PATCH_DROPOUT, half the patches by default).
build/vlm pretrain --train-data "$DATA" "${UPS[@]}" --val-data data/emoji/val_twitter.tsv --model "$MODEL" "${TEXT[@]}" \
  --batch-size "$BATCH" --max-minutes "$(awk -v a="$CLIP_MINUTES" -v b="$ANNEAL_MINUTES" 'BEGIN { printf "%.2f", a - b }')" --time-schedule --lr "$LR" --warmup "$WARMUP" --wd 0.1 \
  $([[ $LOSS == siglip ]] && echo --siglip) --patch-dropout "$PD" --unmasked-tail "$TAIL" --precision "$PRECISION" --composite 255,255,255 \
  --random-background "${RANDOM_BG:-0}" --workers "$WORKERS" --logs "$LOGS" --name "$RUN" --save-every-steps 500 --log-every 50 > "$LOGS.$RUN.pretrain.json"
CKPT="$LOGS/$RUN/checkpoints/epoch_latest.safetensors"
A="$LOGS.$RUN.pretrain.json"
if [[ $ANNEAL_MINUTES != 0 ]]; then
  build/vlm pretrain --train-data "$(cat data/corpus/shards.emoji.txt)" --val-data data/emoji/val_twitter.tsv --pretrained "$CKPT" \
    --batch-size "$BATCH" --max-minutes "$ANNEAL_MINUTES" --time-schedule --lr "${ANNEAL_LR:-$(awk -v l="$LR" 'BEGIN { print l / 3 }')}" \
    --warmup 20 --wd 0.1 $([[ $LOSS == siglip ]] && echo --siglip) --precision "$PRECISION" --composite 255,255,255 \
    --random-background "${RANDOM_BG:-0}" --workers "$WORKERS" --logs "$LOGS" --name "$RUN-anneal" --save-every-steps 500 \
    --log-every 50 > "$LOGS.$RUN.anneal.json"
  CKPT="$LOGS/$RUN-anneal/checkpoints/epoch_latest.safetensors"
  A="$LOGS.$RUN.anneal.json"
fi
zs() { build/vlm zeroshot --clip "$CKPT" --data "$1" --classnames "$2" --templates "$3" --composite 255,255,255 --json | tail -n 1; }
zs data/emoji/unseen.tsv data/emoji/unseen_classnames.txt emoji > "$LOGS.$RUN.unseen.json"
zs data/emoji/categories.tsv data/emoji/category_classnames.txt emoji > "$LOGS.$RUN.categories.json"
t1=$(date +%s)
P="$LOGS.$RUN.pretrain.json" U="$LOGS.$RUN.unseen.json" C="$LOGS.$RUN.categories.json"
printf '{"train": "%s", "model": "%s", "emoji_up": %s, "detection_up": %s, "random_bg": %s, "unseen_top1": %s, "unseen_top5": %s, "categories_top1": %s, "categories_top5": %s, ' \
  "$TRAIN" "$MODEL" "$([[ $TRAIN == corpus ]] && echo "$EMOJI_UP" || echo 1)" "${DETECTION:-0}" "${RANDOM_BG:-0}" "$(jget top1 "$U")" "$(jget top5 "$U")" "$(jget top1 "$C")" "$(jget top5 "$C")"
# Steps, pairs and minutes over both phases with ANNEAL_MINUTES; retrieval from the last ($A).
sum() { if [[ $A != "$P" ]]; then awk -v a="$(jget "$1" "$P")" -v b="$(jget "$1" "$A")" 'BEGIN { print a + b }'; else jget "$1" "$P"; fi; }
printf '"twitter_i2t_r1": %s, "twitter_i2t_r5": %s, "twitter_t2i_r1": %s, "steps": %s, "pairs_seen": %s, "lm_minutes": %s, "anneal_minutes": %s, "minutes": %s, ' \
  "$(jget i2t_r1 "$A")" "$(jget i2t_r5 "$A")" "$(jget t2i_r1 "$A")" "$(sum steps)" "$(sum pairs_seen)" "$lm_min" "$ANNEAL_MINUTES" \
  "$(awk -v a="$(sum minutes)" -v b="$lm_min" 'BEGIN { printf "%.1f", a + b }')"
printf '"patch_dropout": %s, "unmasked_tail": %s, "precision": "%s", ' "$PD" "$TAIL" \
  "$([[ $PRECISION != auto ]] && echo "$PRECISION" || { grep -q avx512_bf16 /proc/cpuinfo && echo amp_bf16 || echo fp32; })"
printf '"total_minutes": %s, "checkpoint": "%s"}\n' "$(( (t1 - t0 + 30) / 60 ))" "$CKPT"
