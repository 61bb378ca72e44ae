#!/usr/bin/env bash
# The README's fine-tuning example: SmolLM2-135M-Instruct taught the King
# James Bible (Debian's bible-kjv package) with LoRA, on an F32, a Q8_0 and a
# Q4_1 base (the F32 and Q8_0 ones made from the shipped Q4_1 with
# ./quantize --allow-requantize). Prints the validation loss before and
# after, tokens/s and peak memory per base, and one prompt's greedy answer
# without and with each adapter; writes logs, plots and adapters to $OUT.
#   scripts/finetune_example.sh            (STEPS=60 CTX=128 BATCH=8 OUT=models/finetune)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-60} CTX=${CTX:-128} BATCH=${BATCH:-8} OUT=${OUT:-models/finetune}
make tools >/dev/null
bash scripts/fetch-models.sh
bash scripts/fetch-eval-text.sh
mkdir -p "$OUT"
# Genesis to train (its first 160 KB), the text after it to validate.
head -c 160000 models/kjv.txt >"$OUT/train.txt"
(tail -c +160001 models/kjv.txt | head -c 16000 >"$OUT/valid.txt") || true  # head closes the pipe early
q41=models/SmolLM2-135M-Instruct.Q4_1.gguf
for t in f32 q8_0; do
  [[ -s $OUT/smollm2-$t.gguf ]] || ./quantize -q --allow-requantize --pure "$q41" "$OUT/smollm2-$t.gguf" "$t"
done
prompt="And the LORD said unto Moses,"
echo "prompt: $prompt"
answer() { local a; a=$(./main "$@" -p "$prompt" -n 24 --temp 0 2>/dev/null); a=${a//$'\n'/ }; echo "${a:0:300}"; }
echo "base: $(answer -m "$q41")"
for t in f32 q8_0 q4_1; do
  m=$OUT/smollm2-$t.gguf
  [[ $t == q4_1 ]] && m=$q41
  ./finetune-lora -m "$m" --train "$OUT/train.txt" --valid "$OUT/valid.txt" --ctx "$CTX" --batch "$BATCH" --steps "$STEPS" \
    --lr 5e-4 --lr-schedule cosine --warmup 5 --eval-every 20 --seed 1 \
    -o "$OUT/kjv-$t.gguf" --log "$OUT/kjv-$t.jsonl" --plot "$OUT/kjv-$t.png" 2>"$OUT/kjv-$t.err"
  grep -E "^validation loss after|^trained" "$OUT/kjv-$t.err" | sed "s/^/$t: /"
  echo "$t + adapter: $(answer -m "$m" --lora "$OUT/kjv-$t.gguf")"
done
