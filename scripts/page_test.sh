#!/usr/bin/env bash
# The page of `vlm serve` in headless Chromium: serve a small CLIP, open the
# page with a fixture image and labels in its URL (it classifies on load),
# check the probabilities it renders, keep a screenshot (OUT, default
# /tmp/vlm-serve-page.png). Exits non-zero if the page shows no result.
# usage: scripts/page_test.sh [BUILD (build)] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build} out=${2:-/tmp/vlm-serve-page.png}
bash scripts/deps.sh --browser
tmp=$(mktemp -d /tmp/vlm-page.XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 - "$tmp" <<'PY'
import base64, struct, sys, zlib
d = sys.argv[1]
def png(rgb):
    raw = b"".join(b"\0" + bytes(rgb) * 32 for _ in range(32))
    c = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    return (b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
            + c(b"IDAT", zlib.compress(raw)) + c(b"IEND", b""))
open(d + "/train.tsv", "w").write("filepath\ttitle\n" + "".join(
    f"{i}.png\ta {n} square\n" for i, n in enumerate(["red", "green", "blue", "red", "green", "blue"])))
for i, rgb in enumerate([(220, 20, 20), (20, 200, 20), (20, 20, 220)] * 2):
    open(f"{d}/{i}.png", "wb").write(png(rgb))
open(d + "/url.txt", "w").write("data:image/png;base64," + base64.b64encode(png((220, 20, 20))).decode())
PY
"$build/vlm" pretrain --train-data "$tmp/train.tsv" --model tiny --batch-size 6 --max-steps 20 --warmup 2 --lr 1e-3 \
  --logs "$tmp/runs" --name p >/dev/null 2>&1
"$build/vlm" serve --checkpoint "$tmp/runs/p/checkpoints/epoch_latest.safetensors" --port 0 2> "$tmp/log" &
pid=$!
for _ in $(seq 100); do grep -q "http://" "$tmp/log" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$tmp/log" | cut -d: -f2)
url="http://127.0.0.1:$port/?labels=a%20red%20square,a%20green%20square,a%20blue%20square&image=$(python3 -c \
  'import sys, urllib.parse; print(urllib.parse.quote(open(sys.argv[1]).read()))' "$tmp/url.txt")"
chrome=(chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=10000 --window-size=800,640)
dom=$("${chrome[@]}" --dump-dom "$url" 2>/dev/null)
grep -q '<td>a red square</td><td>0\.[0-9]*</td>' <<<"$dom" || { echo "page_test: no result rendered" >&2; exit 1; }
first=$(grep -o "<td>a [a-z]* square</td>" <<<"$dom" | head -n 1 | sed "s/<[^>]*>//g")
"${chrome[@]}" --screenshot="$out" "$url" >/dev/null 2>&1
[[ -s $out ]] || { echo "page_test: no screenshot" >&2; exit 1; }
echo "page_test: the page rendered the probabilities (best: $first); screenshot $out"
