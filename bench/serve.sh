#!/usr/bin/env bash
# Served throughput vs offline: 60 s of POST /v1/embed (one emoji PNG) at
# concurrency 32 against `vlm serve`, then `vlm embed` over the same kind of
# images with the same model; requests/s, p50/p99, errors, the batch-size
# histogram and the server's RSS at start and end. Ends with one JSON line.
# usage: bench/serve.sh CHECKPOINT [SECONDS (60)] [CONCURRENCY (32)]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ckpt=$1 secs=${2:-60} conc=${3:-32}
vlm=${VLM:-$root/build/vlm}
tmp=$(mktemp -d /tmp/vlm-serve-bench.XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
cc -O2 -pthread "$root/bench/serve_load.c" -o "$tmp/load"
img=$root/data/emoji/img/twitter/64/1f600.png
[[ -f $img ]] || { echo "serve bench: run data/get-emoji.sh first" >&2; exit 2; }
"$vlm" serve --checkpoint "$ckpt" --port 0 --max-batch 32 --max-wait-ms 2 --queue 1024 2> "$tmp/log" &
pid=$!
for _ in $(seq 100); do grep -q "http://" "$tmp/log" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$tmp/log" | cut -d: -f2)
rss() { awk '/VmRSS/ {print $2 / 1024}' /proc/$pid/status; }
rss0=$(rss)
res=$("$tmp/load" "$port" "$conc" "$secs" /v1/embed "$img" image/png)
rss1=$(rss)
curl_metrics=$(exec 3<>/dev/tcp/127.0.0.1/$port; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; cat <&3)
kill -TERM $pid; wait $pid || true
grep vlm_batch_size_bucket <<<"$curl_metrics" >&2 || true
# offline: the same model over the 1,529 twitter emoji (64 px PNGs, as the served one)
"$vlm" embed --checkpoint "$ckpt" --data "$root/data/emoji/val_twitter.tsv" --out "$tmp/e.safetensors" 2> "$tmp/embed.log"
off=$(grep 'images embedded' "$tmp/embed.log" | sed 's/.*(\([0-9]*\) img\/s).*/\1/')
served=$(grep -o '"requests_per_s": [0-9.]*' <<<"$res" | awk '{print $2}')
echo "serve: $res; offline vlm embed $off img/s; RSS $rss0 -> $rss1 MB" >&2
echo "${res%\}}, \"offline_img_per_s\": $off, \"served_over_offline\": $(awk -v a="$served" -v b="$off" 'BEGIN{printf "%.2f", a/b}'), \"rss_start_mb\": $rss0, \"rss_end_mb\": $rss1}"
