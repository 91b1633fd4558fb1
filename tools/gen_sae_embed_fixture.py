#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes tests/data/sae_embed/: a small SAE for the tiny CLIP fixture
(tests/data/clip_tiny, vision width 32) in PatchSAE's and SAELens's layouts,
and PyTorch's sae_acts / sae_recon of the reference residual streams, for
`patchsae embed --sae` (tests/test_embed_sae.c, tests/t_embed_sae.sh).
Development time only; `make test` never runs Python.

    nice -n 10 /usr/bin/python3 tools/gen_sae_embed_fixture.py

Files (one set of weights, d_in 32, d_sae 64, seeded):
  patchsae.pt            {"cfg": ViTSAERunnerConfig(block_layer=-2), "state_dict": {...}}
                         (hook: block 2 of the tiny CLIP's 4, the embed default)
  layer0.pt              the same weights with block_layer=0
  saelens/sae_weights.safetensors + saelens/cfg.json   the same SAE, SAELens layout,
                         hook_name "blocks.2.hook_resid_post", hook_layer 2
  ref.safetensors        F32, from clip_tiny/ref.safetensors and ref_maple.safetensors:
    sae_acts (6,17,64), sae_recon (6,17,32)              resid (after block 2)
    sae_acts_layer0 (6,17,64), sae_recon_layer0 (6,17,32) resid_layer0
    sae_acts_maple (6,19,64), sae_recon_maple (6,19,32)  MaPLe resid (T + n_ctx 2)
  with sae_acts = ReLU((resid - b_dec) W_enc + b_enc), sae_recon = sae_acts W_dec + b_dec.

The weights are scaled so that about 40 % of the latents fire. The C forward
differs from PyTorch's in the last bits of resid (~1e-5 relative), which may
flip a ReLU whose pre-activation is within ~1e-5 of 0; that changes the value
by as little, so the relative error over the tensor stays ~1e-5.
"""
import collections
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_pt_fixtures as gp  # noqa: E402  (the PatchSAE config class, write_safetensors)

torch.set_num_threads(1)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
OUT = os.path.join(DATA, "sae_embed")
D, S = 32, 64
SEED = 1


def read_safetensors(p):
    with open(p, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    hdr = json.loads(buf[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(buf[8 + n + a:8 + n + b], dtype="<f4")
                                  .reshape(v["shape"]).copy())
    return out


def weights(seed, resids):
    g = torch.Generator().manual_seed(seed)
    b_dec = torch.stack([r.reshape(-1, D) for r in resids]).reshape(-1, D).mean(0)
    b_dec = b_dec + 0.05 * torch.randn(D, generator=g)
    W_enc = torch.randn(D, S, generator=g) / D ** 0.5
    W_dec = torch.randn(S, D, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    b_enc = -0.3 + 0.2 * torch.randn(S, generator=g)
    return collections.OrderedDict(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec)


def forward(sd, resid):
    pre = (resid - sd["b_dec"]) @ sd["W_enc"] + sd["b_enc"]
    f = torch.relu(pre)
    return f, f @ sd["W_dec"] + sd["b_dec"], pre


def main():
    ref = read_safetensors(os.path.join(DATA, "clip_tiny", "ref.safetensors"))
    refm = read_safetensors(os.path.join(DATA, "clip_tiny", "ref_maple.safetensors"))
    inputs = collections.OrderedDict([("", ref["resid"]), ("_layer0", ref["resid_layer0"]),
                                      ("_maple", refm["resid"])])
    sd = weights(SEED, [inputs[""]])
    for r in inputs.values():
        frac = (forward(sd, r)[2] > 0).float().mean().item()
        assert 0.15 < frac < 0.6, "the fixture should have many active and many zero latents"
    os.makedirs(os.path.join(OUT, "saelens"), exist_ok=True)
    cfg = gp.ViTSAERunnerConfig(d_in=D, expansion_factor=S // D, model_name="clip_tiny",
                                block_layer=-2)
    torch.save({"cfg": cfg, "state_dict": sd}, os.path.join(OUT, "patchsae.pt"))
    cfg0 = gp.ViTSAERunnerConfig(d_in=D, expansion_factor=S // D, model_name="clip_tiny",
                                 block_layer=0)
    torch.save({"cfg": cfg0, "state_dict": sd}, os.path.join(OUT, "layer0.pt"))
    gp.write_safetensors(os.path.join(OUT, "saelens", "sae_weights.safetensors"), sd,
                         {"format": "pt"})
    with open(os.path.join(OUT, "saelens", "cfg.json"), "w") as f:
        json.dump({"architecture": "standard", "d_in": D, "d_sae": S, "dtype": "float32",
                   "device": "cpu", "model_name": "clip_tiny",
                   "hook_name": "blocks.2.hook_resid_post", "hook_layer": 2,
                   "hook_head_index": None, "activation_fn_str": "relu",
                   "apply_b_dec_to_input": True, "finetuning_scaling_factor": False,
                   "context_size": 17, "prepend_bos": False, "normalize_activations": "none"},
                  f, indent=2)
        f.write("\n")
    out = collections.OrderedDict()
    for suffix, r in inputs.items():
        acts, recon, pre = forward(sd, r)
        out["sae_acts" + suffix] = acts
        out["sae_recon" + suffix] = recon
        print("sae_acts%s %s: %.1f%% active, min |pre| %.3g" % (
            suffix, tuple(acts.shape), 100 * (acts > 0).float().mean().item(),
            pre.abs().min().item()))
    gp.write_safetensors(os.path.join(OUT, "ref.safetensors"), out,
                         {"seed": str(SEED), "d_in": str(D), "d_sae": str(S)})


if __name__ == "__main__":
    main()
