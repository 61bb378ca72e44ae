#!/usr/bin/env bash
# Installs the Debian packages this project builds and tests with, only when
# one is missing, so running it again costs a few dpkg queries.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --cross  also the aarch64 cross compiler and qemu-user
#   scripts/install-deps.sh --fuzz   also clang with libFuzzer
#   scripts/install-deps.sh --python python3 and pip (to fetch the model)
#   scripts/install-deps.sh --eval   the King James Bible (perplexity text)
#   scripts/install-deps.sh --desktop GTK 4 and a virtual X display (the desktop example and its test)
set -euo pipefail

pkgs=(g++ cmake make pkg-config libopenblas-dev libomp-dev doctest-dev libcxxopts-dev libpcre2-dev nlohmann-json3-dev libcairo2-dev)
case "${1:-}" in
  --cross) pkgs+=(g++-aarch64-linux-gnu qemu-user libpcre2-dev:arm64) ;;
  --fuzz) pkgs+=(clang libclang-rt-dev) ;;
  --python) pkgs+=(python3 python3-pip) ;;
  --eval) pkgs+=(bible-kjv) ;;
  --desktop) pkgs+=(libgtk-4-dev xvfb xdotool x11-apps xauth) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The aarch64 build links Debian's arm64 PCRE2 (multiarch).
if [[ "${1:-}" == --cross ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
