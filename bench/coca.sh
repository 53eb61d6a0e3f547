#!/usr/bin/env bash
# Recipe: CoCa on the emoji pairs. Pretrains the tiny CLIP with a multimodal
# text decoder (vlm pretrain --coca) and, for comparison, the CLIP alone, for
# MINUTES each (default 30) with the same settings; captions val_twitter.tsv
# (greedy and BEAMS-beam search) against the emoji names. Ends with one JSON
# line: caption_exact, caption_f1 (the better decoding), i2t_r1 (CoCa),
# clip_only_i2t_r1, minutes (both runs).
# usage: bench/coca.sh       MINUTES=30 LAYERS=3 BEAMS=3 bench/coca.sh
#        PARALLEL=1: the two runs at the same time, one core (OMP thread, decode
#        worker) each, so both see the same machine for the same minutes
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-30}
LAYERS=${LAYERS:-3}
BEAMS=${BEAMS:-3}
LOGS=${LOGS:-runs}
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bash data/get-emoji.sh data/emoji >/dev/null
export OMP_WAIT_POLICY=PASSIVE
common=(--train-data data/emoji/train.tsv --val-data data/emoji/val_twitter.tsv --model tiny --batch-size 64
        --max-minutes "$MINUTES" --time-schedule --lr 1e-3 --warmup 50 --wd 0.1 --composite 255,255,255
        --precision "${PRECISION:-auto}" --logs "$LOGS" --log-every 50)
if [[ ${PARALLEL:-0} == 1 ]]; then
  OMP_NUM_THREADS=1 build/vlm pretrain "${common[@]}" --workers 1 --coca "$LAYERS" --name "coca-${MINUTES}m" > "$LOGS.coca.json" &
  OMP_NUM_THREADS=1 build/vlm pretrain "${common[@]}" --workers 1 --name "clip-only-${MINUTES}m" > "$LOGS.clip-only.json" &
  wait %1 && wait %2
else
  build/vlm pretrain "${common[@]}" --workers 2 --coca "$LAYERS" --name "coca-${MINUTES}m" > "$LOGS.coca.json"
  build/vlm pretrain "${common[@]}" --workers 2 --name "clip-only-${MINUTES}m" > "$LOGS.clip-only.json"
fi
C=$LOGS/coca-${MINUTES}m/checkpoints/epoch_latest.safetensors
best_exact=0 best_f1=0
for b in 1 "$BEAMS"; do
  build/vlm caption --checkpoint "$C" --data data/emoji/val_twitter.tsv --beams "$b" --composite 255,255,255 --json \
    > "$LOGS.coca-captions-b$b.jsonl"
  line=$(tail -n 1 "$LOGS.coca-captions-b$b.jsonl")
  echo "captions, $b beam(s): $line" >&2
  f1=$(echo "$line" | grep -o '"caption_f1": [^,}]*' | sed 's/.*: //')
  ex=$(echo "$line" | grep -o '"caption_exact": [^,}]*' | sed 's/.*: //')
  if awk -v a="$f1" -v b="$best_f1" 'BEGIN { exit !(a > b) }'; then best_f1=$f1 best_exact=$ex; fi
done
jget() { tail -n 1 "$2" | grep -o "\"$1\": [^,}]*" | head -n 1 | sed 's/.*: //; s/"//g'; }
printf '{"caption_exact": %s, "caption_f1": %s, "i2t_r1": %s, "clip_only_i2t_r1": %s, "minutes": %s, "checkpoint": "%s"}\n' \
  "$best_exact" "$best_f1" "$(jget i2t_r1 "$LOGS.coca.json")" "$(jget i2t_r1 "$LOGS.clip-only.json")" \
  "$(awk -v a="$(jget minutes "$LOGS.coca.json")" -v b="$(jget minutes "$LOGS.clip-only.json")" 'BEGIN { printf "%.1f", a + b }')" "$C"
