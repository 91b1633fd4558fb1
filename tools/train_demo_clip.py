# SPDX-License-Identifier: MIT
"""train_demo_clip.py - trains the demo's tiny CLIP on Fashion-MNIST and writes
it as a HF CLIPModel directory (development time only; the output is committed
so that users and CI never need Python).

  nice -n 10 /usr/bin/python3 tools/train_demo_clip.py [--out assets] [--epochs 2.5]
      [--threads 1] [--seed 0]

Writes
  OUT/demo-clip/{config.json, model.safetensors (F32), preprocessor_config.json,
                 vocab.json, merges.txt, training.json}
  OUT/fashion-shift/t10k-{images-idx3,labels-idx1}-ubyte.gz (the shifted test set)

What it does, in order:
  1. reads Debian's dataset-fashion-mnist (60k train, 10k test);
  2. learns a byte-level BPE vocabulary (CLIP layout) from all distinct
     captions (demo_data.Captions) and saves it with the model;
  3. preprocesses every image once exactly as the C pipeline does (HF
     CLIPProcessor semantics, 28x28 grey -> RGB -> 32x32, CLIP mean/std);
  4. trains tools/refclip.py's RefCLIP contrastively: each step takes B images,
     draws one caption per image (random template, class name or synonym,
     measured attributes), encodes the distinct captions of the batch, and
     minimises the symmetric multi-positive InfoNCE loss, where a caption is a
     positive for every image in the batch it truly describes (same class and
     same stated attributes), not only for the image it was drawn for;
  5. measures zero-shot accuracy with "a photo of a {c}." on the original and
     on the shifted (inverted) test set, saves, reloads the saved directory
     with refclip.load_hf and checks that the reloaded model gives the same
     predictions.

Text is encoded during training with the sequence cut after the longest
caption of the corpus; with causal attention and EOT pooling this is exactly
the full-context (77) computation, which the final evaluation uses.
Deterministic: fixed seeds, one thread by default.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_data as dd  # noqa: E402
import refclip as rc  # noqa: E402
from clip_tokenizer import ClipTokenizer  # noqa: E402

IMAGE_SIZE = 32
CFG = rc.config(image_size=IMAGE_SIZE, patch_size=4, width=96, layers=4, heads=4, mlp=384, embed_dim=64,
                vocab_size=0, context_length=77, text_width=64, text_layers=4, text_heads=4, text_mlp=256,
                act="quick_gelu")
BATCH = 128
LR = 1e-3
WD = 0.1
WARMUP = 100
BPE_MAX_MERGES = 1000  # the corpus runs out of repeated pairs long before


def pixels(u8, cfg):
    """uint8 (N,S,S) -> float32 (N,3,S,S) as refclip.preprocess computes it:
    x*(1/255) in float64, cast to float32, then (x-mean)/std in float32."""
    x = (torch.as_tensor(u8).double() * (1 / 255)).float().unsqueeze(1).expand(-1, 3, -1, -1)
    m = torch.tensor(cfg["image_mean"], dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(cfg["image_std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def text_short(m, ids):
    """RefCLIP.text for ids cut to L <= context_length tokens (causal => same result)."""
    x = m.token_embedding[ids] + m.txt_pos[:ids.shape[1]]
    for b in m.txt_blocks:
        x = b(x, causal=True)
    x = m.ln_final(x)
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ m.text_projection


def init_weights(m, seed):
    """refclip's CLIP-scaled random init, with LayerNorms at 1/0 and small biases at 0."""
    m.init_random(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.fill_(1.0)
                mod.bias.zero_()
        for b in list(m.vis_blocks) + list(m.txt_blocks):
            for p in (b.in_proj_bias, b.out_proj.bias, b.c_fc.bias, b.c_proj.bias):
                p.zero_()
        m.logit_scale.fill_(float(np.log(1 / 0.07)))


@torch.no_grad()
def zero_shot(m, tok, u8, labels, classes=None, batch=1000):
    """Accuracy (%) and predictions of "a photo of a {c}." zero-shot over `classes`
    (default all 10), using the full-context RefCLIP text path."""
    classes = list(range(len(dd.CLASSNAMES))) if classes is None else list(classes)
    ids = torch.tensor(tok.tokenize([dd.ZS_TEMPLATE.format(dd.CLASSNAMES[c]) for c in classes],
                                    m.cfg["context_length"]))
    tf = m.encode_text(ids)
    preds = []
    for i in range(0, len(u8), batch):
        preds.append((m.encode_image(pixels(u8[i:i + batch], m.cfg)) @ tf.t()).argmax(1))
    pred = np.asarray(classes)[torch.cat(preds).numpy()]
    return 100.0 * float((pred == labels).mean()), pred


def main(argv):
    ap = argparse.ArgumentParser(description="train the patchsae demo CLIP on Fashion-MNIST")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets"))
    ap.add_argument("--epochs", type=float, default=2.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t_start, c_start = time.time(), time.process_time()
    out = os.path.abspath(a.out)
    mdir = os.path.join(out, "demo-clip")
    sdir = os.path.join(out, "fashion-shift")
    os.makedirs(mdir, exist_ok=True)
    os.makedirs(sdir, exist_ok=True)

    x, y = dd.load_split("train")
    xt, yt = dd.load_split("t10k")
    attrs = dd.Attributes(x, y)
    at = attrs(x, y)
    caps = dd.Captions()

    merges = dd.train_bpe(caps.texts, BPE_MAX_MERGES)
    vocab_size = dd.save_bpe(mdir, merges)
    tok = ClipTokenizer(vocab_json=os.path.join(mdir, "vocab.json"), merges_txt=os.path.join(mdir, "merges.txt"))
    cfg = dict(CFG, vocab_size=vocab_size)
    ctoks = torch.tensor(tok.tokenize(caps.texts, cfg["context_length"], truncate=False))
    longest = int((ctoks > 0).sum(1).max())
    ctoks = ctoks[:, :longest]

    xs = dd.shift(xt)
    px = dd.preprocess_u8(x, IMAGE_SIZE)
    pxt = dd.preprocess_u8(xt, IMAGE_SIZE)
    pxs = dd.preprocess_u8(xs, IMAGE_SIZE)
    t_prep = time.time() - t_start
    print("data: %d captions, %d merges, vocab %d, longest caption %d tokens, prep %.1fs"
          % (len(caps.texts), len(merges), vocab_size, longest, t_prep), flush=True)

    m = rc.RefCLIP(cfg)
    init_weights(m, a.seed)
    m.train()
    n_param = sum(p.numel() for p in m.parameters())
    steps = int(a.epochs * len(y)) // BATCH
    decay = [p for p in m.parameters() if p.ndim >= 2]
    no_decay = [p for p in m.parameters() if p.ndim < 2]  # gains, biases, class embedding, logit scale
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / WARMUP) * 0.5 * (1 + np.cos(np.pi * i / steps)))
    rng = np.random.default_rng(a.seed)
    pxf = pixels(px, cfg)
    log = []
    t0 = time.time()
    perm = np.zeros(0, dtype=np.int64)
    for step in range(steps):
        if len(perm) < BATCH:
            perm = np.concatenate([perm, rng.permutation(len(y))])
        idx, perm = perm[:BATCH], perm[BATCH:]
        cid = caps.sample(rng, y[idx], at[idx])
        uniq = np.unique(cid)
        pos = torch.from_numpy(caps.consistent(uniq, y[idx], at[idx]))  # (B,K)
        fi = rc.normalize(m.vision(pxf[idx])[0])
        ft = rc.normalize(text_short(m, ctoks[uniq]))
        lg = m.logit_scale.exp() * fi @ ft.t()
        neg = torch.finfo(lg.dtype).min
        lp = lg.masked_fill(~pos, neg)
        i2t = (lg.logsumexp(1) - lp.logsumexp(1)).mean()
        t2i = (lg.logsumexp(0) - lp.logsumexp(0)).mean()
        loss = (i2t + t2i) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            m.logit_scale.clamp_(0, float(np.log(100.0)))
        if step % 50 == 0 or step == steps - 1:
            print("step %d/%d loss %.3f scale %.1f %.0fs" % (step, steps, loss.item(), m.logit_scale.exp().item(),
                                                               time.time() - t0), flush=True)
            log.append([step, round(loss.item(), 4)])
    t_train = time.time() - t0
    m.eval()

    acc_orig, pred_orig = zero_shot(m, tok, pxt, yt)
    acc_shift, pred_shift = zero_shot(m, tok, pxs, yt)
    print("zero-shot test accuracy: original %.2f%%, shifted %.2f%%" % (acc_orig, acc_shift), flush=True)

    rc.save_hf(m, mdir, tokenizer=None, dtype="F32")
    back = rc.load_hf(mdir)
    acc_back, pred_back = zero_shot(back, tok, pxt, yt)
    if not (pred_back == pred_orig).all():
        raise RuntimeError("reloaded %s predicts differently (%.2f%% vs %.2f%%)" % (mdir, acc_back, acc_orig))

    dd.write_idx_gz(os.path.join(sdir, "t10k-images-idx3-ubyte.gz"), xs)
    dd.write_idx_gz(os.path.join(sdir, "t10k-labels-idx1-ubyte.gz"), yt)
    if not (dd.read_idx(os.path.join(sdir, "t10k-images-idx3-ubyte.gz")) == xs).all():
        raise RuntimeError("shifted IDX does not read back")

    per_class = {dd.CLASSNAMES[c]: round(100.0 * float((pred_orig[yt == c] == c).mean()), 2)
                 for c in range(len(dd.CLASSNAMES))}
    rec = {
        "command": "nice -n 10 /usr/bin/python3 tools/train_demo_clip.py --epochs %g --threads %d --seed %d"
                   % (a.epochs, a.threads, a.seed),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "PIL": __import__("PIL").__version__},
        "config": cfg, "parameters": n_param, "batch": BATCH, "lr": LR, "weight_decay": WD, "warmup": WARMUP,
        "steps": steps, "epochs": a.epochs, "seed": a.seed, "threads": a.threads,
        "bpe_merges": len(merges), "n_captions": len(caps.texts), "longest_caption_tokens": longest,
        "attribute_cuts": attrs.to_json(),
        "seconds": {"prep": round(t_prep, 1), "train": round(t_train, 1), "total": round(time.time() - t_start, 1),
                    "cpu_total": round(time.process_time() - c_start, 1), "load_average": list(os.getloadavg())},
        "final_logit_scale": round(float(m.logit_scale.exp()), 3),
        "zero_shot_prompt": dd.ZS_TEMPLATE,
        "zero_shot_test_accuracy": {"original": round(acc_orig, 2), "shifted": round(acc_shift, 2),
                                    "original_per_class": per_class},
        "loss_log": log,
    }
    with open(os.path.join(mdir, "training.json"), "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    print("wrote %s and %s in %.0fs" % (mdir, sdir, time.time() - t_start))


if __name__ == "__main__":
    main(sys.argv[1:])
