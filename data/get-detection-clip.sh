#!/usr/bin/env bash
# Builds the image-caption pairs for the detection CLIP (bench/detection.sh):
# every emoji image of the four vendors (train.tsv + val_twitter.tsv, caption
# = the emoji's name) and N Fashion-MNIST training items (caption = the class
# name as the scenes use it: "t-shirt", "trouser", ..., "ankle boot"), as
# webdataset shards under DIR. Prints the --train-data pattern for `vlm pretrain`.
# Every class of `vlm data scenes` is named in these captions, held-out ones
# included: as for OWL-ViT, the CLIP has seen the words and images, the
# detector never sees a held-out class boxed.
# usage: data/get-detection-clip.sh [DIR] [N_FASHION]   (defaults data/detection-clip, 4000)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
dir=${1:-$here/detection-clip}
nfm=${2:-4000}
vlm=${VLM:-$root/build/vlm}
bash "$here/get-emoji.sh" "$here/emoji" >/dev/null
bash "$here/get-fashion-mnist.sh" "$here/fashion-mnist" >/dev/null
shards() { # DIR -> 'DIR/{000000..00000K}.tar'
  local n; n=$(find "$1" -name '*.tar' | wc -l)
  printf '%s/{000000..%06d}.tar' "$1" $((n - 1))
}
if [[ ! -e $dir/done ]]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  "$vlm" data convert "$here/emoji/train.tsv" --out "$dir/emoji" >&2
  "$vlm" data convert "$here/emoji/val_twitter.tsv" --out "$dir/twitter" >&2
  printf '%s\n' "t-shirt" "trouser" "pullover" "dress" "coat" "sandal" "shirt" "sneaker" "bag" "ankle boot" \
    > "$dir/fashion_classnames.txt"
  "$vlm" data convert "$here/fashion-mnist/train-images-idx3-ubyte.gz" --classnames "$dir/fashion_classnames.txt" \
    --shard-size 1000 --out "$dir/fm" >&2
  # keep the first N items (shards of 1000, in file order: classes are mixed)
  keep=$(((nfm + 999) / 1000))
  find "$dir/fm" -name '*.tar' | sort | tail -n +$((keep + 1)) | xargs -r rm -f
  touch "$dir/done"
fi
echo "$(shards "$dir/emoji")::$(shards "$dir/twitter")::$(shards "$dir/fm")"
