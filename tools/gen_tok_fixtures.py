# SPDX-License-Identifier: MIT
"""gen_tok_fixtures.py - expected token ids for tests/test_tok.c, from the
reference tokenizer tools/clip_tokenizer.py:

  tests/data/tok_cases.tsv        OpenAI's vocab (bpe_simple_vocab_16e6.txt.gz)
  tests/data/tok_small_vocab.json, tok_small_merges.txt, tok_small_cases.tsv
                                  a small custom vocab (as the demo model's):
                                  printable-ASCII byte symbols only, the first
                                  300 merges, specials as the last two ids

TSV lines: prompt <TAB> total number of ids of encode(prompt) <TAB> the
tokenize(prompt, 77) ids without the zero padding. In the prompt column \\t
\\n \\r \\\\ and \\xHH (other control bytes) are escaped; the rest is UTF-8.

Run: /usr/bin/python3 tools/gen_tok_fixtures.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_tokenizer import EOT, SOT, ClipTokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tests", "data")
CLASSES = "/work/shared/data/imagenet_classnames.txt"

PROMPTS = [
    "a photo of a cat.",
    "",
    "   ",
    "A Photo Of A CAT!!!",
    "HELLO, World... how's it going?!",
    "hello,world;foo:bar(baz)[qux]{x}",
    "e-mail: someone@example.com #tag $100 50% a+b=c ~/path\\file",
    "1234567890 3.14159 2nd 10th 1,000,000",
    "runs   of    spaces",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeeds",
    "  leading and trailing  \t\n",
    "\x1c\x1dfile separators\x1e\x1f",
    "it's a dog's life, isn't it? they're here, we've gone, I'm sure, you'll see, he'd go",
    "IT'S DOG'S THEY'RE WE'VE I'M YOU'LL HE'D",
    "a lone ' quote, 'quoted', ''double'', rock 'n' roll, '",
    "o'clock o'reilly rock'n'roll",
    "curly \u2019s apostrophe \u201cquotes\u201d",
    "café",
    "naïve",
    "Zürich",
    "Ελληνικά",
    "ΟΔΟΣ ΟΔΟΣ. ΑΣ'Β Σ",
    "Москва ПРИВЕТ мир Ёлка ЎЇЄ",
    "ĀĒĪŌŪ Łódź ŒUVRE Ǆ ǅ Ȁ ȺȾ Ɓ Ǳ",
    "Հայերեն עברית العربية हिन्दी ไทย 한국어",
    "日本",
    "日本語のテキスト",
    "😀",
    "emoji 👍🏽 flags 🇫🇷 family 👨\u200d👩\u200d👧",
    "İstanbul DİYARBAKIR",
    "Straße STRASSE",
    "\u0345 a\u0345b",
    "ﬁne ligature, Ｆｕｌｌｗｉｄｔｈ, e\u0301 combining",
    "١٢٣ ² ½ Ⅻ ⅻ ①",
    "&amp; &lt;b&gt; &quot;quoted&quot; &#39;s &#x27;t",
    "&amp;amp; &amp;lt; twice &amp;amp;amp; thrice",
    "&eacute;t&eacute; &Eacute;T&Eacute; &nbsp;nbsp &copy; 2024",
    "&notit; &notin; &ampx &amp &lt3 &foo; &#; &#x; & &&",
    "&#128; &#150; &#0; &#13; &#1; &#xD800; &#99999999999; &#x1F600;",
    "<|startoftext|> inside <|endoftext|> text <|ENDOFTEXT|>",
    "<<|endoftext|>> !<|endoftext|>",
    "long s: '\u017f <|\u017ftartoftext|> \u017fun",
    "spaces:\x85nel\xa0nbsp\u3000ideographic\u2028line\u200bzw",
    "invalid refs &#x110000; &#xFFFE; &#xFDD0; &#x7f; &#x81;",
    "a" * 300,
    " ".join(["word"] * 100),
    "the quick brown fox jumps over the lazy dog " * 8,
    "x" * 1000 + " y",
]


def esc(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def write_cases(tok, prompts, path):
    with open(path, "w", encoding="utf-8") as f:
        for p in prompts:
            ids = tok.tokenize(p, 77)[0]
            while ids and ids[-1] == 0:
                ids.pop()
            f.write("%s\t%d\t%s\n" % (esc(p), len(tok.encode(p)), " ".join(map(str, ids))))


def main():
    tok = ClipTokenizer()
    # Answers of OpenAI's / open_clip's tokenizer published in other projects' tests.
    known = [
        ("a photo of a cat.", [49406, 320, 1125, 539, 320, 2368, 269, 49407]),
        ("A Photo of a TREE!", [49406, 320, 1125, 539, 320, 2677, 256, 49407]),
        ("I can't believe it's not butter", [49406, 328, 753, 713, 2649, 585, 568, 783, 6952, 49407]),
        ("MacBook Pro 16-inch", [49406, 20617, 2630, 272, 277, 268, 6523, 49407]),
        ("the year 2024 was interesting", [49406, 518, 935, 273, 271, 273, 275, 739, 3628, 49407]),
    ]
    for text, ids in known:
        assert tok.tokenize(text)[0][: len(ids)] == ids, text
    classes = []
    with open(CLASSES, encoding="utf-8") as f:
        for line in f:
            classes.append(line.rstrip("\n").split(" ", 1)[1])
    prompts = PROMPTS + ["a photo of a %s." % c for c in classes]
    write_cases(tok, prompts, os.path.join(DATA, "tok_cases.tsv"))

    # The small custom vocab: what a tiny demo model ships.
    syms = [chr(b) for b in range(0x21, 0x7F)]
    vocab = syms + [s + "</w>" for s in syms]
    merges = tok.merges[:300]
    for a, b in merges:
        if a + b not in vocab:
            vocab.append(a + b)
    vocab += [SOT, EOT]
    with open(os.path.join(DATA, "tok_small_vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False, indent=1))
    with open(os.path.join(DATA, "tok_small_merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    small = ClipTokenizer(
        vocab_json=os.path.join(DATA, "tok_small_vocab.json"),
        merges_txt=os.path.join(DATA, "tok_small_merges.txt"),
    )
    assert small.eot == len(vocab) - 1 and small.sot == len(vocab) - 2
    write_cases(small, PROMPTS + ["a photo of a %s." % c for c in classes[::50]],
                os.path.join(DATA, "tok_small_cases.tsv"))


if __name__ == "__main__":
    main()
