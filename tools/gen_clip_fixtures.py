# SPDX-License-Identifier: MIT
"""gen_clip_fixtures.py - writes tests/data/clip_tiny/: two tiny random CLIPs
in the formats patchsae reads, small test images, and PyTorch reference
outputs (tools/refclip.py) for the C CLIP, tokenizer, preprocessing and MaPLe
code to match. Development-time only; the output is committed.

  nice -n 10 /usr/bin/python3 tools/gen_clip_fixtures.py [OUTDIR]

Deterministic (fixed seeds, torch.set_num_threads(1)). See the README it
writes for shapes and conventions.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refclip as rc  # noqa: E402
from clip_tokenizer import ClipTokenizer, DEFAULT_BPE  # noqa: E402

torch.set_num_threads(1)

# tiny: real CLIP vocabulary and context, small widths
TINY = rc.config(image_size=32, patch_size=8, width=32, layers=4, heads=4, mlp=128, embed_dim=24,
                 text_width=16, text_layers=4, text_heads=2, text_mlp=64)
# small: own small vocabulary, context 16, erf GELU, odd sizes
SMALL_MERGES = 1000
SMALL = rc.config(image_size=30, patch_size=10, width=24, layers=2, heads=3, mlp=40, embed_dim=12,
                  vocab_size=512 + SMALL_MERGES + 2, context_length=16, text_width=20, text_layers=2,
                  text_heads=4, text_mlp=48, act="gelu")

PROMPTS = [
    "a photo of a cat.",
    "A PHOTO OF 3 DOGS!!",
    "   runs   of    spaces\tand\ttabs  ",
    "it's a dog's life, isn't it?",
    "café naïve Zürich",
    "digits 2024 and 3.14159",
    "",
    "this prompt is far too long for the context " + " ".join("word%d" % i for i in range(60)),
]
SMALL_PROMPTS = [
    "a photo of a cat.",
    "THE QUICK brown fox",
    "it's 42",
    "",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
]
MAPLE_CLASSES = ["cat", "golden_retriever", "sea lion", "café"]
MAPLE_N_CTX, MAPLE_DEPTH, MAPLE_EPOCH = 2, 3, 5


def make_images(d):
    """Small deterministic PNGs in several modes and aspect ratios."""
    rng = np.random.default_rng(7)
    specs = [("img_land.png", 48, 36, "RGB"), ("img_port.png", 27, 45, "RGB"), ("img_square.png", 32, 32, "RGB"),
             ("img_gray.png", 40, 40, "L"), ("img_rgba.png", 33, 50, "RGBA"), ("img_big.png", 96, 64, "RGB")]
    names = []
    for name, w, h, mode in specs:
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 128 + 100 * np.sin(x / w * 6.0 + y / h * 2.0)
        g = 255 * (x / max(w - 1, 1))
        b = 255 * ((x // 6 + y // 6) % 2)  # checkerboard: sharp edges for bicubic
        cx, cy = w * 0.6, h * 0.4
        disk = (x - cx) ** 2 + (y - cy) ** 2 < (min(w, h) / 4) ** 2
        r[disk], g[disk], b[disk] = 250, 20, 60
        a = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        img = Image.fromarray(a, "RGB")
        if mode == "L":
            img = img.convert("L")
        elif mode == "RGBA":
            alpha = np.clip(np.rint(255 * y / (h - 1)), 0, 255).astype(np.uint8)
            img = Image.fromarray(np.dstack([a, alpha]), "RGBA")
        img.save(os.path.join(d, name), optimize=True)
        names.append(name)
    return names


def small_tokenizer(d):
    """vocab.json + merges.txt with the first SMALL_MERGES merges of CLIP's BPE
    (vocab: 256 bytes, 256 bytes+</w>, merges, SOT, EOT). Returns a
    ClipTokenizer reading them back."""
    full = ClipTokenizer(DEFAULT_BPE)
    merges = full.merges[:SMALL_MERGES]
    vocab = list(full.byte_enc.values())
    vocab += [c + "</w>" for c in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    return ClipTokenizer(vocab_json=os.path.join(d, "vocab.json"), merges_txt=os.path.join(d, "merges.txt"))


def reference(m, tok, imgs, prompts, layers, default_layer):
    px = torch.stack([rc.preprocess(Image.open(p), m.cfg["image_size"], m.cfg["image_mean"], m.cfg["image_std"])
                      for p in imgs])
    ids = torch.tensor(tok.tokenize(prompts, m.cfg["context_length"], truncate=True), dtype=torch.int64)
    with torch.no_grad():
        pooled, res = m.vision(px, keep=set(layers))
        img = rc.normalize(pooled)
        txt = m.encode_text(ids)
        logits = m.logits(img, txt)
    out = {"pixel_values": px, "resid": res[default_layer]}
    for L in layers:
        if L != default_layer:
            out["resid_layer%d" % L] = res[L]
    out.update({"image_embeds": img, "input_ids": ids, "text_embeds": txt, "logits": logits})
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data", "clip_tiny")
    os.makedirs(d, exist_ok=True)
    imgs = make_images(d)
    img_paths = [os.path.join(d, n) for n in imgs]
    tok = ClipTokenizer(DEFAULT_BPE)

    # ---- tiny: F16 in both layouts, identical fp32 weights
    tiny = rc.build(TINY, seed=1234, round_to="f16")
    rc.save_hf(tiny, os.path.join(d, "hf"), tokenizer=None, dtype="F16", preproc_style="new")
    rc.save_openai(tiny, os.path.join(d, "openai.safetensors"), dtype="F16")
    for other in (rc.load_hf(os.path.join(d, "hf")), rc.load_openai(os.path.join(d, "openai.safetensors"))):
        for (k, a), b in zip(rc.openai_state_dict(tiny).items(), rc.openai_state_dict(other).values()):
            assert torch.equal(a, b), k
    dl = TINY["layers"] - 2
    ref = reference(tiny, tok, img_paths, PROMPTS, (0, dl, TINY["layers"] - 1), dl)
    assert len(tok.encode(PROMPTS[-1])) + 2 > 77
    rc.st_write(os.path.join(d, "ref.safetensors"), ref,
                metadata={"layer": dl, "images": ",".join(imgs), "prompts": json.dumps(PROMPTS)})

    # ---- MaPLe on tiny
    md = os.path.join(d, "maple")
    os.makedirs(md, exist_ok=True)
    mp = rc.Maple(tiny, tok, MAPLE_CLASSES, n_ctx=MAPLE_N_CTX, depth=MAPLE_DEPTH, seed=99)
    mp.perturb(seed=3, scale=0.3)
    mp.round_storage()
    ck = os.path.join(md, "model.pth.tar-%d" % MAPLE_EPOCH)
    rc.save_maple_dassl(mp, ck, MAPLE_EPOCH)
    with open(os.path.join(md, "classes.txt"), "w") as f:
        f.write("\n".join(MAPLE_CLASSES) + "\n")
    mp2 = rc.load_maple_dassl(tiny, tok, MAPLE_CLASSES, ck)
    with torch.no_grad():
        for k, v in mp.learned().items():
            assert torch.equal(v, mp2.learned()[k]), k
        px = ref["pixel_values"]
        pooled, res = mp2.vision(px, keep={0, dl, TINY["layers"] - 1})
        img = rc.normalize(pooled)
        txt = mp2.encode_text()
        shallow, deep = mp2.visual_prompts()
        mref = {"pixel_values": px, "resid": res[dl], "resid_layer0": res[0],
                "resid_layer%d" % (TINY["layers"] - 1): res[TINY["layers"] - 1],
                "image_embeds": img, "input_ids": mp2.tokenized, "text_embeds": txt,
                "logits": tiny.logits(img, txt), "visual_prompt": shallow, "visual_deep_prompts": torch.stack(deep)}
    rc.st_write(os.path.join(d, "ref_maple.safetensors"), mref,
                metadata={"layer": dl, "n_ctx": MAPLE_N_CTX, "depth": MAPLE_DEPTH, "classes": json.dumps(MAPLE_CLASSES)})

    # ---- small: own vocab, ctx 16, GELU; HF F32 and OpenAI BF16, identical fp32 weights
    sd = os.path.join(d, "small")
    os.makedirs(os.path.join(sd, "hf"), exist_ok=True)
    stok = small_tokenizer(os.path.join(sd, "hf"))
    assert stok.vocab_size() == SMALL["vocab_size"]
    small = rc.build(SMALL, seed=77, round_to="bf16")
    rc.save_hf(small, os.path.join(sd, "hf"), tokenizer=None, dtype="F32", preproc_style="old")
    rc.save_openai(small, os.path.join(sd, "openai_bf16.safetensors"), dtype="BF16")
    for other in (rc.load_hf(os.path.join(sd, "hf")), rc.load_openai(os.path.join(sd, "openai_bf16.safetensors"))):
        for (k, a), b in zip(rc.openai_state_dict(small).items(), rc.openai_state_dict(other).values()):
            assert torch.equal(a, b), k
    sdl = SMALL["layers"] - 2
    sref = reference(small, stok, img_paths, SMALL_PROMPTS, (sdl, SMALL["layers"] - 1), sdl)
    rc.st_write(os.path.join(sd, "ref.safetensors"), sref,
                metadata={"layer": sdl, "images": ",".join(imgs), "prompts": json.dumps(SMALL_PROMPTS)})

    for k, v in list(ref.items()) + [("maple." + k, v) for k, v in mref.items()] + \
            [("small." + k, v) for k, v in sref.items()]:
        print("%-28s %-14s %s" % (k, v.dtype, tuple(v.shape)))


if __name__ == "__main__":
    main()
