#!/usr/bin/env python3
"""Record llama.cpp's tokenization of text holding special tokens, with and
without parsing them, for every vocabulary in tests/data/tokenizer/ (the
test data of tests/tokenizer/test_tokenizer.c, `specials` test).

    scripts/peer-tokenize-specials.py /path/to/llama.cpp/build/bin/llama-tokenize \
        > tests/data/tokenizer/specials.txt

The probes: every control, user-defined and unknown token of the
vocabulary (read from the GGUF file here, standard library only), each
between two words, and one text holding all of them at once. Output lines:
VOCAB <tab> PARSE (0 or 1) <tab> the text as a JSON string <tab> ids.
Runs a peer the user built; it does not build one."""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "tokenizer")
VOCABS = ["llama-spm", "phi-3", "gpt-2", "falcon", "starcoder", "deepseek-coder"]
MAX_PROBES = 48  # per vocabulary: the first ones by id


def read_gguf_tokens(path):
    """tokenizer.ggml.tokens and .token_type of a GGUF v2/v3 file."""
    with open(path, "rb") as f:
        data = f.read()
    at = 0

    def take(fmt):
        nonlocal at
        v = struct.unpack_from("<" + fmt, data, at)
        at += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal at
        n = take("Q")
        s = data[at:at + n]
        at += n
        return s

    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
             12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            inner, n = take("I"), take("Q")
            return [value(inner) for _ in range(n)]
        return take(sizes[t])

    assert data[:4] == b"GGUF"
    at = 4
    take("I")  # version
    take("Q")  # tensors
    n_kv = take("Q")
    kv = {}
    for _ in range(n_kv):
        key = string().decode()
        kv[key] = value(take("I"))
    return kv.get("tokenizer.ggml.tokens", []), kv.get("tokenizer.ggml.token_type", [])


def tokenize(tool, vocab, text, parse):
    args = [tool, "-m", vocab, "-p", text, "--ids", "--no-bos", "--log-disable"]
    if not parse:
        args.append("--no-parse-special")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = [x for x in out.splitlines() if x.startswith("[")][-1]
    return json.loads(line)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tool = sys.argv[1]
    print("# llama.cpp's llama-tokenize (--no-bos, with and without --no-parse-special) on the")
    print("# special tokens of each vocabulary: scripts/peer-tokenize-specials.py LLAMA_TOKENIZE")
    for name in VOCABS:
        path = os.path.join(DATA, f"ggml-vocab-{name}.gguf")
        tokens, types = read_gguf_tokens(path)
        specials = [t.decode("utf-8", "replace") for t, ty in zip(tokens, types)
                    if ty in (2, 3, 4) and t][:MAX_PROBES]  # unknown, control, user-defined
        # the texts llama.cpp treats as control whatever their type
        for extra in ("</s>", "<|endoftext|>", "<|end|>", "<s>"):
            if extra.encode() in tokens and extra not in specials:
                specials.append(extra)
        probes = [f"one {s} two" for s in specials] + ["x" + "y".join(specials) + "z"]
        for text in probes:
            for parse in (0, 1):
                ids = tokenize(tool, path, text, parse)
                print(f"{name}\t{parse}\t{json.dumps(text, ensure_ascii=False)}\t"
                      + " ".join(map(str, ids)))


if __name__ == "__main__":
    main()
