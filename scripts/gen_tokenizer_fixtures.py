#!/usr/bin/env python3
"""Trains small real tokenizers and records the reference libraries' ids.

Writes tests/data/tokenizer/:
  hard_strings.json             the strings every tokenizer is checked on
  spm_bytes/tokenizer.model     sentencepiece BPE, LLaMA settings (byte fallback)
  spm_unk/tokenizer.model       sentencepiece BPE without byte fallback (<unk>)
  bpe_gpt2/tokenizer.json       `tokenizers` byte-level BPE, GPT-2 pre-tokenizer
  bpe_digits/tokenizer.json     `tokenizers` byte-level BPE, digits split first
  bpe_llama3/tokenizer.json     `tokenizers` byte-level BPE, LLaMA-3's split regex
  <name>/expected.json          reference ids: "raw" (special tokens not parsed)
                                and, for `tokenizers`, "special" (parsed)
  smollm2.json                  the same for SmolLM2's vocabulary and merges, read
                                from the GGUF in models/ (needs scripts/fetch-models.sh)

Needs: pip install sentencepiece tokenizers gguf numpy. Deterministic: fixed
corpus (Debian's license texts plus the lines below), single-threaded training.
"""
import glob
import io
import json
import os
import sys

import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

HARD = [
    "",
    " ",
    "  ",
    "Hello world",
    " Hello world",
    "Hello  world",
    "   leading and trailing   ",
    "line one\nline two\n\n\nthree\n",
    "\ttabs\tand\t\tmore\t",
    "\r\nwindows line\r\nends\r\n",
    "   \n   \n",
    "café naïve résumé Ångström Øresund",
    "Ελληνικά και русский язык",
    "日本語のテキストと中文，还有標點。",
    "한국어 텍스트",
    "עברית ومرحبا بالعالم",
    "हिन्दी और বাংলা",
    "emoji 🙂🚀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "digits 0 12 345 6789 3.14159 1,000,000 2026-11-22",
    "١٢٣ ٤٥٦ ⅣⅫ ²³",
    "def f(x):\n    return x**2  # square\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    "if x != y && z >= 0 || !w: print('ok')",
    "<s> </s> <unk> <|endoftext|> <|im_start|>user\nhi<|im_end|>",
    "<|im_start|><|im_end|><|endoftext|>",
    "[[sep]] between [[sep]]words",
    "don't I'll we've they're it's O'Neil's",
    "DON'T SHOUT 'S 'LL",
    "\u00a0non-breaking\u2009thin\u3000ideographic",
    "a\u0301 combining e\u0308",
    "zero\u200bwidth\u200djoiner",
    "!!!???... ---- ____ ****",
    "https://example.com/path?query=1&b=2#frag",
    "x" * 200,
    " " * 33 + "end",
]

EXTRA_CORPUS = """The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
café naïve résumé Ångström Øresund déjà vu façade coöperate
Ελληνικά και русский язык, мир и дружба. Γειά σου κόσμε.
日本語のテキスト。中文文本，还有標點。
def main(argv):\n    return 0 if argv else 1
for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2.71828
emoji 🙂 🚀 👍 are fun
""".split("\n")


def corpus():
    lines = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                lines += [l.rstrip("\n") for l in f if l.strip()]
    lines += [l for l in EXTRA_CORPUS if l.strip()] * 20
    return lines


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # One string or id list per line keeps the diffs readable.
    def dump(x):
        return json.dumps(x, ensure_ascii=False)
    if isinstance(obj, list):
        text = "[\n" + ",\n".join(dump(x) for x in obj) + "\n]\n"
    else:
        parts = []
        for k, v in obj.items():
            if isinstance(v, list):
                parts.append(dump(k) + ": [\n" + ",\n".join(dump(x) for x in v) + "\n]")
            else:
                parts.append(dump(k) + ": " + dump(v))
        text = "{\n" + ",\n".join(parts) + "\n}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def train_spm(name, lines, **kw):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe",
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, user_defined_symbols=["[[sep]]"],
        num_threads=1, minloglevel=2, **kw)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    raw = [sp.encode(s) for s in HARD]
    write_json(os.path.join(d, "expected.json"), {"library": "sentencepiece " + spm.__version__, "raw": raw})


def train_bpe(name, lines, pre):
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|padding|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(lines, trainer)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    tk.save(os.path.join(d, "tokenizer.json"))
    write_json(os.path.join(d, "expected.json"), reference_bpe(json.loads(tk.to_str()), pre, specials))


def reference_bpe(tj, pre, specials):
    """Ids from a `tokenizers` BPE built from the vocabulary and merges alone
    (raw) and with the special tokens registered (special)."""
    import tokenizers
    vocab = tj["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tj["model"]["merges"]]
    out = {"library": "tokenizers " + tokenizers.__version__}
    for mode in ("raw", "special"):
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tk.pre_tokenizer = pre
        tk.decoder = decoders.ByteLevel()
        if mode == "special":
            tk.add_special_tokens(specials)
        out[mode] = [tk.encode(s, add_special_tokens=False).ids for s in HARD]
    return out


def smollm2():
    from gguf import GGUFReader
    path = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        print("skipping SmolLM2: run scripts/fetch-models.sh first", file=sys.stderr)
        return
    r = GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [m.split(" ") for m in strings("tokenizer.ggml.merges")]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    assert bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tj = {"model": {"vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    control = [t for t, ty in zip(tokens, types) if ty == 3]
    write_json(os.path.join(OUT, "smollm2.json"), reference_bpe(tj, pre, control))


def main():
    write_json(os.path.join(OUT, "hard_strings.json"), HARD)
    lines = corpus()
    train_spm("spm_bytes", lines, vocab_size=1000, byte_fallback=True, character_coverage=1.0)
    train_spm("spm_unk", lines, vocab_size=600, byte_fallback=False, character_coverage=0.995)
    train_bpe("bpe_gpt2", lines, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    train_bpe("bpe_digits", lines, pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]))
    from tokenizers import Regex
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    train_bpe("bpe_llama3", lines, pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(llama3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))
    smollm2()


if __name__ == "__main__":
    main()
