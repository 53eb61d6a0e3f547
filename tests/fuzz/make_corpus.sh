#!/usr/bin/env bash
# Writes the fuzzers' seed corpora (tests/fuzz/corpus/NAME/) from the test
# fixtures plus a few generated files (a width-8 CLIP in vlm, GGUF and HF
# layouts from build/vlm). Run once; the corpora are committed.
# usage: tests/fuzz/make_corpus.sh [BUILD_DIR (default build)]
set -euo pipefail
cd "$(dirname "$0")/../.."
vlm=${1:-build}/vlm
c=tests/fuzz/corpus
rm -rf "$c" && mkdir -p "$c"/{image,safetensors,config,coco,import,bpe,tokenizer,dataset}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# images: the decode fixtures up to 8 KB
find tests/fixtures/data/transform/src -size -8k -type f -exec cp {} "$c/image/" \;
# configs
cp tests/fixtures/models/*.json "$c/config/"
cp tests/fixtures/clip/*.json "$c/config/"
# a width-8 CLIP: one pretraining step on synthetic data, then its formats
cat >"$tmp/nano.json" <<'J'
{"embed_dim": 8, "vision_cfg": {"image_size": 8, "patch_size": 4, "width": 8, "head_width": 8, "layers": 1},
 "text_cfg": {"context_length": 6, "vocab_size": 530, "width": 8, "heads": 1, "layers": 1}}
J
cp "$tmp/nano.json" "$c/config/nano.json"
"$vlm" pretrain --dataset-type synthetic --train-data synthetic --train-num-samples 64 --model "$tmp/nano.json" --batch-size 8 --max-steps 1 \
  --logs "$tmp" --name nano >/dev/null 2>&1
m=$tmp/nano/checkpoints/epoch_latest.safetensors
"$vlm" convert "$m" "$tmp/nano.gguf" --to gguf >/dev/null
"$vlm" convert "$m" "$tmp/hf" --to hf >/dev/null
{ printf '\x02'; cat "$m"; } >"$c/import/vlm.safetensors"
{ printf '\x01'; cat "$tmp/nano.gguf"; } >"$c/import/nano.gguf"
{ printf '\x02'; cat "$tmp/hf/model.safetensors"; } >"$c/import/hf.safetensors"
for f in tests/fixtures/import/{tiny_ok,evil_dtype,evil_eval,evil_global,evil_offset,evil_short}.pt; do
  { printf '\x00'; cat "$f"; } >"$c/import/$(basename "$f")"
done
cp "$m" "$c/safetensors/vlm.safetensors"
cp "$tmp/hf/model.safetensors" "$c/safetensors/hf.safetensors"
cp tests/fixtures/import/micro.io.safetensors "$c/safetensors/"
# BPE merges: the nano model's own, an HF merges.txt, a tiny one
cp "$tmp/hf/merges.txt" "$c/bpe/hf_merges.txt"
printf '#version: 0.2\nt h\nth e</w>\na n\nc a\nca t</w>\n' >"$c/bpe/tiny.txt"
# tokenizer: the text edge cases (one per file)
/usr/bin/python3 - "$c/tokenizer" <<'P'
import json, sys
for i, line in enumerate(open("tests/fixtures/text/edge_cases.jsonl", encoding="utf-8")):
    if i >= 40: break
    t = json.loads(line).get("text", "")
    open(f"{sys.argv[1]}/case{i:02d}.txt", "wb").write(t.encode("utf-8", "surrogatepass"))
P
# COCO: byte 1 = ground truth, byte 0 = results against the harness's fixed ground truth
printf '\x01{"images": [{"id": 1, "width": 64, "height": 48, "file_name": "a.png"}], "categories": [{"id": 3, "name": "cat", "supercategory": "animal"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12], "area": 120, "iscrowd": 0}, {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 1}]}' >"$c/coco/gt.json"
printf '\x00[{"image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12], "score": 0.9}, {"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.1}]' >"$c/coco/results.json"
# datasets: byte 0 TSV, 1 CSV, 2 tar, 3 raw IDX, 4 gzip IDX
printf '\x00filepath\ttitle\tlabel\na.png\ta red square\t0\nb.jpg\ta "blue" circle\t1\n' >"$c/dataset/manifest.tsv"
printf '\x01filepath,title\na.png,"a red, square"\nb.png,a circle\n' >"$c/dataset/manifest.csv"
/usr/bin/python3 - "$c/dataset" "$c/image/l_23x17.png" <<'P'
import gzip, io, struct, sys, tarfile
out, png = sys.argv[1], open(sys.argv[2], "rb").read()
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
    for name, data in [("s0.png", png), ("s0.txt", b"a gray square"), ("s0.cls", b"3"),
                       ("s1.png", png), ("s1.json", b'{"caption": "another", "label": 1}')]:
        ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
open(f"{out}/shard.tar", "wb").write(b"\x02" + buf.getvalue())
idx = struct.pack(">IIII", 0x803, 2, 4, 4) + bytes(range(32))
open(f"{out}/images.idx", "wb").write(b"\x03" + idx)
open(f"{out}/images.idx.gz", "wb").write(b"\x04" + gzip.compress(idx, mtime=0))
P
du -sh "$c"
