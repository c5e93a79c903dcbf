#!/usr/bin/env bash
# Installs the system libraries medsynth links against, if any is missing (Debian/Ubuntu), then
# builds the release binary. Safe to run repeatedly; needs no input (CI runs it as root).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libpng-dev libjpeg-dev libopenblas-dev zlib1g-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "medsynth: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "medsynth: Swift 6 toolchain not found on PATH (https://swift.org/install)" >&2; exit 1; }
