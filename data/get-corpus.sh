#!/usr/bin/env bash
# Builds the image-caption pretraining corpus (docs/DATA.md "Corpus") into DIR
# (default data/corpus, gitignored) from registry packages only:
#   npm @iconify/json         SVG icons of every set outside iconify's "Emoji" category,
#                             captioned from names, aliases and categories
#   emoji-datasource-*        the emoji training split (train.tsv of data/get-emoji.sh), captioned
#                             with the name plus npm emojilib and cldr-annotations-full keywords
#   dataset-fashion-mnist     the 60,000 training images with their class names
#   wordnet-base              names that are WordNet nouns also get their hypernyms
# Writes DIR/shards/NNNNNN.tar (webdataset: KEY.png + KEY.txt, one caption per
# line), DIR/shards.txt (the brace pattern to train on), DIR/shards.SOURCE.txt
# (one source's shards: iconify, emoji, fashion-mnist; to weight them, as in
# 'vlm pretrain --train-data A::B::C --train-data-upsampling-factors 1::3::1'),
# DIR/manifest.tsv and DIR/stats.json. Deterministic; an interrupted build
# resumes where it stopped.
# usage: data/get-corpus.sh [DIR]
#   env: ICONS_PER_SET=N (0 = all), EMOJI_REPEAT=R (emoji copies, default 1), SHARD_SIZE=N (5000),
#        SIZE=S (raster size, default 64), VLM=path/to/vlm (default build/vlm),
#        ICONIFY_DIR, EMOJI_DIR, EMOJILIB_JSON, CLDR_JSON, FMNIST_DIR, WORDNET_DIR (use these
#        inputs instead of fetching them; the tests build a small corpus so)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/corpus}
VLM=${VLM:-$here/../build/vlm}
SIZE=${SIZE:-64}
mkdir -p "$dir/.cache" "$dir/shards"
dir=$(cd "$dir" && pwd)
cache=$dir/.cache
t0=$(date +%s)

# npm package NAME@VER unpacked (only PATHS) into $cache/NAME-VER once.
unpack() {
  local spec=$1 dest=$cache/${1//[@\/]/_}
  shift
  if [[ ! -f $dest/.complete ]]; then
    command -v npm >/dev/null || { echo "get-corpus: npm not found (apt-get install npm)" >&2; exit 1; }
    rm -rf "$dest" && mkdir -p "$dest"
    echo "get-corpus: npm pack $spec" >&2
    local tgz
    tgz=$(cd "$dest" && npm pack --silent "$spec" | tail -n 1)
    tar -xzf "$dest/$tgz" -C "$dest" --wildcards "$@"
    rm -f "$dest/$tgz"
    touch "$dest/.complete"
  fi
  echo "$dest/package"
}

if [[ -z ${ICONIFY_DIR:-} ]]; then ICONIFY_DIR=$(unpack @iconify/json@2.2.553 package/collections.json 'package/json/*.json'); fi
if [[ -z ${EMOJILIB_JSON:-} ]]; then EMOJILIB_JSON=$(unpack emojilib@4.0.3 package/dist/emoji-en-US.json)/dist/emoji-en-US.json; fi
if [[ -z ${CLDR_JSON:-} ]]; then
  CLDR_JSON=$(unpack cldr-annotations-full@48.2.0 package/annotations/en/annotations.json)/annotations/en/annotations.json
fi
if [[ -z ${EMOJI_DIR:-} ]]; then EMOJI_DIR=$here/emoji; bash "$here/get-emoji.sh" "$EMOJI_DIR" >&2; fi
if [[ -z ${FMNIST_DIR:-} ]]; then FMNIST_DIR=$here/fashion-mnist; bash "$here/get-fashion-mnist.sh" "$FMNIST_DIR" >&2; fi
[[ -x $VLM ]] || { echo "get-corpus: $VLM not built (cmake --build build)" >&2; exit 1; }
WORDNET_DIR=${WORDNET_DIR:-/usr/share/wordnet}
[[ -f $WORDNET_DIR/index.noun ]] ||
  { echo "get-corpus: no WordNet in $WORDNET_DIR (bash scripts/deps.sh installs wordnet-base)" >&2; exit 1; }

# Some seen emoji are drawn exactly like an unseen one (flags of territories
# that share a flag, a few families): leave those training images out, by
# the hash of their decoded pixels.
if [[ ! -f $dir/exclude.txt ]]; then
  "$VLM" data hash "$EMOJI_DIR/unseen.tsv" --composite 255,255,255 | cut -f1 | sort -u > "$dir/.heldout.hash"
  "$VLM" data hash "$EMOJI_DIR/train.tsv" --composite 255,255,255 > "$dir/.train.hash"
  awk -F'\t' 'NR == FNR { h[$1] = 1; next } ($1 in h) { print $2 }' "$dir/.heldout.hash" "$dir/.train.hash" \
    > "$dir/exclude.txt.tmp"
  mv "$dir/exclude.txt.tmp" "$dir/exclude.txt"
  rm -f "$dir/.heldout.hash" "$dir/.train.hash"
fi
echo "get-corpus: $(wc -l < "$dir/exclude.txt") emoji training images match a held-out one: left out" >&2

# Stage 1: source shards (SVG / PNG + captions) in DIR/raw.
echo "get-corpus: writing source shards" >&2
/usr/bin/python3 "$here/corpus.py" "$dir" "$ICONIFY_DIR" "$EMOJI_DIR" "$EMOJILIB_JSON" "$CLDR_JSON" "$FMNIST_DIR" \
  --icons-per-set "${ICONS_PER_SET:-0}" --emoji-repeat "${EMOJI_REPEAT:-1}" --shard-size "${SHARD_SIZE:-5000}" --exclude "$dir/exclude.txt" \
  --wordnet "$WORDNET_DIR" >&2

# Stage 2: SVG drawn at SIZE px over white and stored as PNG, one raw shard
# at a time on every core; each finished shard replaces its raw one.
convert_one() {
  local raw=$1 name tmp
  name=$(basename "$raw")
  tmp=$dir/shards/.tmp-$name
  rm -rf "$tmp"
  "$VLM" data convert "$raw" --out "$tmp" --shard-size 1000000000 --rasterize "$SIZE" > "$tmp.log"
  if grep -q "^skipped" "$tmp.log"; then cat "$tmp.log" >&2; fi
  mv "$tmp/000000.tar" "$dir/shards/$name"
  rm -rf "$tmp" "$tmp.log" "$raw"
}
export -f convert_one
export dir VLM SIZE
echo "get-corpus: rasterising" >&2
find "$dir/raw" -name '[0-9]*.tar' | sort | xargs -r -P "$(nproc)" -I{} bash -c 'convert_one "$@"' _ {}
n=$(find "$dir/shards" -name '[0-9]*.tar' | wc -l)
last=$(printf '%06d' $((n - 1)))
echo "$dir/shards/{000000..$last}.tar" > "$dir/shards.txt"
while IFS=$'\t' read -r source first end; do
  echo "$dir/shards/{$first..$end}.tar" > "$dir/shards.$source.txt"
done < "$dir/sources.tsv"
rmdir "$dir/raw" 2>/dev/null || true
echo "get-corpus: $dir: $n shards, $(du -sh "$dir/shards" | cut -f1), $(( $(date +%s) - t0 )) s; train on \$(cat $dir/shards.txt)" >&2
cat "$dir/stats.json"
