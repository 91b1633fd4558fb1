# SPDX-License-Identifier: MIT
"""clip_tokenizer.py - the CLIP byte-level BPE tokenizer in plain Python, for
development-time fixtures only (make test never runs Python).

It reproduces the behaviour of OpenAI CLIP's SimpleTokenizer (written from its
documented behaviour, not copied), minus ftfy:

  clean:      html.unescape twice, strip; collapse whitespace runs (regex \\s+)
              to one space, strip; then str.lower()
  pre-split:  <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd |
              letters+ (\\p{L}) | one number char (\\p{N}) |
              runs of [^\\s\\p{L}\\p{N}]     (regex module, IGNORECASE)
  bytes:      each piece's UTF-8 bytes mapped through the GPT-2 byte->unicode
              table, '</w>' appended to the last symbol
  BPE:        repeatedly merge the adjacent pair of lowest merge rank
  ids:        vocab = 256 byte chars, the same + '</w>', one entry per merge
              (the pair joined), <|startoftext|>, <|endoftext|>  (49408)
  tokenize:   [SOT] + ids + [EOT], cut to context_length with the last set to
              EOT (OpenAI truncate=True), zero padded.

Known differences from OpenAI: no ftfy.fix_text (so no NFC normalisation, no
quote uncurling, no mojibake repair). Pieces missing from a (small, custom)
vocab map to the <|endoftext|> id, as HF's CLIPTokenizer does with its unk.

Usage as a script: clip_tokenizer.py [--hf DIR] "prompt" ... prints the ids.
"""
import gzip
import html
import json
import os
import sys

import regex

DEFAULT_BPE = "/work/shared/data/bpe_simple_vocab_16e6.txt.gz"
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
N_MERGES = 49152 - 256 - 2  # OpenAI keeps lines 1..48894 after the header

PAT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
WS = regex.compile(r"\s+")


def byte_table():
    """GPT-2's reversible byte -> printable unicode char table (256 entries).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in
    increasing order, to U+0100, U+0101, ... The dict's order is the vocab
    order: the printable bytes first (in increasing order), then the others.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def clean(text):
    text = html.unescape(html.unescape(text)).strip()
    return WS.sub(" ", text).strip().lower()


class ClipTokenizer:
    def __init__(self, bpe_gz_path=None, vocab_json=None, merges_txt=None):
        self.byte_enc = byte_table()
        self.byte_dec = {c: b for b, c in self.byte_enc.items()}
        if vocab_json is not None or merges_txt is not None:
            if vocab_json is None or merges_txt is None:
                raise ValueError("need both vocab_json and merges_txt")
            with open(vocab_json, encoding="utf-8") as f:
                self.encoder = json.load(f)
            with open(merges_txt, encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines and lines[0].startswith("#version"):
                lines = lines[1:]
            merges = []
            for i, line in enumerate(lines):
                line = line[:-1] if line.endswith("\r") else line
                if line == "":
                    continue
                parts = line.split()
                if len(parts) != 2:
                    raise ValueError("%s: line %d: expected two symbols" % (merges_txt, i + 2))
                merges.append(tuple(parts))
        else:
            path = bpe_gz_path or DEFAULT_BPE
            with gzip.open(path) as f:
                lines = f.read().decode("utf-8").split("\n")
            merges = [tuple(l.split()) for l in lines[1 : N_MERGES + 1]]
            vocab = list(self.byte_enc.values())
            vocab += [c + "</w>" for c in vocab]
            vocab += ["".join(m) for m in merges]
            vocab += [SOT, EOT]
            self.encoder = {t: i for i, t in enumerate(vocab)}
        self.merges = merges
        self.ranks = {}
        for i, m in enumerate(merges):
            self.ranks.setdefault(m, i)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.sot = self.encoder[SOT]
        self.eot = self.encoder[EOT]
        self.cache = {SOT: [SOT], EOT: [EOT]}

    def vocab_size(self):
        return len(self.encoder)

    def bpe(self, piece):
        """piece: byte-mapped string. Returns the list of BPE symbols."""
        if piece in self.cache:
            return self.cache[piece]
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            best, best_rank = None, None
            for i in range(len(word) - 1):
                r = self.ranks.get((word[i], word[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = (word[i], word[i + 1]), r
            if best is None:
                break
            a, b = best
            out = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[piece] = word
        return word

    def encode(self, text):
        ids = []
        for tok in PAT.findall(clean(text)):
            mapped = "".join(self.byte_enc[b] for b in tok.encode("utf-8"))
            for sym in self.bpe(mapped):
                ids.append(self.encoder.get(sym, self.eot))
        return ids

    def tokenize(self, texts, context_length=77, truncate=True):
        if isinstance(texts, str):
            texts = [texts]
        out = []
        for t in texts:
            toks = [self.sot] + self.encode(t) + [self.eot]
            if len(toks) > context_length:
                if not truncate:
                    raise RuntimeError("input %r is too long for context length %d" % (t, context_length))
                toks = toks[:context_length]
                toks[-1] = self.eot
            out.append(toks + [0] * (context_length - len(toks)))
        return out

    def decode(self, ids):
        s = "".join(self.decoder.get(i, "") for i in ids)
        data = bytearray()
        for ch in s.replace("</w>", " "):
            data.append(self.byte_dec[ch] if ch in self.byte_dec else ord(" "))
        return data.decode("utf-8", errors="replace")

    def save_hf(self, d):
        os.makedirs(d, exist_ok=True)
        items = sorted(self.encoder.items(), key=lambda kv: kv[1])
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(dict(items), ensure_ascii=False))
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write("%s %s\n" % (a, b))


def main(argv):
    tok = None
    if len(argv) >= 2 and argv[0] == "--hf":
        d = argv[1]
        tok = ClipTokenizer(vocab_json=os.path.join(d, "vocab.json"), merges_txt=os.path.join(d, "merges.txt"))
        argv = argv[2:]
    tok = tok or ClipTokenizer()
    for a in argv:
        print(" ".join(str(i) for i in [tok.sot] + tok.encode(a) + [tok.eot]))


if __name__ == "__main__":
    main(sys.argv[1:])
