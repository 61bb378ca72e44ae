#!/usr/bin/env bash
# The README's quality table: SmolLM2-135M's Q4_1 file dequantized to F32 is
# the base; ./quantize makes F16, Q8_0, Q4_0 and Q4_1 from it; ./perplexity
# scores each on the King James Bible (CHUNKS windows of 512 tokens) against
# the base's saved logits. Prints a Markdown table.
#   scripts/quality_table.sh [CHUNKS]     (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
chunks=${1:-50}
bash scripts/fetch-models.sh
bash scripts/fetch-eval-text.sh
d=models/quality
mkdir -p "$d"
base=$d/smollm2-f32.gguf
[[ -f $base ]] || ./quantize models/SmolLM2-135M-Instruct.Q4_1.gguf "$base" f32 --allow-requantize -q 2>/dev/null
for t in f16 q8_0 q4_0 q4_1; do
  [[ -f $d/smollm2-$t.gguf ]] || ./quantize "$base" "$d/smollm2-$t.gguf" $t -q 2>/dev/null
done
# The base in exact float arithmetic (its F16 KV cache too).
GGML_BF16_GEMM=0 ./perplexity -m "$base" -f models/kjv.txt --chunks "$chunks" --kl-base "$d/base.kl" 2>/dev/null >"$d/base.txt"
echo "| model | size (MiB) | bits/weight | perplexity | ppl ratio | mean KL (nats) | top-1 agreement |"
echo "|---|---|---|---|---|---|---|"
base_ppl=$(awk '/^perplexity/ {print $2 " ± " $4}' "$d/base.txt")
printf "| f32 (base) | %.1f | 32.00 | %s | 1 | 0 | 100%% |\n" "$(awk -v b="$(stat -c %s "$base")" "BEGIN{print b/1048576}")" "$base_ppl"
# f16 twice: as run (prompt products in bf16 where the CPU has AVX512_BF16)
# and with GGML_BF16_GEMM=0 (exact float products).
for t in f16 f16-exact q8_0 q4_0 q4_1; do
  f=$d/smollm2-${t%-exact}.gguf
  bf=1
  [[ $t == *-exact ]] && bf=0
  out=$(GGML_BF16_GEMM=$bf ./perplexity -m "$f" -f models/kjv.txt --chunks "$chunks" --kl "$d/base.kl" 2>/dev/null)
  ppl=$(awk '/^perplexity/ {print $2 " ± " $4}' <<<"$out")
  ratio=$(awk '/^base perplexity/ {print $5}' <<<"$out")
  kl=$(awk '/^mean KL/ {print $3 " ± " $5}' <<<"$out")
  top1=$(awk '/^top-1/ {print $3}' <<<"$out")
  bits=$(./quantize "$base" /tmp/quality-bits.gguf ${t%-exact} -q 2>&1 | sed -n 's/.*, \([0-9.]*\) bits per weight.*/\1/p'; rm -f /tmp/quality-bits.gguf)
  printf "| %s | %.1f | %s | %s | %s | %s | %s |\n" "$t" "$(awk -v b="$(stat -c %s "$f")" "BEGIN{print b/1048576}")" "$bits" "$ppl" "$ratio" "$kl" "$top1"
done
