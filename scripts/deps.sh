#!/usr/bin/env bash
# Installs the Debian packages vlm builds and tests with, only those missing.
# (Open MPI is for the optional -DVLM_MPI=ON build and its test.)
# usage: scripts/deps.sh [--reference | --browser | --fuzz]   (--reference adds python3-torch etc. for
#        tests/reference/; --browser adds chromium for scripts/page_test.sh; --fuzz clang and libFuzzer
#        for scripts/fuzz.sh)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libopenblas0-openmp
      libjansson-dev libutf8proc-dev libpng-dev libjpeg62-turbo-dev
      libarchive-dev zlib1g-dev openmpi-bin libopenmpi-dev libmicrohttpd-dev
      librsvg2-dev iso-codes wordnet-base)
if [[ "${1:-}" == "--browser" ]]; then # scripts/page_test.sh: the serve page in headless Chromium
  pkgs+=(chromium)
fi
if [[ "${1:-}" == "--fuzz" ]]; then # scripts/fuzz.sh: the libFuzzer harnesses under tests/fuzz
  pkgs+=(clang libfuzzer-14-dev)
fi
if [[ "${1:-}" == "--reference" ]]; then
  pkgs+=(python3-torch python3-torchvision python3-pil python3-numpy)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's alternatives may point libblas.so.3 at the pthread build; vlm links
# the OpenMP build explicitly (see CMakeLists.txt), so nothing else to do here.
