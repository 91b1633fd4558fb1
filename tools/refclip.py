# SPDX-License-Identifier: MIT
"""refclip.py - a small PyTorch CLIP (and MaPLe) used as the numerical reference
for patchsae's C code, plus writers for the weight formats patchsae reads.
Development-time only: tools/gen_*.py use it to write committed fixtures;
make test never runs Python.

Written from the architecture facts in patchsae-reference.md §1.1 and §6 (no
code copied from OpenAI CLIP, transformers or MaPLe):

  vision: conv1 (D,3,P,P) no bias, stride P -> grid g*g tokens (row-major)
          [CLS = class_embedding; patches] + positional_embedding (T=1+g*g, D)
          ln_pre; L pre-LN blocks  x += MHA(ln_1 x); x += MLP(ln_2 x)
          ln_post(x[:,0]) @ proj (D,E), no bias
  text:   token_embedding (V,W)[ids] + positional_embedding (ctx,W)
          L causal pre-LN blocks; ln_final; take the token at argmax(ids)
          (the EOT, the largest id); @ text_projection (W,E)
  block:  MHA with a fused in_proj (3W,W) [q;k;v rows] + bias (3W), H heads of
          W/H, scale (W/H)^-1/2, out_proj Linear; MLP c_fc W->F, act, c_proj
          F->W; act = QuickGELU x*sigmoid(1.702x) ("quick_gelu") or erf GELU
          ("gelu"); LayerNorm eps from the config (CLIP: 1e-5)
  logits: exp(logit_scale) * normalise(img) @ normalise(txt)^T

Tensors are batch-first (N,T,D) here; OpenAI's code runs LND internally, which
changes nothing numerically. Everything runs in fp32.

MaPLe (reference §6; facts marked [§6.x]):
  [§6.1] ctx (n_ctx,Wt) initialised from the token embeddings of tokens
         1..n_ctx of tokenize("a photo of a"); proj Linear Wt->Wv (the coupling
         function; shallow visual prompt = proj(ctx)); compound_prompts_text:
         depth-1 tensors (n_ctx,Wt), N(0,0.02) init; compound_prompt_projections:
         depth-1 Linear Wt->Wv, deep visual prompt i = projection_i(text_i).
  [§6.1] class prompts are "a photo of a {name}." with "_" -> " "; token_prefix
         = embedding of SOS, token_suffix = embeddings of positions 1+n_ctx..ctx-1.
         The prompt is [SOS, ctx_0..ctx_{n-1}, of, a, name..., ., EOT, pad...].
  [§6.2] vision: [CLS; patches] + pos, then APPEND proj(ctx) (n_ctx tokens, no
         positional embedding), then ln_pre; block i >= 1 while i < depth
         replaces the last n_ctx tokens of its input by deep visual prompt i-1;
         block 0 sees the shallow prompt and blocks >= depth carry the prompt
         tokens forward. Pooling: ln_post(x[:,0]) @ proj.
  [§6.2] text: prompt embeddings + pos; block i >= 1 while i < depth replaces
         positions 1..n_ctx of its input by compound_prompts_text[i-1];
         ln_final; EOT at argmax of the tokenized prompt; @ text_projection.
  [§6.2] logit scale: the CLIP logit_scale (exp = 100 for real CLIP).
  [§6.3] Dassl checkpoint: torch.save({"state_dict", "epoch", "optimizer",
         "scheduler", ...}); keys prompt_learner.{ctx, proj.weight/bias,
         compound_prompts_text.i, compound_prompt_projections.i.weight/bias,
         token_prefix, token_suffix}. Whether frozen image_encoder.* /
         text_encoder.* weights are also in the file is UNCONFIRMED (the
         reference says Dassl saves the whole registered CustomCLIP, so we
         include them).
  The original runs MaPLe in fp16; this reference runs fp32 (reference §10
  leaves the fp16 question open). Storage dtypes in save_maple_dassl follow
  the reference table (proj fp16, projections fp32); ctx/prefix/suffix fp16
  and which frozen weights are fp16 (Conv/Linear/MHA/proj/text_projection,
  per convert_weights in §1.1) is our inference, UNCONFIRMED.

Formats written (see save_hf, save_openai, st_write):
  HF directory: config.json (CLIPConfig layout), preprocessor_config.json,
    model.safetensors with HF CLIPModel names (q/k/v split, position_ids int64
    buffers included), optionally vocab.json + merges.txt.
  OpenAI single safetensors: visual.* / transformer.* / token_embedding ...
    names; __metadata__ {"heads", "text_heads", "hidden_act"} because
    heads = width/64 (OpenAI's build_model rule) does not hold for tiny widths.
"""
import collections
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# ViT-B/16 (reference §1.1). Tiny fixtures override most fields.
VIT_B16 = dict(
    image_size=224, patch_size=16, width=768, layers=12, heads=12, mlp=3072, embed_dim=512,
    vocab_size=49408, context_length=77, text_width=512, text_layers=12, text_heads=8, text_mlp=2048,
    act="quick_gelu", eps=1e-5, image_mean=CLIP_MEAN, image_std=CLIP_STD,
)


def config(**kw):
    c = dict(VIT_B16)
    for k, v in kw.items():
        if k not in c:
            raise KeyError("unknown config field %r" % k)
        c[k] = v
    return c


# ---------------------------------------------------------------- modules


class Block(torch.nn.Module):
    """One pre-LN residual attention block (OpenAI parameter names)."""

    def __init__(self, width, heads, mlp, act, eps):
        super().__init__()
        if width % heads:
            raise ValueError("width %d not divisible by heads %d" % (width, heads))
        self.heads, self.act = heads, act
        self.ln_1 = torch.nn.LayerNorm(width, eps=eps)
        self.in_proj_weight = torch.nn.Parameter(torch.zeros(3 * width, width))  # (3W, W): q;k;v rows
        self.in_proj_bias = torch.nn.Parameter(torch.zeros(3 * width))
        self.out_proj = torch.nn.Linear(width, width)
        self.ln_2 = torch.nn.LayerNorm(width, eps=eps)
        self.c_fc = torch.nn.Linear(width, mlp)
        self.c_proj = torch.nn.Linear(mlp, width)

    def attention(self, x, causal):
        n, t, w = x.shape
        h = self.heads
        dh = w // h
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (N,T,3W)
        q, k, v = qkv.split(w, dim=-1)
        q = q.reshape(n, t, h, dh).transpose(1, 2)  # (N,H,T,dh)
        k = k.reshape(n, t, h, dh).transpose(1, 2)
        v = v.reshape(n, t, h, dh).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) * (dh ** -0.5)  # (N,H,T,T)
        if causal:
            mask = torch.full((t, t), float("-inf")).triu(1)
            s = s + mask
        a = s.softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(n, t, w)
        return self.out_proj(o)

    def mlp(self, x):
        y = self.c_fc(x)
        if self.act == "quick_gelu":
            y = y * torch.sigmoid(1.702 * y)
        elif self.act == "gelu":
            y = F.gelu(y)
        else:
            raise ValueError("unknown activation %r" % self.act)
        return self.c_proj(y)

    def forward(self, x, causal=False):
        x = x + self.attention(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class RefCLIP(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        c = self.cfg
        D, P, g = c["width"], c["patch_size"], c["image_size"] // c["patch_size"]
        if c["image_size"] % P:
            raise ValueError("image_size not a multiple of patch_size")
        self.grid = g
        self.n_tok = 1 + g * g
        self.conv1 = torch.nn.Conv2d(3, D, kernel_size=P, stride=P, bias=False)  # (D,3,P,P)
        self.class_embedding = torch.nn.Parameter(torch.zeros(D))
        self.vis_pos = torch.nn.Parameter(torch.zeros(self.n_tok, D))  # (T,D)
        self.ln_pre = torch.nn.LayerNorm(D, eps=c["eps"])
        self.vis_blocks = torch.nn.ModuleList(
            [Block(D, c["heads"], c["mlp"], c["act"], c["eps"]) for _ in range(c["layers"])])
        self.ln_post = torch.nn.LayerNorm(D, eps=c["eps"])
        self.proj = torch.nn.Parameter(torch.zeros(D, c["embed_dim"]))  # (D,E), used as x @ proj
        W = c["text_width"]
        self.token_embedding = torch.nn.Parameter(torch.zeros(c["vocab_size"], W))  # (V,W)
        self.txt_pos = torch.nn.Parameter(torch.zeros(c["context_length"], W))  # (ctx,W)
        self.txt_blocks = torch.nn.ModuleList(
            [Block(W, c["text_heads"], c["text_mlp"], c["act"], c["eps"]) for _ in range(c["text_layers"])])
        self.ln_final = torch.nn.LayerNorm(W, eps=c["eps"])
        self.text_projection = torch.nn.Parameter(torch.zeros(W, c["embed_dim"]))  # (W,E)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(100.0)))  # scalar, shape ()

    # -- initialisation ---------------------------------------------------
    def init_random(self, seed, round_to=None):
        """Random weights at the scales of OpenAI CLIP's initialisation (std
        W^-1/2 for attention/projections, 0.02 token embedding, 0.01 text
        positions, (2W)^-1/2 c_fc, W^-1/2 (2L)^-1/2 out/c_proj), LayerNorm
        gains 1+N(0,0.1) and biases N(0,0.02) so that every tensor matters.
        round_to: None, "f16" or "bf16" rounds every weight to values that
        dtype represents exactly, so files of that dtype load to these fp32s."""
        g = torch.Generator().manual_seed(seed)

        def rn(shape, std):
            return torch.randn(shape, generator=g) * std

        c = self.cfg
        with torch.no_grad():
            D, W = c["width"], c["text_width"]
            self.conv1.weight.copy_(rn(self.conv1.weight.shape, (3 * c["patch_size"] ** 2) ** -0.5))
            self.class_embedding.copy_(rn(D, D ** -0.5))
            self.vis_pos.copy_(rn(self.vis_pos.shape, D ** -0.5))
            self.proj.copy_(rn(self.proj.shape, D ** -0.5))
            self.token_embedding.copy_(rn(self.token_embedding.shape, 0.02))
            self.txt_pos.copy_(rn(self.txt_pos.shape, 0.01))
            self.text_projection.copy_(rn(self.text_projection.shape, W ** -0.5))
            for blocks, w, L in ((self.vis_blocks, D, c["layers"]), (self.txt_blocks, W, c["text_layers"])):
                for b in blocks:
                    b.in_proj_weight.copy_(rn(b.in_proj_weight.shape, w ** -0.5))
                    b.in_proj_bias.copy_(rn(b.in_proj_bias.shape, 0.02))
                    b.out_proj.weight.copy_(rn(b.out_proj.weight.shape, w ** -0.5 * (2 * L) ** -0.5))
                    b.out_proj.bias.copy_(rn(b.out_proj.bias.shape, 0.02))
                    b.c_fc.weight.copy_(rn(b.c_fc.weight.shape, (2 * w) ** -0.5))
                    b.c_fc.bias.copy_(rn(b.c_fc.bias.shape, 0.02))
                    b.c_proj.weight.copy_(rn(b.c_proj.weight.shape, w ** -0.5 * (2 * L) ** -0.5))
                    b.c_proj.bias.copy_(rn(b.c_proj.bias.shape, 0.02))
            for m in self.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.weight.copy_(1 + rn(m.weight.shape, 0.1))
                    m.bias.copy_(rn(m.bias.shape, 0.02))
            self.logit_scale.fill_(math.log(100.0))
            if round_to:
                for p in self.parameters():
                    p.copy_(round_dtype(p, round_to))
        return self

    # -- forward ----------------------------------------------------------
    def vision(self, pixels, append=None, deep=None, keep=()):
        """pixels (N,3,S,S). append: (n,D) tokens appended after the patches
        (after the positional embedding, before ln_pre). deep: list; block i
        (i>=1, i<=len(deep)) replaces the last n tokens of its input by
        deep[i-1]. keep: block indices whose outputs are returned.
        Returns (pooled (N,E) unnormalised, {L: resid (N,T',D)})."""
        n = pixels.shape[0]
        x = self.conv1(pixels)  # (N,D,g,g)
        x = x.flatten(2).transpose(1, 2)  # (N,g*g,D), row-major patches
        cls = self.class_embedding.expand(n, 1, -1)
        x = torch.cat([cls, x], dim=1) + self.vis_pos
        if append is not None:
            x = torch.cat([x, append.expand(n, -1, -1)], dim=1)
        x = self.ln_pre(x)
        out = {}
        for i, b in enumerate(self.vis_blocks):
            if deep and i >= 1 and i - 1 < len(deep):
                k = deep[i - 1].shape[0]
                x = torch.cat([x[:, :-k], deep[i - 1].expand(n, -1, -1)], dim=1)
            x = b(x)
            if i in keep:
                out[i] = x
        return self.ln_post(x[:, 0]) @ self.proj, out

    def text(self, ids, embeds=None, deep=None):
        """ids (P,ctx) int64. embeds: (P,ctx,W) to use instead of the token
        embeddings. deep: list; block i (1 <= i <= len(deep)) replaces
        positions 1..n of its input by deep[i-1] (n,W). Returns (P,E)."""
        x = self.token_embedding[ids] if embeds is None else embeds
        x = x + self.txt_pos
        p = x.shape[0]
        for i, b in enumerate(self.txt_blocks):
            if deep and i >= 1 and i - 1 < len(deep):
                k = deep[i - 1].shape[0]
                x = torch.cat([x[:, :1], deep[i - 1].expand(p, -1, -1), x[:, 1 + k:]], dim=1)
            x = b(x, causal=True)
        x = self.ln_final(x)
        eot = ids.argmax(dim=-1)
        return x[torch.arange(p), eot] @ self.text_projection

    def encode_image(self, pixels):
        return normalize(self.vision(pixels)[0])

    def encode_text(self, ids):
        return normalize(self.text(ids))

    def logits(self, img, txt):
        return self.logit_scale.exp() * img @ txt.t()


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def build(cfg, seed=None, round_to=None):
    m = RefCLIP(cfg)
    if seed is not None:
        m.init_random(seed, round_to)
    return m.eval()


def round_dtype(t, dt):
    if dt in ("f16", "F16"):
        return t.half().float()
    if dt in ("bf16", "BF16"):
        return t.bfloat16().float()
    if dt in ("f32", "F32"):
        return t.float()
    raise ValueError(dt)


# ---------------------------------------------------------------- safetensors

_ST_DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "I64": (torch.int64, 8), "I32": (torch.int32, 4), "F64": (torch.float64, 8), "U8": (torch.uint8, 1)}
_ST_VIEW = {torch.bfloat16: torch.int16}


def _tensor_bytes(t, dt):
    tdt = _ST_DT[dt][0]
    t = t.detach().to(tdt).contiguous().cpu()
    if tdt in _ST_VIEW:
        t = t.view(_ST_VIEW[tdt])
    return t.numpy().tobytes()  # little-endian on every machine we use


def st_write(path, tensors, dtype="F32", metadata=None, dtypes=None):
    """Write a safetensors file: u64 LE header length, JSON header (padded
    with spaces to a multiple of 8), then the tensors' bytes in order.
    tensors: ordered mapping name -> tensor. Floating tensors are stored as
    `dtype` (F32/F16/BF16) unless dtypes[name] says otherwise; integer
    tensors keep their type (int64 -> I64)."""
    header = collections.OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, t in tensors.items():
        if dtypes and name in dtypes:
            dt = dtypes[name]
        elif t.dtype == torch.int64:
            dt = "I64"
        elif t.dtype == torch.int32:
            dt = "I32"
        elif t.dtype == torch.uint8:
            dt = "U8"
        else:
            dt = dtype
        b = _tensor_bytes(t, dt)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def st_read(path):
    """Read a safetensors file -> (OrderedDict name -> tensor in its stored
    dtype, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=collections.OrderedDict)
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = collections.OrderedDict()
    for name, e in header.items():
        tdt, _ = _ST_DT[e["dtype"]]
        b0, b1 = e["data_offsets"]
        raw = bytearray(data[base + b0:base + b1])
        vdt = _ST_VIEW.get(tdt, tdt)
        t = torch.frombuffer(raw, dtype=vdt) if raw else torch.zeros(0, dtype=vdt)
        if vdt is not tdt:
            t = t.view(tdt)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


# ---------------------------------------------------------------- name layouts


def openai_state_dict(m):
    """OpenAI CLIP names (reference §1.1), fp32 tensors."""
    sd = collections.OrderedDict()
    sd["visual.class_embedding"] = m.class_embedding
    sd["visual.positional_embedding"] = m.vis_pos
    sd["visual.proj"] = m.proj
    sd["visual.conv1.weight"] = m.conv1.weight
    sd["visual.ln_pre.weight"] = m.ln_pre.weight
    sd["visual.ln_pre.bias"] = m.ln_pre.bias

    def blocks(prefix, bl):
        for i, b in enumerate(bl):
            p = "%s.resblocks.%d." % (prefix, i)
            sd[p + "attn.in_proj_weight"] = b.in_proj_weight
            sd[p + "attn.in_proj_bias"] = b.in_proj_bias
            sd[p + "attn.out_proj.weight"] = b.out_proj.weight
            sd[p + "attn.out_proj.bias"] = b.out_proj.bias
            sd[p + "ln_1.weight"] = b.ln_1.weight
            sd[p + "ln_1.bias"] = b.ln_1.bias
            sd[p + "mlp.c_fc.weight"] = b.c_fc.weight
            sd[p + "mlp.c_fc.bias"] = b.c_fc.bias
            sd[p + "mlp.c_proj.weight"] = b.c_proj.weight
            sd[p + "mlp.c_proj.bias"] = b.c_proj.bias
            sd[p + "ln_2.weight"] = b.ln_2.weight
            sd[p + "ln_2.bias"] = b.ln_2.bias

    blocks("visual.transformer", m.vis_blocks)
    sd["visual.ln_post.weight"] = m.ln_post.weight
    sd["visual.ln_post.bias"] = m.ln_post.bias
    sd["positional_embedding"] = m.txt_pos
    sd["text_projection"] = m.text_projection
    sd["logit_scale"] = m.logit_scale
    sd["token_embedding.weight"] = m.token_embedding
    blocks("transformer", m.txt_blocks)
    sd["ln_final.weight"] = m.ln_final.weight
    sd["ln_final.bias"] = m.ln_final.bias
    return collections.OrderedDict((k, v.detach().float()) for k, v in sd.items())


def hf_state_dict(m):
    """HF CLIPModel names: q/k/v split, projections transposed to (E,D)
    Linear weights, position_ids int64 (1,T) buffers as HF stores them."""
    sd = collections.OrderedDict()
    sd["logit_scale"] = m.logit_scale

    def enc(prefix, bl):
        for i, b in enumerate(bl):
            p = "%s.encoder.layers.%d." % (prefix, i)
            q, k, v = b.in_proj_weight.chunk(3, dim=0)
            qb, kb, vb = b.in_proj_bias.chunk(3, dim=0)
            for nm, w, bias in (("k", k, kb), ("v", v, vb), ("q", q, qb)):
                sd[p + "self_attn.%s_proj.weight" % nm] = w
                sd[p + "self_attn.%s_proj.bias" % nm] = bias
            sd[p + "self_attn.out_proj.weight"] = b.out_proj.weight
            sd[p + "self_attn.out_proj.bias"] = b.out_proj.bias
            sd[p + "layer_norm1.weight"] = b.ln_1.weight
            sd[p + "layer_norm1.bias"] = b.ln_1.bias
            sd[p + "mlp.fc1.weight"] = b.c_fc.weight
            sd[p + "mlp.fc1.bias"] = b.c_fc.bias
            sd[p + "mlp.fc2.weight"] = b.c_proj.weight
            sd[p + "mlp.fc2.bias"] = b.c_proj.bias
            sd[p + "layer_norm2.weight"] = b.ln_2.weight
            sd[p + "layer_norm2.bias"] = b.ln_2.bias

    sd["text_model.embeddings.position_ids"] = torch.arange(m.cfg["context_length"], dtype=torch.int64)[None]
    sd["text_model.embeddings.token_embedding.weight"] = m.token_embedding
    sd["text_model.embeddings.position_embedding.weight"] = m.txt_pos
    enc("text_model", m.txt_blocks)
    sd["text_model.final_layer_norm.weight"] = m.ln_final.weight
    sd["text_model.final_layer_norm.bias"] = m.ln_final.bias
    sd["vision_model.embeddings.class_embedding"] = m.class_embedding
    sd["vision_model.embeddings.position_ids"] = torch.arange(m.n_tok, dtype=torch.int64)[None]
    sd["vision_model.embeddings.patch_embedding.weight"] = m.conv1.weight
    sd["vision_model.embeddings.position_embedding.weight"] = m.vis_pos
    sd["vision_model.pre_layrnorm.weight"] = m.ln_pre.weight
    sd["vision_model.pre_layrnorm.bias"] = m.ln_pre.bias
    enc("vision_model", m.vis_blocks)
    sd["vision_model.post_layernorm.weight"] = m.ln_post.weight
    sd["vision_model.post_layernorm.bias"] = m.ln_post.bias
    sd["visual_projection.weight"] = m.proj.t()
    sd["text_projection.weight"] = m.text_projection.t()
    return collections.OrderedDict(
        (k, v.detach() if v.dtype == torch.int64 else v.detach().float().contiguous()) for k, v in sd.items())


def hf_config(m):
    c = m.cfg
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "projection_dim": c["embed_dim"],
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model",
            "hidden_size": c["text_width"],
            "intermediate_size": c["text_mlp"],
            "num_attention_heads": c["text_heads"],
            "num_hidden_layers": c["text_layers"],
            "max_position_embeddings": c["context_length"],
            "vocab_size": c["vocab_size"],
            "hidden_act": c["act"],
            "layer_norm_eps": c["eps"],
            "projection_dim": c["embed_dim"],
            # as in openai/clip-vit-base-patch16's config: legacy ids, so HF
            # pools at argmax(input_ids), the EOT
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": c["width"],
            "intermediate_size": c["mlp"],
            "num_attention_heads": c["heads"],
            "num_hidden_layers": c["layers"],
            "image_size": c["image_size"],
            "patch_size": c["patch_size"],
            "num_channels": 3,
            "hidden_act": c["act"],
            "layer_norm_eps": c["eps"],
            "projection_dim": c["embed_dim"],
        },
    }


def preprocessor_config(m, style="new"):
    """style "new": size {"shortest_edge"}, crop_size {"height","width"}
    (current transformers); "old": plain ints, as the hub file of
    openai/clip-vit-base-patch16 has them."""
    c = m.cfg
    s = c["image_size"]
    d = {
        "do_convert_rgb": True,
        "do_resize": True,
        "do_center_crop": True,
        "do_rescale": True,
        "do_normalize": True,
        "image_mean": c["image_mean"],
        "image_std": c["image_std"],
        "resample": 3,
        "rescale_factor": 1 / 255,
    }
    if style == "new":
        d["size"] = {"shortest_edge": s}
        d["crop_size"] = {"height": s, "width": s}
        d["image_processor_type"] = "CLIPImageProcessor"
    else:
        d["size"] = s
        d["crop_size"] = s
        d["feature_extractor_type"] = "CLIPFeatureExtractor"
    d["processor_class"] = "CLIPProcessor"
    return d


def save_hf(m, d, tokenizer=None, dtype="F32", preproc_style="new"):
    """Write a HF CLIPModel directory. tokenizer: a clip_tokenizer.ClipTokenizer
    whose vocab.json/merges.txt are written too (None: no tokenizer files)."""
    os.makedirs(d, exist_ok=True)
    cfg = hf_config(m)
    cfg["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor_config(m, preproc_style), f, indent=2)
        f.write("\n")
    st_write(os.path.join(d, "model.safetensors"), hf_state_dict(m), dtype=dtype, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_hf(d)


def save_openai(m, path, dtype="F16"):
    c = m.cfg
    meta = {"format": "pt", "heads": c["heads"], "text_heads": c["text_heads"], "hidden_act": c["act"]}
    st_write(path, openai_state_dict(m), dtype=dtype, metadata=meta)


def load_openai(path, cfg=None):
    """Build a RefCLIP from an OpenAI-layout safetensors (shapes + metadata)."""
    sd, meta = st_read(path)
    sd = {k: v.float() for k, v in sd.items()}
    D, _, P, _ = sd["visual.conv1.weight"].shape
    T = sd["visual.positional_embedding"].shape[0]
    g = int(round((T - 1) ** 0.5))
    W = sd["ln_final.weight"].shape[0]
    L = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
    Lt = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    c = config(image_size=g * P, patch_size=P, width=D, layers=L,
               heads=int(meta.get("heads", D // 64)), mlp=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
               embed_dim=sd["visual.proj"].shape[1], vocab_size=sd["token_embedding.weight"].shape[0],
               context_length=sd["positional_embedding"].shape[0], text_width=W, text_layers=Lt,
               text_heads=int(meta.get("text_heads", W // 64)),
               text_mlp=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
               act=meta.get("hidden_act", "quick_gelu"))
    if cfg:
        c.update(cfg)
    m = RefCLIP(c)
    with torch.no_grad():
        for k, p in _openai_params(m).items():
            p.copy_(sd[k])
    return m.eval()


def _openai_params(m):
    p = collections.OrderedDict()
    p["visual.class_embedding"] = m.class_embedding
    p["visual.positional_embedding"] = m.vis_pos
    p["visual.proj"] = m.proj
    p["visual.conv1.weight"] = m.conv1.weight
    p["visual.ln_pre.weight"], p["visual.ln_pre.bias"] = m.ln_pre.weight, m.ln_pre.bias
    for prefix, bl in (("visual.transformer", m.vis_blocks), ("transformer", m.txt_blocks)):
        for i, b in enumerate(bl):
            q = "%s.resblocks.%d." % (prefix, i)
            p[q + "attn.in_proj_weight"] = b.in_proj_weight
            p[q + "attn.in_proj_bias"] = b.in_proj_bias
            p[q + "attn.out_proj.weight"] = b.out_proj.weight
            p[q + "attn.out_proj.bias"] = b.out_proj.bias
            p[q + "ln_1.weight"], p[q + "ln_1.bias"] = b.ln_1.weight, b.ln_1.bias
            p[q + "mlp.c_fc.weight"], p[q + "mlp.c_fc.bias"] = b.c_fc.weight, b.c_fc.bias
            p[q + "mlp.c_proj.weight"], p[q + "mlp.c_proj.bias"] = b.c_proj.weight, b.c_proj.bias
            p[q + "ln_2.weight"], p[q + "ln_2.bias"] = b.ln_2.weight, b.ln_2.bias
    p["visual.ln_post.weight"], p["visual.ln_post.bias"] = m.ln_post.weight, m.ln_post.bias
    p["positional_embedding"] = m.txt_pos
    p["text_projection"] = m.text_projection
    p["logit_scale"] = m.logit_scale
    p["token_embedding.weight"] = m.token_embedding
    p["ln_final.weight"], p["ln_final.bias"] = m.ln_final.weight, m.ln_final.bias
    return p


def load_hf(d):
    """Build a RefCLIP from a HF directory written by save_hf (or a real one)."""
    with open(os.path.join(d, "config.json")) as f:
        hc = json.load(f)
    with open(os.path.join(d, "preprocessor_config.json")) as f:
        pc = json.load(f)
    t, v = hc["text_config"], hc["vision_config"]
    c = config(image_size=v["image_size"], patch_size=v["patch_size"], width=v["hidden_size"],
               layers=v["num_hidden_layers"], heads=v["num_attention_heads"], mlp=v["intermediate_size"],
               embed_dim=hc["projection_dim"], vocab_size=t["vocab_size"],
               context_length=t["max_position_embeddings"], text_width=t["hidden_size"],
               text_layers=t["num_hidden_layers"], text_heads=t["num_attention_heads"],
               text_mlp=t["intermediate_size"], act=v.get("hidden_act", "quick_gelu"),
               eps=v.get("layer_norm_eps", 1e-5), image_mean=pc["image_mean"], image_std=pc["image_std"])
    sd, _ = st_read(os.path.join(d, "model.safetensors"))
    m = RefCLIP(c)
    p = _openai_params(m)
    with torch.no_grad():
        for prefix, op, n in (("vision_model", "visual.transformer", c["layers"]),
                              ("text_model", "transformer", c["text_layers"])):
            for i in range(n):
                h = "%s.encoder.layers.%d." % (prefix, i)
                o = "%s.resblocks.%d." % (op, i)
                p[o + "attn.in_proj_weight"].copy_(torch.cat([sd[h + "self_attn.%s_proj.weight" % x] for x in "qkv"]))
                p[o + "attn.in_proj_bias"].copy_(torch.cat([sd[h + "self_attn.%s_proj.bias" % x] for x in "qkv"]))
                for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                    p[o + a + ".weight"].copy_(sd[h + b + ".weight"])
                    p[o + a + ".bias"].copy_(sd[h + b + ".bias"])
        e = "vision_model.embeddings."
        p["visual.class_embedding"].copy_(sd[e + "class_embedding"])
        p["visual.positional_embedding"].copy_(sd[e + "position_embedding.weight"])
        p["visual.conv1.weight"].copy_(sd[e + "patch_embedding.weight"])
        for a, b in (("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm"),
                     ("ln_final", "text_model.final_layer_norm")):
            p[a + ".weight"].copy_(sd[b + ".weight"])
            p[a + ".bias"].copy_(sd[b + ".bias"])
        p["visual.proj"].copy_(sd["visual_projection.weight"].t())
        p["text_projection"].copy_(sd["text_projection.weight"].t())
        p["token_embedding.weight"].copy_(sd["text_model.embeddings.token_embedding.weight"])
        p["positional_embedding"].copy_(sd["text_model.embeddings.position_embedding.weight"])
        p["logit_scale"].copy_(sd["logit_scale"])
    return m.eval()


# ---------------------------------------------------------------- preprocessing


def preprocess(img, size, mean=CLIP_MEAN, std=CLIP_STD):
    """HF CLIPProcessor semantics (reference §1.2) for a PIL image ->
    float32 tensor (3,size,size): RGB; resize the short side to `size` with
    PIL BICUBIC, long side int(size*long/short); center crop with floor
    division; x*(1/255) computed in float64 then cast to float32;
    (x-mean)/std in float32."""
    import numpy as np
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    img = img.resize((nw, nh), resample=Image.BICUBIC)
    a = np.asarray(img)
    top, left = (nh - size) // 2, (nw - size) // 2
    a = a[top:top + size, left:left + size]
    x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


# ---------------------------------------------------------------- MaPLe


class Maple(torch.nn.Module):
    """MaPLe prompt learner + adapted forward around a frozen RefCLIP
    (reference §6). depth = PROMPT_DEPTH (9 for the original), so there are
    depth-1 deep prompts; n_ctx = N_CTX (2)."""

    def __init__(self, clip, tokenizer, classnames, n_ctx=2, depth=9, ctx_init="a photo of a", seed=0):
        super().__init__()
        self.clip = clip
        self.n_ctx, self.depth = n_ctx, depth
        self.ctx_init = ctx_init
        c = clip.cfg
        Wt, Wv = c["text_width"], c["width"]
        g = torch.Generator().manual_seed(seed)
        L = c["context_length"]
        with torch.no_grad():
            init_ids = torch.tensor(tokenizer.tokenize([ctx_init], L, truncate=True))
            emb = clip.token_embedding[init_ids]  # (1,L,Wt)
            # [§6.1] ctx = token embeddings of tokens 1..n_ctx of tokenize(ctx_init)
            self.ctx = torch.nn.Parameter(emb[0, 1:1 + n_ctx].clone())  # (n_ctx,Wt)
            self.proj = torch.nn.Linear(Wt, Wv)  # (Wv,Wt) + (Wv)
            self.compound_prompts_text = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(n_ctx, Wt, generator=g) * 0.02) for _ in range(depth - 1)])
            self.compound_prompt_projections = torch.nn.ModuleList(
                [torch.nn.Linear(Wt, Wv) for _ in range(depth - 1)])
            for lin in [self.proj] + list(self.compound_prompt_projections):
                bound = Wt ** -0.5
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=g) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=g) * 2 - 1) * bound)
        self.set_classnames(tokenizer, classnames)

    def set_classnames(self, tokenizer, classnames):
        """[§6.1] prompts "a photo of a {name}." ("_" -> " "); prefix/suffix
        buffers are the embeddings of SOS and of positions 1+n_ctx.. ."""
        L = self.clip.cfg["context_length"]
        self.classnames = [n.replace("_", " ") for n in classnames]
        texts = [self.ctx_init + " " + n + "." for n in self.classnames]
        self.tokenized = torch.tensor(tokenizer.tokenize(texts, L, truncate=True))  # (C,L)
        with torch.no_grad():
            emb = self.clip.token_embedding[self.tokenized]
        self.token_prefix = emb[:, :1].clone()  # (C,1,Wt)
        self.token_suffix = emb[:, 1 + self.n_ctx:].clone()  # (C,L-1-n_ctx,Wt)

    def visual_prompts(self):
        shallow = self.proj(self.ctx)  # (n_ctx,Wv)
        deep = [p(t) for p, t in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return shallow, deep

    def vision(self, pixels, keep=()):
        shallow, deep = self.visual_prompts()
        return self.clip.vision(pixels, append=shallow, deep=deep, keep=keep)

    def text(self):
        C = self.tokenized.shape[0]
        prompts = torch.cat([self.token_prefix, self.ctx.expand(C, -1, -1), self.token_suffix], dim=1)
        return self.clip.text(self.tokenized, embeds=prompts, deep=list(self.compound_prompts_text))

    def encode_image(self, pixels):
        return normalize(self.vision(pixels)[0])

    def encode_text(self):
        return normalize(self.text())

    def perturb(self, seed, scale=0.05):
        """Stand-in for training: move every learned tensor by N(0, scale*rms)
        so a fixture cannot be reproduced from the initialisation alone."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.learned().values():
                p.add_(torch.randn(p.shape, generator=g) * scale * p.pow(2).mean().sqrt())

    def learned(self):
        d = collections.OrderedDict()
        d["ctx"] = self.ctx
        d["proj.weight"] = self.proj.weight
        d["proj.bias"] = self.proj.bias
        for i, t in enumerate(self.compound_prompts_text):
            d["compound_prompts_text.%d" % i] = t
        for i, p in enumerate(self.compound_prompt_projections):
            d["compound_prompt_projections.%d.weight" % i] = p.weight
            d["compound_prompt_projections.%d.bias" % i] = p.bias
        return d

    def round_storage(self):
        """Round ctx and proj to fp16 values (they are stored as fp16)."""
        with torch.no_grad():
            for p in (self.ctx, self.proj.weight, self.proj.bias):
                p.copy_(p.half().float())


def save_maple_dassl(mp, path, epoch, include_frozen=True):
    """Write a Dassl-style MaPLe checkpoint with a real torch.save (zip
    format): {"state_dict": OrderedDict, "epoch", "optimizer": SGD state
    (momentum buffers per learned tensor), "scheduler": None,
    "val_result": None}. Key order follows CustomCLIP's registration:
    prompt_learner.*, image_encoder.* (OpenAI visual names), text_encoder.*
    (transformer, positional_embedding, ln_final, text_projection), logit_scale.
    Storage dtypes: ctx, proj, token_prefix/suffix fp16; compound_* fp32;
    frozen Conv/Linear/MHA weights and proj/text_projection fp16, the rest
    fp32 (see the module comment)."""
    sd = collections.OrderedDict()
    half = lambda t: t.detach().clone().half()
    full = lambda t: t.detach().clone().float()
    sd["prompt_learner.ctx"] = half(mp.ctx)
    for i, t in enumerate(mp.compound_prompts_text):
        sd["prompt_learner.compound_prompts_text.%d" % i] = full(t)
    sd["prompt_learner.token_prefix"] = half(mp.token_prefix)
    sd["prompt_learner.token_suffix"] = half(mp.token_suffix)
    sd["prompt_learner.proj.weight"] = half(mp.proj.weight)
    sd["prompt_learner.proj.bias"] = half(mp.proj.bias)
    for i, p in enumerate(mp.compound_prompt_projections):
        sd["prompt_learner.compound_prompt_projections.%d.weight" % i] = full(p.weight)
        sd["prompt_learner.compound_prompt_projections.%d.bias" % i] = full(p.bias)
    if include_frozen:
        op = openai_state_dict(mp.clip)
        halfnames = ("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
                     "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")
        for k, v in op.items():
            if k.startswith("visual."):
                nk = "image_encoder." + k[len("visual."):]
            elif k.startswith("transformer.") or k.startswith("ln_final.") or k in ("positional_embedding", "text_projection"):
                nk = "text_encoder." + k
            else:
                continue
            is_half = k.endswith(halfnames) or k in ("visual.proj", "text_projection")
            sd[nk] = half(v) if is_half else full(v)
        sd["logit_scale"] = full(mp.clip.logit_scale)
    params = list(mp.learned().values())
    opt = torch.optim.SGD(params, lr=0.0035, momentum=0.9, weight_decay=5e-4)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    saved = [p.detach().clone() for p in params]
    opt.step()
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
            p.grad = None
    ck = {"state_dict": sd, "epoch": epoch, "optimizer": opt.state_dict(), "scheduler": None, "val_result": None}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(ck, path)


def load_maple_dassl(clip, tokenizer, classnames, path, n_ctx=None, depth=None):
    """Rebuild a Maple from a Dassl checkpoint (learned keys only; prefix and
    suffix are recomputed from the class names, as the original does)."""
    ck = torch.load(path, map_location="cpu")
    sd = ck["state_dict"]
    n = sum(1 for k in sd if k.startswith("prompt_learner.compound_prompts_text."))
    ctx = sd["prompt_learner.ctx"]
    mp = Maple(clip, tokenizer, classnames, n_ctx=n_ctx or ctx.shape[0], depth=depth or n + 1)
    with torch.no_grad():
        for k, p in mp.learned().items():
            p.copy_(sd["prompt_learner." + k].float())
    return mp
