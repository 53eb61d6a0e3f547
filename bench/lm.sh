#!/usr/bin/env bash
# Recipe: the WordNet text corpus (data/get-text.sh), a causal (clm) and a
# masked-token (mlm) language model of the tiny text tower, MINUTES each
# (default 30), evaluated on the held-out synsets, a few samples. Ends with
# one JSON line: clm_ppl, unigram_ppl (the same tokenizer's unigram model on
# the same targets), mlm_top1, minutes (both runs), the two checkpoints.
# usage: bench/lm.sh        MINUTES=30 PRECISION=auto BATCH=128 bench/lm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-30}
BATCH=${BATCH:-128}
PRECISION=${PRECISION:-auto}
LOGS=${LOGS:-runs}
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bash data/get-text.sh data/text >/dev/null
export OMP_WAIT_POLICY=PASSIVE
T=data/text
for obj in clm mlm; do
  build/vlm lm train --train-data $T/train.txt --val-data $T/heldout.txt --objective $obj --model tiny --context 32 \
    --batch-size "$BATCH" --lr 1e-3 --warmup 300 --wd 0.1 --max-minutes "$MINUTES" --time-schedule \
    --precision "$PRECISION" --logs "$LOGS" --name "wordnet-$obj" --log-every 100 > "$LOGS.lm-$obj.json"
done
C=$LOGS/wordnet-clm/checkpoints/epoch_latest.safetensors M=$LOGS/wordnet-mlm/checkpoints/epoch_latest.safetensors
build/vlm lm eval --checkpoint "$C" --data $T/heldout.txt --unigram-from $T/train.txt > "$LOGS.lm-clm-eval.json"
build/vlm lm eval --checkpoint "$M" --data $T/heldout.txt > "$LOGS.lm-mlm-eval.json"
for p in "a dog" "a small" "the act of" "a person who"; do
  build/vlm lm sample --checkpoint "$C" --prompt "$p" --temperature 0.8 --top-k 40 --seed 1 --json
done > "$LOGS.lm-samples.jsonl"
cat "$LOGS.lm-samples.jsonl" >&2
jget() { tail -n 1 "$2" | grep -o "\"$1\": [^,}]*" | head -n 1 | sed 's/.*: //; s/"//g'; }
printf '{"clm_ppl": %s, "unigram_ppl": %s, "mlm_top1": %s, "minutes": %s, "clm_checkpoint": "%s", "mlm_checkpoint": "%s"}\n' \
  "$(jget perplexity "$LOGS.lm-clm-eval.json")" "$(jget unigram_perplexity "$LOGS.lm-clm-eval.json")" \
  "$(jget top1 "$LOGS.lm-mlm-eval.json")" \
  "$(awk -v a="$(jget minutes "$LOGS.lm-clm.json")" -v b="$(jget minutes "$LOGS.lm-mlm.json")" 'BEGIN { printf "%.1f", a + b }')" "$C" "$M"
