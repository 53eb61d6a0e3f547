#!/usr/bin/env bash
# How well a CLIP names the boxed objects of a detection split (default the
# scenes' held-out split): each ground-truth box cropped as `vlm detect train
# --ensemble` crops a token's box, classified among the split's names.
# One JSON line: top1, n, context, per_class. Needs the library build (build/libvlm.so).
# usage: bench/crop-naming.sh CLIP.safetensors [SPLIT.json] [CONTEXT]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
clip=${1:?usage: bench/crop-naming.sh CLIP.safetensors [SPLIT.json] [CONTEXT]}
split=${2:-$root/data/scenes/heldout.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -std=c17 -I"$root" "$root/bench/crop_naming.c" "$root/build/libvlm.so" -lm -fopenmp -Wl,-rpath,"$root/build" \
  -o "$tmp/crop_naming"
"$tmp/crop_naming" "$clip" "$split" "${3:-1}"
