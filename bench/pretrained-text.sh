#!/usr/bin/env bash
# Does text pretraining help zero-shot? Runs bench/corpus-zeroshot.sh twice at
# the same time, one core each, for the same MINUTES: the CLIP alone, and a
# WordNet causal language model for LM_MINUTES followed by the CLIP started
# from it (--pretrained-text) for the rest. Ends with one JSON line per arm
# (bench/corpus-zeroshot.sh's fields) and a summary line.
# usage: TRAIN=emoji MINUTES=30 LM_MINUTES=6 bench/pretrained-text.sh
#        TRAIN=corpus MINUTES=60 LM_MINUTES=10 bench/pretrained-text.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TRAIN=${TRAIN:-emoji} MINUTES=${MINUTES:-30} LOGS=${LOGS:-runs}
LM=${LM_MINUTES:-$((MINUTES / 5))}
# Build, fetch and check once; the two arms then skip it (PREP=0).
PREP=only LM_MINUTES=$LM bash bench/corpus-zeroshot.sh
RUN=$TRAIN-alone-${MINUTES}m PREP=0 THREADS=1 LM_MINUTES=0 bash bench/corpus-zeroshot.sh > "$LOGS.$TRAIN-clip-alone.json" &
a=$!
sleep 5
RUN=$TRAIN-lm${LM}m-${MINUTES}m PREP=0 THREADS=1 LM_MINUTES=$LM bash bench/corpus-zeroshot.sh > "$LOGS.$TRAIN-clip-lm.json" &
b=$!
wait $a
wait $b
A=$(tail -n 1 "$LOGS.$TRAIN-clip-alone.json") B=$(tail -n 1 "$LOGS.$TRAIN-clip-lm.json")
echo "$A"
echo "$B"
g() { echo "$2" | grep -o "\"$1\": [^,}]*" | sed 's/.*: //'; }
printf '{"train": "%s", "minutes": %s, "lm_minutes": %s, "unseen_top1": [%s, %s], "unseen_top5": [%s, %s], "categories_top1": [%s, %s], "twitter_i2t_r1": [%s, %s]}\n' \
  "$TRAIN" "$MINUTES" "$LM" "$(g unseen_top1 "$A")" "$(g unseen_top1 "$B")" "$(g unseen_top5 "$A")" "$(g unseen_top5 "$B")" \
  "$(g categories_top1 "$A")" "$(g categories_top1 "$B")" "$(g twitter_i2t_r1 "$A")" "$(g twitter_i2t_r1 "$B")"
