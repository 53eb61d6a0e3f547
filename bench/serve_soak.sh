#!/usr/bin/env bash
# Soak: `vlm serve` under POST /v1/classify (an image and 8 labels) at
# concurrency 32 for SECONDS (default 600), after a 20 s warm-up; the
# server's RSS and open file descriptors right after the warm-up and at the
# end (they must stay flat), requests, errors (must be 0). Ends with one JSON line.
# usage: bench/serve_soak.sh [CHECKPOINT] [SECONDS (600)] [CONCURRENCY (32)]
#   without CHECKPOINT: a tiny CLIP from one synthetic pretraining step
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vlm=${VLM:-$root/build/vlm}
tmp=$(mktemp -d /tmp/vlm-serve-soak.XXXXXX)
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
ckpt=${1:-} secs=${2:-600} conc=${3:-32}
if [[ -z $ckpt ]]; then
  "$vlm" pretrain --train-data synthetic --train-num-samples 64 --model tiny --batch-size 16 --max-steps 1 \
    --logs "$tmp" --name clip >/dev/null 2>&1
  ckpt=$tmp/clip/checkpoints/epoch_latest.safetensors
fi
cc -O2 -pthread "$root/bench/serve_load.c" -o "$tmp/load"
img=$root/tests/fixtures/data/transform/src/la_40x30.png
printf '{"image": "%s", "labels": ["a red square", "a cat", "a dog", "a tree", "a car", "the sea", "a face", "a flag"]}' \
  "$(base64 -w0 "$img")" >"$tmp/body.json"
"$vlm" serve --checkpoint "$ckpt" --port 0 --queue 1024 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do grep -q "http://" "$tmp/log" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$tmp/log" | cut -d: -f2)
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$pid/status; }
fds() { ls /proc/$pid/fd | wc -l; }
"$tmp/load" "$port" "$conc" 20 /v1/classify "$tmp/body.json" application/json >/dev/null
rss0=$(rss) fd0=$(fds)
res=$("$tmp/load" "$port" "$conc" "$secs" /v1/classify "$tmp/body.json" application/json)
rss1=$(rss) fd1=$(fds)
kill -TERM $pid
rc=0
wait $pid || rc=$?
pid=
echo "soak: $secs s at concurrency $conc: $res; RSS $rss0 -> $rss1 MB, open fds $fd0 -> $fd1; exit on SIGTERM $rc" >&2
echo "${res%\}}, \"rss_start_mb\": $rss0, \"rss_end_mb\": $rss1, \"fds_start\": $fd0, \"fds_end\": $fd1, \"exit_on_sigterm\": $rc}"
