#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the PyTorch-checkpoint and SAE fixtures of tests/test_pt.c and
tests/test_sae.c into tests/data/ (development time only; `make test` never
runs Python).

    nice -n 10 /usr/bin/python3 tools/gen_pt_fixtures.py

Everything is seeded, small (a few KiB each) and written by torch.save itself
(rerunning changes only the legacy files, whose storage keys are object ids),
except the hostile files, whose pickles are made by a Pickler with the same
persistent ids torch uses (or written byte by byte) and zipped as torch does.

Files:
  sae_patchsae.pt        PatchSAE checkpoint {"cfg": ViTSAERunnerConfig, "state_dict": {...}}
  sae_patchsae_config.pt the same under key "config"
  sae_patchsae_legacy.pt the same in the legacy (non-zip) format
  sae_weights.f32        W_enc (16,64), b_enc (64), W_dec (64,16), b_dec (16) raw little-endian
  sae_ref.f32            x (5,16), f (5,64), xhat (5,16), xmask (5,16) computed by PyTorch,
                         xmask = (f * keep) W_dec + b_dec + 0.10513 with keep[s] = s % 3 != 0
  saelens/sae_weights.safetensors + saelens/cfg.json   the same SAE in SAELens layout
  pt_mixed.pt            dtypes, non-contiguous views, shared storages, nested containers
  pt_mixed_legacy.pt     the same, legacy format
  pt_mixed_deflate.pt    the same zip recompressed with deflate, plus byteorder "little"
  pt_mixed_big.pt        byteorder "big" (refused)
  pt_mixed.txt           expected tensors: "name dtype shape | v0 v1 ..." (float32 values)
  dassl.pt               Dassl/MaPLe-style {"state_dict": OrderedDict, "epoch", "optimizer", "scheduler"}
  evil_*.pt / bad_*.pt   hostile checkpoints (see HOSTILE below)
"""
import collections
import dataclasses
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import torch

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
D, S, T = 16, 64, 5
SAE_BIAS = -0.105131256516992


def path(name):
    p = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


# ---- a PatchSAE-style config class living in src.sae_training.config ----
mod = types.ModuleType("src.sae_training.config")
sys.modules["src"] = types.ModuleType("src")
sys.modules["src.sae_training"] = types.ModuleType("src.sae_training")
sys.modules["src.sae_training.config"] = mod


@dataclasses.dataclass
class ViTSAERunnerConfig:
    class_token: bool = None
    image_width: int = 224
    image_height: int = 224
    model_name: str = "openai/clip-vit-base-patch16"
    module_name: str = "resid"
    block_layer: int = -2
    dataset_path: str = "evanarlian/imagenet_1k_resized_256"
    use_cached_activations: bool = False
    image_key: str = "image"
    label_key: str = "label"
    d_in: int = D
    expansion_factor: int = S // D
    b_dec_init_method: str = "geometric_median"
    lr: float = 0.0004
    l1_coefficient: float = 8e-05
    lr_scheduler_name: str = "constantwithwarmup"
    batch_size: int = 4096
    lr_warm_up_steps: int = 500
    total_training_tokens: int = 2621440 * 197
    n_batches_in_store: int = 15
    use_ghost_grads: bool = True
    feature_sampling_window: int = 64
    dead_feature_window: int = 64
    dead_feature_threshold: float = 1e-08
    log_to_wandb: bool = False
    wandb_project: str = "patchsae"
    device: object = torch.device("cpu")
    seed: int = 42
    dtype: object = torch.float32
    n_checkpoints: int = 10
    checkpoint_path: str = "checkpoints"
    d_sae: int = None

    def __post_init__(self):
        self.d_sae = self.d_in * self.expansion_factor


ViTSAERunnerConfig.__module__ = "src.sae_training.config"
mod.ViTSAERunnerConfig = ViTSAERunnerConfig


def sae_tensors():
    g = torch.Generator().manual_seed(1234)
    W_enc = (torch.rand(D, S, generator=g) * 2 - 1) * 0.6
    W_dec = torch.rand(S, D, generator=g) * 2 - 1
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    b_enc = (torch.rand(S, generator=g) * 2 - 1) * 0.2
    b_dec = (torch.rand(D, generator=g) * 2 - 1) * 0.3
    return collections.OrderedDict(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec)


def write_sae():
    sd = sae_tensors()
    cfg = ViTSAERunnerConfig()
    torch.save({"cfg": cfg, "state_dict": sd}, path("sae_patchsae.pt"))
    torch.save({"config": cfg, "state_dict": sd}, path("sae_patchsae_config.pt"))
    torch.save({"cfg": cfg, "state_dict": sd}, path("sae_patchsae_legacy.pt"),
               _use_new_zipfile_serialization=False)
    with open(path("sae_weights.f32"), "wb") as f:
        for k in ("W_enc", "b_enc", "W_dec", "b_dec"):
            f.write(sd[k].numpy().astype("<f4").tobytes())
    # the reference forward, as sparse_autoencoder.py computes it
    g = torch.Generator().manual_seed(99)
    x = torch.randn(T, D, generator=g)
    f_ = torch.relu((x - sd["b_dec"]) @ sd["W_enc"] + sd["b_enc"])
    xhat = f_ @ sd["W_dec"] + sd["b_dec"]
    keep = torch.tensor([s % 3 != 0 for s in range(S)], dtype=torch.float32)
    xmask = (f_ * keep) @ sd["W_dec"] + sd["b_dec"] - SAE_BIAS
    assert (f_ > 0).float().mean() > 0.2, "the fixture should have many active latents"
    with open(path("sae_ref.f32"), "wb") as f:
        for a in (x, f_, xhat, xmask):
            f.write(a.numpy().astype("<f4").tobytes())
    # SAELens layout: sae_weights.safetensors + cfg.json, written by hand
    write_safetensors(path("saelens/sae_weights.safetensors"), sd, {"format": "pt"})
    with open(path("saelens/cfg.json"), "w") as f:
        json.dump({"architecture": "standard", "d_in": D, "d_sae": S, "dtype": "float32",
                   "device": "cpu", "model_name": "tiny-clip", "hook_name": "blocks.9.hook_resid_post",
                   "hook_layer": 9, "hook_head_index": None, "activation_fn_str": "relu",
                   "apply_b_dec_to_input": True, "finetuning_scaling_factor": False,
                   "context_size": 50, "prepend_bos": False, "normalize_activations": "none"},
                  f, indent=2)


def write_safetensors(p, tensors, meta=None):
    hdr, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().numpy().astype("<f4").tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- mixed dtypes and layouts ----
def mixed():
    g = torch.Generator().manual_seed(7)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3
    shared = torch.randn(10, generator=g)
    return {
        "contig": base,
        "transposed": base.t(),                      # stride (1, 6)
        "sliced": base[1:3, 2:5],                    # offset 8, stride (6, 1)
        "stepped": base[::2, ::3],                   # stride (12, 3)
        "f16": (torch.randn(3, 5, generator=g) * 100).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16().t(),
        "f64": torch.randn(4, generator=g).double(),
        "i64": torch.tensor([[-5, 0, 7], [1 << 40, -(1 << 33), 3]], dtype=torch.int64),
        "i32": torch.tensor([-2, 2147483647, 0], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 3], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "shared_a": shared[2:6],
        "shared_b": shared.view(2, 5),
        "param": torch.nn.Parameter(torch.ones(2, 2) * 0.25),
        "nested": {"list": [torch.tensor([1.0, 2.0]), 3, "x"],
                   "tuple": (1, 2.5, None, True, b"\x00\x01\xff"),
                   "odict": collections.OrderedDict([("k", -1), (7, "seven")]),
                   "set": {1, 2}, "frozen": frozenset({"a"}),
                   "big": 2 ** 70, "neg": -(2 ** 40), "unicode": "é✓"},
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
    }


def write_mixed():
    obj = mixed()
    torch.save(obj, path("pt_mixed.pt"))
    torch.save(obj, path("pt_mixed_legacy.pt"), _use_new_zipfile_serialization=False)
    rezip(path("pt_mixed.pt"), path("pt_mixed_deflate.pt"), zipfile.ZIP_DEFLATED, "little")
    rezip(path("pt_mixed.pt"), path("pt_mixed_big.pt"), zipfile.ZIP_STORED, "big")
    lines = []

    def walk(prefix, o):
        if isinstance(o, torch.Tensor):
            v = o.detach().contiguous().float().reshape(-1).tolist()
            dt = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                  torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
                  torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}[o.dtype]
            lines.append("%s %s %s | %s" % (prefix, dt, ",".join(str(s) for s in o.shape) or "-",
                                            " ".join("%.9g" % x for x in v)))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk("%s.%s" % (prefix, k) if prefix else str(k), v)
        elif isinstance(o, (list, tuple)) and not isinstance(o, torch.Size):
            for i, v in enumerate(o):
                walk("%s.%d" % (prefix, i), v)
    walk("", obj)
    with open(path("pt_mixed.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def zput(z, name, data, method=zipfile.ZIP_STORED):
    """A zip entry with a fixed date, so rerunning the script changes nothing."""
    z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=method)


def rezip(src, dst, method, byteorder):
    zin = zipfile.ZipFile(src)
    top = zin.namelist()[0].split("/")[0]
    with zipfile.ZipFile(dst, "w", method) as z:
        for i in zin.infolist():
            zput(z, i.filename, zin.read(i.filename), method)
        zput(z, top + "/byteorder", byteorder, method)


# ---- Dassl / MaPLe style ----
def write_dassl():
    g = torch.Generator().manual_seed(3)
    sd = collections.OrderedDict()
    sd["prompt_learner.ctx"] = torch.randn(2, 8, generator=g)
    sd["prompt_learner.proj.weight"] = torch.randn(16, 8, generator=g)
    sd["prompt_learner.proj.bias"] = torch.randn(16, generator=g)
    for i in range(2):
        sd["prompt_learner.compound_prompts_text.%d" % i] = torch.randn(2, 8, generator=g)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])  # as nn.Module.state_dict()
    p = torch.nn.Parameter(sd["prompt_learner.ctx"].clone())
    opt = torch.optim.SGD([p], lr=0.0035, momentum=0.9)
    p.sum().backward()
    opt.step()
    ckpt = {"state_dict": sd, "epoch": 5, "optimizer": opt.state_dict(), "scheduler": None,
            "val_result": 0.75}
    torch.save(ckpt, path("dassl.pt"))


# ---- hostile files ----
class Storage:
    def __init__(self, key, typ, numel):
        self.key, self.typ, self.numel = key, typ, numel


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, obj.typ), obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj):
    b = io.BytesIO()
    TorchPickler(b, protocol=2).dump(obj)
    return b.getvalue()


def torch_zip(name, pkl, storages=None, top="archive"):
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as z:
        zput(z, top + "/data.pkl", pkl)
        for k, data in (storages or {}).items():
            zput(z, top + "/data/" + k, data)
        zput(z, top + "/version", "3\n")


PWNED = "/tmp/patchsae_pwned_%s"


def g(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def u(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def call1(mod, name, arg):
    return b"\x80\x02" + g(mod, name) + u(arg) + b"\x85R."


def write_hostile():
    f32 = lambda n: struct.pack("<%df" % n, *[float(i) for i in range(n)])
    s6 = Storage("0", "FloatStorage", 6)
    # storage-level damage
    torch_zip("bad_offset.pt", torch_pickle({"t": FakeTensor(s6, 4, (2, 2), (2, 1))}), {"0": f32(6)})
    torch_zip("bad_stride.pt", torch_pickle({"t": FakeTensor(s6, 0, (2, 3), (1, 3))}), {"0": f32(6)})
    torch_zip("bad_short_entry.pt", torch_pickle({"t": FakeTensor(s6, 0, (6,), (1,))}), {"0": f32(5)})
    torch_zip("bad_missing_entry.pt", torch_pickle({"t": FakeTensor(s6, 0, (6,), (1,))}), {})
    huge = Storage("0", "FloatStorage", 1 << 50)
    torch_zip("bad_huge_storage.pt", torch_pickle({"t": FakeTensor(huge, 0, (1 << 50,), (1,))}),
              {"0": f32(6)})
    torch_zip("bad_neg_size.pt", torch_pickle({"t": FakeTensor(s6, 0, (-1,), (1,))}), {"0": f32(6)})
    # a storage aliased by a view with a different dtype
    torch_zip("bad_alias.pt", torch_pickle({"a": FakeTensor(s6, 0, (6,), (1,)),
                                            "b": FakeTensor(Storage("0", "HalfStorage", 6), 0, (6,), (1,))}),
              {"0": f32(6)})
    # expanded (stride 0) views: a small one is fine, a huge one is refused
    torch_zip("expanded.pt", torch_pickle({"t": FakeTensor(s6, 2, (3, 4), (0, 1))}), {"0": f32(6)})
    torch_zip("bad_broadcast.pt", torch_pickle({"t": FakeTensor(s6, 0, (1 << 20, 1 << 20), (0, 0))}),
              {"0": f32(6)})
    # a valid odd-layout file made by hand: top directory with another name, offset views
    torch_zip("odd_top.pt", torch_pickle({"t": FakeTensor(s6, 1, (2, 2), (1, 2))}), {"0": f32(6)},
              top="whatever_name")
    # code execution attempts: each would create /tmp/patchsae_pwned_<tag>
    evil = {
        "evil_os_system.pt": call1("os", "system", "touch " + PWNED % "os"),
        "evil_posix_system.pt": call1("posix", "system", "touch " + PWNED % "posix"),
        "evil_eval.pt": call1("builtins", "eval", "__import__('os').system('touch %s')" % (PWNED % "eval")),
        "evil_popen.pt": b"\x80\x02" + g("subprocess", "Popen") + b"](" + u("touch") + u(PWNED % "popen")
                         + b"e\x85R.",
        "evil_stack_global.pt": b"\x80\x04" + u("os") + u("system") + b"\x93" + u("touch " + PWNED % "sg")
                                + b"\x85R.",
        "evil_getattr.pt": b"\x80\x02" + g("builtins", "getattr") + g("torch", "nn") + u("Module")
                           + b"\x86R.",
        # not denied, but REDUCE on it is not allowed
        "evil_reduce.pt": call1("collections", "Counter", "abc"),
        # an os.system hidden inside a tensor-shaped pickle
        "evil_nested.pt": b"\x80\x02}(" + u("state_dict") + b"}(" + u("w")
                          + g("nt", "system") + u("touch " + PWNED % "nt") + b"\x85Ru" + b"u.",
    }
    for name, pkl in evil.items():
        torch_zip(name, pkl)


def main():
    write_sae()
    write_mixed()
    write_dassl()
    write_hostile()


if __name__ == "__main__":
    main()
