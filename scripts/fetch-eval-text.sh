#!/usr/bin/env bash
# The perplexity evaluation text: the King James Bible (public domain), from
# Debian's bible-kjv package, printed whole into models/kjv.txt (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/kjv.txt
if [[ -s $dest ]]; then exit 0; fi
bash scripts/install-deps.sh --eval
mkdir -p models
bible gen1:1-rev22:21 >"$dest.tmp"
mv "$dest.tmp" "$dest"
echo "fetch-eval-text: $dest ($(wc -c <"$dest") bytes)" >&2
