#!/usr/bin/env bash
# Checks that no held-out image reaches a training corpus: hashes the decoded
# pixels (over white) of every sample of HELDOUT (a dataset: the unseen emoji
# of all four vendors by default) and of every sample of CORPUS, and fails if
# any hash is in both. Prints one JSON line.
# usage: scripts/check-corpus.sh CORPUS_SPEC [HELDOUT_SPEC]   (VLM=path/to/vlm)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VLM=${VLM:-$here/build/vlm}
corpus=$1
held=${2:-$here/data/emoji/unseen.tsv}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$VLM" data hash "$held" --composite 255,255,255 | cut -f1 | grep -v '^unreadable' | sort -u > "$tmp/held"
"$VLM" data hash "$corpus" --composite 255,255,255 > "$tmp/corpus.all"
cut -f1 "$tmp/corpus.all" | grep -v '^unreadable' | sort -u > "$tmp/corpus"
n_held=$(wc -l < "$tmp/held")
n_corpus=$(wc -l < "$tmp/corpus.all")
common=$(comm -12 "$tmp/held" "$tmp/corpus" | wc -l)
printf '{"heldout_images": %d, "corpus_samples": %d, "overlap": %d}\n' "$n_held" "$n_corpus" "$common"
if ((common > 0)); then
  echo "check-corpus: $common held-out images are in the corpus, for example:" >&2
  comm -12 "$tmp/held" "$tmp/corpus" | head -n 5 | while read -r h; do grep -m1 "^$h" "$tmp/corpus.all" >&2; done
  exit 1
fi
