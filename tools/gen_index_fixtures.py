#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the SAE fixture of tests/t_index.sh and tests/test_build.c
(development time only; `make test` never runs Python).

    nice -n 10 /usr/bin/python3 tools/gen_index_fixtures.py

tests/data/index/sae_tiny.safetensors: a random ReLU SAE in the project's own
format (metadata patchsae.format = sae) for the tiny CLIP of
tests/data/clip_tiny/hf (width 32, 4 layers): d_in 32, d_sae 96, hook_layer 2
(PatchSAE's n_layers - 2). W_enc has unit-variance pre-activations on the
tiny model's layer-2 residual stream (tests/data/clip_tiny/ref.safetensors),
b_dec is the mean of that stream, and b_enc puts each latent's threshold at a
random quantile between 0.70 and 0.97 of its pre-activation over those
tokens, so tokens have some 10-25 active latents, several above tau = 0.2.
W_dec is W_enc transposed with unit-norm rows. Seeded; about 25 KB.
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")
D, S, LAYER = 32, 96, 2


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, e = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = np.frombuffer(b[8 + n + a:8 + n + e], dtype=dt).reshape(v["shape"])
    return out


def write_st(path, tensors, meta):
    hdr, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k], dtype=np.float32)
        hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    rng = np.random.default_rng(20250)
    x = read_st(os.path.join(DATA, "clip_tiny", "ref.safetensors"))["resid"].reshape(-1, D)
    b_dec = x.mean(0)
    xc = x - b_dec
    w = rng.standard_normal((D, S))
    w /= np.sqrt((xc @ w).var(0))[None, :]
    pre = xc @ w
    q = rng.uniform(0.70, 0.97, S)
    b_enc = -np.array([np.quantile(pre[:, s], q[s]) for s in range(S)])
    f = np.maximum(pre + b_enc, 0)
    w_dec = w.T / np.linalg.norm(w.T, axis=1, keepdims=True)
    os.makedirs(os.path.join(DATA, "index"), exist_ok=True)
    meta = {"format": "pt", "patchsae.format": "sae", "d_in": str(D), "d_sae": str(S),
            "hook_layer": str(LAYER), "model": "clip_tiny", "hook_name": "resid"}
    write_st(os.path.join(DATA, "index", "sae_tiny.safetensors"),
             {"W_enc": w, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec}, meta)
    print("L0 per token %.1f, above 0.2: %.1f" % ((f > 0).sum(1).mean(), (f > 0.2).sum(1).mean()))


if __name__ == "__main__":
    main()
