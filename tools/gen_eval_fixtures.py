#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/data/eval/sae_small.safetensors: a random SAE (d_in 24, d_sae 64, hook layer 0) for
the small CLIP of tests/data/clip_tiny/small, in the project's own SAE format (safetensors with
__metadata__ patchsae.format = "sae"), for the eval and diff shell tests. Deterministic (seed 7).
W_enc ~ U(-0.3, 0.3), b_enc ~ U(-0.05, 0.05), W_dec rows of unit norm, b_dec ~ U(-0.1, 0.1).
Run: nice -n 10 /usr/bin/python3 tools/gen_eval_fixtures.py"""
import json
import os
import struct

import numpy as np

D, S = 24, 64
rng = np.random.default_rng(7)
W_enc = rng.uniform(-0.3, 0.3, (D, S)).astype(np.float32)
b_enc = rng.uniform(-0.05, 0.05, S).astype(np.float32)
W_dec = rng.uniform(-1, 1, (S, D)).astype(np.float32)
W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
b_dec = rng.uniform(-0.1, 0.1, D).astype(np.float32)

tensors = [("W_dec", W_dec), ("W_enc", W_enc), ("b_dec", b_dec), ("b_enc", b_enc)]
header = {"__metadata__": {"patchsae.format": "sae", "d_in": str(D), "d_sae": str(S),
                           "hook_layer": "0", "model": "clip_tiny/small"}}
off, blobs = 0, []
for name, t in tensors:
    b = np.ascontiguousarray(t).tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "eval", "sae_small.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(out, 8 + len(h) + off, "bytes")
