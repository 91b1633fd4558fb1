#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the MaPLe checkpoint variants of tests/test_maple.c into
tests/data/maple/ (development time only; `make test` never runs Python).

    nice -n 10 /usr/bin/python3 tools/gen_maple_bad_fixtures.py

Every file is a real torch.save of a Dassl-style dict {"state_dict", "epoch",
...} made from the learned tensors of tests/data/clip_tiny/maple/model.pth.tar-5
(tiny CLIP: text width 16, vision width 32, 4 layers; n_ctx 2, depth 3), with
one thing changed. Only the learned prompt_learner.* tensors are kept (a few
KiB per file).

Loadable (same prompts as the fixture, so the C test compares outputs):
  ok_module.pth       keys prefixed "module." (DataParallel), legacy (non-zip) format
  ok_bare.pth         the state dict itself, no Dassl wrapper
  (The legacy format names storages by Python object ids, so ok_module.pth
  differs byte-wise from run to run; the others are reproducible.)
Refused, with the message the C test looks for:
  no_ctx.pth          a PatchSAE-like state dict (W_enc ...): not a MaPLe checkpoint
  missing_proj.pth    prompt_learner.proj.weight deleted
  missing_deep_b.pth  compound_prompt_projections.1.bias deleted
  wide_text.pth       every text-width dim 20 instead of 16 (a model of another width)
  wide_vis.pth        proj / projections output 40 instead of 32
  deep_shape.pth      compound_prompts_text.1 is (3,16)
  gap.pth             compound_prompts_text.0 and .2 (and projections 0..2), no .1
  extra_proj.pth      a compound_prompt_projections.2 without compound_prompts_text.2
  too_deep.pth        4 compound prompts: depth 5 > the model's 4 layers
  int_ctx.pth         ctx stored as int64
  nan_ctx.pth         ctx holds a NaN
  list_ctx.pth        ctx is a Python list, not a tensor
"""
import collections
import os

import torch

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "tests", "data", "clip_tiny", "maple", "model.pth.tar-5")
OUT = os.path.join(HERE, "..", "tests", "data", "maple")
P = "prompt_learner."


def learned():
    sd = torch.load(SRC, map_location="cpu")["state_dict"]
    d = collections.OrderedDict()
    for k, v in sd.items():
        if k.startswith(P) and not k.startswith(P + "token_"):
            d[k] = v.detach().clone()  # own storage: no view of the fixture's shared ones
    return d


def save(name, sd, wrap=True, legacy=False):
    obj = {"state_dict": sd, "epoch": 5, "optimizer": None, "scheduler": None} if wrap else sd
    torch.save(obj, os.path.join(OUT, name), _use_new_zipfile_serialization=not legacy)


def widen(t, dim, n):
    """t with dimension dim grown to n (new entries small and deterministic)."""
    shape = list(t.shape)
    extra = shape[:]
    extra[dim] = n - shape[dim]
    pad = torch.linspace(-0.01, 0.01, int(torch.tensor(extra).prod())).reshape(extra).to(t.dtype)
    return torch.cat([t, pad], dim=dim)


def main():
    os.makedirs(OUT, exist_ok=True)
    base = learned()
    assert base[P + "ctx"].shape == (2, 16) and len([k for k in base if "prompts_text" in k]) == 2

    save("ok_module.pth", collections.OrderedDict(("module." + k, v) for k, v in base.items()),
         legacy=True)
    save("ok_bare.pth", base, wrap=False)

    save("no_ctx.pth", collections.OrderedDict(W_enc=torch.zeros(16, 64), b_dec=torch.zeros(16)))

    d = learned()
    del d[P + "proj.weight"]
    save("missing_proj.pth", d)

    d = learned()
    del d[P + "compound_prompt_projections.1.bias"]
    save("missing_deep_b.pth", d)

    d = learned()
    for k in d:  # text width 16 -> 20 everywhere (ctx, compound prompts, input dim of the linears)
        d[k] = widen(d[k], d[k].dim() - 1, 20) if d[k].shape[-1] == 16 else d[k]
    save("wide_text.pth", d)

    d = learned()
    for k in d:  # vision width 32 -> 40: proj / projections rows and biases
        if "proj" in k:
            d[k] = widen(d[k], 0, 40)
    save("wide_vis.pth", d)

    d = learned()
    d[P + "compound_prompts_text.1"] = widen(d[P + "compound_prompts_text.1"], 0, 3)
    save("deep_shape.pth", d)

    d = learned()
    d[P + "compound_prompts_text.2"] = d.pop(P + "compound_prompts_text.1")
    for s in ("weight", "bias"):
        d[P + "compound_prompt_projections.2." + s] = d[P + "compound_prompt_projections.1." + s]
    save("gap.pth", d)

    d = learned()
    for s in ("weight", "bias"):
        d[P + "compound_prompt_projections.2." + s] = d[P + "compound_prompt_projections.1." + s]
    save("extra_proj.pth", d)

    d = learned()
    for i in (2, 3):
        d[P + "compound_prompts_text.%d" % i] = d[P + "compound_prompts_text.1"].clone()
        for s in ("weight", "bias"):
            d[P + "compound_prompt_projections.%d.%s" % (i, s)] = \
                d[P + "compound_prompt_projections.1." + s].clone()
    save("too_deep.pth", d)

    d = learned()
    d[P + "ctx"] = torch.arange(32, dtype=torch.int64).reshape(2, 16)
    save("int_ctx.pth", d)

    d = learned()
    d[P + "ctx"] = d[P + "ctx"].float()
    d[P + "ctx"][1, 3] = float("nan")
    save("nan_ctx.pth", d)

    d = learned()
    d[P + "ctx"] = d[P + "ctx"].float().tolist()
    save("list_ctx.pth", d)


if __name__ == "__main__":
    main()
