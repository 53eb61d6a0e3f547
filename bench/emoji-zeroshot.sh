#!/usr/bin/env bash
# Recipe: fetch the emoji pairs, pretrain the tiny CLIP for MINUTES (default 30)
# on the seen emoji, then classify the ~380 unseen emoji zero-shot from their
# names. Ends with one JSON line: top1, top5, n, minutes.
# usage: bench/emoji-zeroshot.sh        MINUTES=30 BATCH=64 bench/emoji-zeroshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-30}
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bash data/get-emoji.sh data/emoji >/dev/null
export OMP_WAIT_POLICY=PASSIVE
t0=$(date +%s)
LOGS=${LOGS:-runs} RUN=${RUN:-emoji-zeroshot-${MINUTES}m} MINUTES=$MINUTES \
  bash scripts/main.sh > "runs.emoji-zeroshot.txt"
U="${LOGS:-runs}.unseen.txt"
t1=$(date +%s)
top1=$(tail -n 1 "$U" | grep -o '"top1": [^,]*' | sed 's/.*: //')
top5=$(tail -n 1 "$U" | grep -o '"top5": [^,]*' | sed 's/.*: //')
n=$(tail -n 1 "$U" | grep -o '"n": [^,]*' | sed 's/.*: //')
# minutes = pretraining time (the budget); total_minutes = the whole recipe (build, fetch, train, evaluate)
train_min=$(tail -n 1 "${LOGS:-runs}.pretrain.json" | grep -o '"minutes": [^,}]*' | sed 's/.*: //')
printf '{"top1": %s, "top5": %s, "n": %s, "minutes": %s, "total_minutes": %s}\n' "$top1" "$top5" "$n" "$train_min" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 60 }')"
