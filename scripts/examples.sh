#!/usr/bin/env bash
# Installs vlm (from BUILD, default build/) into a temporary prefix and builds
# and runs examples/ against it twice: through pkg-config and through
# find_package(vlm). Used by scripts/test.sh; exits non-zero on any failure.
# usage: scripts/examples.sh [BUILD]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tmp=$(mktemp -d /tmp/vlm-examples.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
[[ -e $tmp/prefix/include/vlm/vlm.h && ! -e $tmp/prefix/include/vlm/core/ops_internal.h ]] ||
  { echo "examples: headers not installed as expected" >&2; exit 1; }
# data and a small model to run them with: 16 coloured squares, 3 steps of pretraining
mkdir -p "$tmp/sq"
python3 - "$tmp/sq" <<'PY'
import struct, sys, zlib
d = sys.argv[1]
cols = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}
def png(path, rgb):
    raw = b"".join(b"\0" + bytes(rgb) * 16 for _ in range(16))
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
with open(d + "/train.tsv", "w") as f:
    f.write("filepath\ttitle\n")
    for i in range(16):
        name = list(cols)[i % 4]
        png(f"{d}/{i}.png", cols[name])
        f.write(f"{i}.png\ta {name} square\n")
PY
"$build/vlm" pretrain --train-data "$tmp/sq/train.tsv" --model tiny --batch-size 8 --max-steps 3 --warmup 1 \
  --logs "$tmp/runs" --name ex >/dev/null 2>&1
model=$tmp/runs/ex/checkpoints/epoch_latest.safetensors
run() { # the two programs, built one way or the other
  "$1/classify" "$model" "$tmp/sq/0.png" red green blue yellow | tee "$tmp/out.txt"
  [[ $(wc -l < "$tmp/out.txt") == 4 ]]
  "$1/embed_folder" "$model" "$tmp/sq" "$tmp/emb.safetensors"
  "$build/vlm" search --index "$tmp/emb.safetensors" --text "a red square" -k 2 >/dev/null
}
export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/$(gcc -print-multiarch 2>/dev/null)/pkgconfig
mkdir -p "$tmp/pc"
for ex in classify embed_folder; do
  cc -std=c17 -Wall -Wextra -Werror examples/$ex.c -o "$tmp/pc/$ex" $(pkg-config --cflags --libs vlm)
done
echo "examples: built through pkg-config"
run "$tmp/pc"
cmake -S examples -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$tmp/cm" >/dev/null
echo "examples: built through find_package(vlm)"
run "$tmp/cm"
# as a subproject: add_subdirectory, tests off by default, no CMAKE_SOURCE_DIR assumptions
mkdir -p "$tmp/sub"
cat > "$tmp/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(uses_vlm C)
add_subdirectory($PWD vlm)
add_executable(classify $PWD/examples/classify.c)
target_link_libraries(classify PRIVATE vlm)
CM
cmake -S "$tmp/sub" -B "$tmp/sub/build" -DCMAKE_BUILD_TYPE=Release -DVLM_SHARED=OFF >/dev/null
cmake --build "$tmp/sub/build" -j"$(nproc)" --target classify >/dev/null
[[ ! -e $tmp/sub/build/vlm/test_core ]] || { echo "examples: a subproject built the tests" >&2; exit 1; }
"$tmp/sub/build/classify" "$model" "$tmp/sq/2.png" red green blue yellow >/dev/null
echo "examples: built as a subproject (add_subdirectory)"
echo "examples: ok"
