#!/usr/bin/env bash
# Fetches Fashion-MNIST once into DIR (default data/fashion-mnist, gitignored):
# installs the Debian package dataset-fashion-mnist if missing and links its
# IDX files (train/t10k images + labels, gzip) there, plus classnames.txt.
# usage: data/get-fashion-mnist.sh [DIR]
#   then: vlm data stats DIR/train-images-idx3-ubyte.gz
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/fashion-mnist}
src=/usr/share/datasets/fashion-mnist
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
  echo "get-fashion-mnist: installing dataset-fashion-mnist" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
fi
mkdir -p "$dir"
for f in "${files[@]}"; do
  if [[ ! -f $src/$f ]]; then
    echo "get-fashion-mnist: $src/$f missing (dpkg -L dataset-fashion-mnist lists the files)" >&2
    exit 1
  fi
  [[ -e $dir/$f ]] || ln -s "$src/$f" "$dir/$f"
done
# Label index = line number (the dataset's documented class order).
printf '%s\n' "T-shirt/top" "Trouser" "Pullover" "Dress" "Coat" "Sandal" "Shirt" "Sneaker" "Bag" "Ankle boot" \
  > "$dir/classnames.txt"
echo "get-fashion-mnist: $dir ready (60000 train + 10000 test, 28x28 gray, 10 classes)" >&2
