#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is missing, build,
# fetch the emoji image-caption pairs, pretrain the `tiny` CLIP on train.tsv
# within a time budget, report retrieval on the twitter-style validation set
# and zero-shot accuracy on the ~380 emoji never seen in pretraining and on the
# 9 emoji categories, then print one JSON line of metrics.
# usage: scripts/main.sh            (MINUTES=10 by default: the training budget)
#        MINUTES=30 scripts/main.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
RUN=${RUN:-emoji-tiny}
LOGS=${LOGS:-runs}
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bash data/get-emoji.sh data/emoji >/dev/null
export OMP_WAIT_POLICY=PASSIVE
t0=$(date +%s)
# Recipe (README "Main job"): transparent pixels composited over white, batch
# 64, lr 1e-3, 50 warmup steps, then a cosine over the time budget
# (--time-schedule), so the schedule fits the budget on any machine.
B=${BATCH:-64}
echo "main: pretraining tiny for $MINUTES min, batch $B" >&2
build/vlm pretrain --train-data data/emoji/train.tsv --val-data data/emoji/val_twitter.tsv \
  --model tiny --batch-size "$B" --max-minutes "$MINUTES" --time-schedule \
  --lr 1e-3 --warmup 50 --wd 0.1 --composite 255,255,255 --workers 2 \
  --logs "$LOGS" --name "$RUN" --save-every-steps 200 --log-every 25 > "$LOGS.pretrain.json"
CKPT="$LOGS/$RUN/checkpoints/epoch_latest.safetensors"
build/vlm zeroshot --clip "$CKPT" --data data/emoji/unseen.tsv --classnames data/emoji/unseen_classnames.txt \
  --templates name --composite 255,255,255 --confusion "$LOGS/$RUN/unseen_confusion.png" --json > "$LOGS.unseen.txt"
build/vlm zeroshot --clip "$CKPT" --data data/emoji/categories.tsv --classnames data/emoji/category_classnames.txt \
  --templates name --composite 255,255,255 --confusion "$LOGS/$RUN/category_confusion.png" --json > "$LOGS.categories.txt"
t1=$(date +%s)
# Summary without Python: fields are read from the commands' JSON lines.
jget() { tail -n 1 "$2" | grep -o "\"$1\": [^,}]*" | head -n 1 | sed 's/.*: //; s/"//g'; }
P="$LOGS.pretrain.json" U="$LOGS.unseen.txt" C="$LOGS.categories.txt"
echo "| task | metric | value |"
echo "|---|---|---|"
echo "| val_twitter retrieval ($(jget val_n "$P") pairs) | image->text R@1 / R@5 / R@10 | $(jget i2t_r1 "$P") / $(jget i2t_r5 "$P") / $(jget i2t_r10 "$P") |"
echo "| val_twitter retrieval | text->image R@1 / R@5 / R@10 | $(jget t2i_r1 "$P") / $(jget t2i_r5 "$P") / $(jget t2i_r10 "$P") |"
echo "| unseen emoji zero-shot ($(jget classes "$U") classes, n=$(jget n "$U")) | top-1 / top-5 | $(jget top1 "$U") / $(jget top5 "$U") |"
echo "| emoji categories zero-shot ($(jget classes "$C") classes, n=$(jget n "$C")) | top-1 / top-5 | $(jget top1 "$C") / $(jget top5 "$C") |"
printf '{"train_minutes": %s, "steps": %s, "pairs_seen": %s, "final_loss": %s, ' "$(jget minutes "$P")" "$(jget steps "$P")" "$(jget pairs_seen "$P")" "$(jget loss "$P")"
printf '"twitter_n": %s, "twitter_i2t_r1": %s, "twitter_i2t_r5": %s, "twitter_i2t_r10": %s, "twitter_t2i_r1": %s, "twitter_t2i_r5": %s, "twitter_t2i_r10": %s, "twitter_i2t_median_rank": %s, ' \
  "$(jget val_n "$P")" "$(jget i2t_r1 "$P")" "$(jget i2t_r5 "$P")" "$(jget i2t_r10 "$P")" "$(jget t2i_r1 "$P")" "$(jget t2i_r5 "$P")" "$(jget t2i_r10 "$P")" "$(jget i2t_median_rank "$P")"
printf '"unseen_n": %s, "unseen_top1": %s, "unseen_top5": %s, "categories_n": %s, "categories_top1": %s, "categories_top5": %s, "total_minutes": %s}\n' \
  "$(jget n "$U")" "$(jget top1 "$U")" "$(jget top5 "$U")" "$(jget n "$C")" "$(jget top1 "$C")" "$(jget top5 "$C")" "$(( (t1 - t0 + 30) / 60 ))"
