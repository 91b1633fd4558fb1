# SPDX-License-Identifier: MIT
"""demo_data.py - data side of the patchsae demo model (development time only).

Shared by train_demo_clip.py and train_demo_maple.py. It holds:

  * IDX reading/writing (the format of Debian's dataset-fashion-mnist), so the
    shifted test set can be written for the C tools;
  * the image preprocessing the C pipeline applies (HF CLIPProcessor semantics:
    grey -> RGB, PIL BICUBIC resize of the short side to SIZE, center crop,
    /255, (x - mean) / std), done once with PIL for all 70k images and kept as
    uint8 (N, SIZE, SIZE) because the three channels are equal;
  * the domain shift: intensity inversion x -> 255 - x of the raw 28x28 image,
    i.e. dark garments on a white background, the catalogue look of the
    Zalando product photos that Fashion-MNIST was made from before its
    authors inverted them to white-on-black;
  * the caption generator: templates over the class name, some with
    attributes measured on the image (brightness, size, texture; per-class
    terciles / median computed on the training set), so captions differ
    within a class and the text tower has to read more than the class word;
  * a byte-level BPE trainer that writes a vocabulary in CLIP's layout
    (256 byte chars, the same with '</w>', one entry per merge, then
    <|startoftext|>, <|endoftext|>), loadable by tools/clip_tokenizer.py and
    HF's CLIPTokenizer (vocab.json + merges.txt).

Everything is deterministic: no randomness here except through the caller's
numpy Generator.
"""
import gzip
import json
import os
import struct
from collections import Counter

import numpy as np
from PIL import Image

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASSNAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
N_BASE = 5  # base classes 0-4, novel classes 5-9 (paper's first-half split)
ZS_TEMPLATE = "a photo of a {}."
# Names used in captions: the official class name (lowercased) half of the time,
# otherwise one of these synonyms, so that typed queries like "sweater" work.
VARIANTS = [["t-shirt/top", "t-shirt", "top", "tee"],
            ["trouser", "trousers", "pants", "jeans"],
            ["pullover", "sweater", "jumper"],
            ["dress", "gown"],
            ["coat", "jacket", "overcoat"],
            ["sandal", "sandals", "slipper"],
            ["shirt", "blouse", "button-down shirt"],
            ["sneaker", "sneakers", "trainer", "running shoe"],
            ["bag", "handbag", "purse"],
            ["ankle boot", "boot", "boots"]]

# ---------------------------------------------------------------- IDX files


def read_idx(path):
    """Reads an IDX file (optionally gzipped). Returns a uint8 numpy array."""
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    nd = data[3]
    dims = struct.unpack(">%dI" % nd, data[4:4 + 4 * nd])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if arr.size != int(np.prod(dims)):
        raise ValueError("%s: %d bytes of data for dims %s" % (path, arr.size, dims))
    return arr.reshape(dims).copy()


def write_idx_gz(path, arr):
    """Writes a uint8 array as gzipped IDX (mtime 0 so the bytes are reproducible)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">%dI" % arr.ndim, *arr.shape)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(head)
            f.write(arr.tobytes())


def load_split(split):
    """split: 'train' or 't10k'. Returns (images uint8 (N,28,28), labels uint8 (N,))."""
    x = read_idx(os.path.join(DATA_DIR, "%s-images-idx3-ubyte.gz" % split))
    y = read_idx(os.path.join(DATA_DIR, "%s-labels-idx1-ubyte.gz" % split))
    if x.shape[0] != y.shape[0]:
        raise ValueError("%s: %d images but %d labels" % (split, x.shape[0], y.shape[0]))
    return x, y


# ------------------------------------------------------------ domain shift


def shift(images):
    """The demo's domain shift: intensity inversion of the raw 28x28 uint8 image."""
    return (255 - images.astype(np.int16)).astype(np.uint8)


# ----------------------------------------------------------- preprocessing


def preprocess_u8(images, size):
    """HF CLIPProcessor geometry on grey uint8 images (N,28,28) -> uint8 (N,size,size).

    Convert to RGB, resize the short side to `size` with PIL BICUBIC (the long
    side is int(size*long/short), equal here), center crop size x size with
    top=(H-size)//2. The three RGB channels stay equal, so one is kept.
    """
    out = np.empty((images.shape[0], size, size), dtype=np.uint8)
    for i, im in enumerate(images):
        rgb = Image.fromarray(im, mode="L").convert("RGB")
        w, h = rgb.size
        if w <= h:
            nw, nh = size, int(size * h / w)
        else:
            nw, nh = int(size * w / h), size
        rgb = rgb.resize((nw, nh), Image.BICUBIC)
        top, left = (nh - size) // 2, (nw - size) // 2
        a = np.asarray(rgb)[top:top + size, left:left + size]
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all()
        out[i] = a[..., 0]
    return out


def normalize(u8, mean, std):
    """uint8 (N,S,S) numpy or torch -> float32 torch (N,3,S,S): /255 then (x-mean)/std per channel."""
    import torch
    x = torch.as_tensor(u8).float().div_(255.0).unsqueeze(1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------- captions

BRIGHT = ["dark", "grey", "light"]
SIZE = ["small", "medium", "large"]
TEXTURE = ["plain", "patterned"]

# (template, attributes used). {c} class name, {b} brightness, {s} size, {t} texture.
TEMPLATES = [
    ("a photo of a {c}.", ""),
    ("a photo of the {c}.", ""),
    ("a product photo of the {c}.", ""),
    ("a black and white photo of a {c}.", ""),
    ("a low resolution photo of a {c}.", ""),
    ("a {c}.", ""),
    ("a {b} {c}.", "b"),
    ("a photo of a {b} {c}.", "b"),
    ("a {s} {c}.", "s"),
    ("a photo of the {s} {c}.", "s"),
    ("a {t} {c}.", "t"),
    ("an image of a {t} {c}.", "t"),
    ("a {s}, {b} {c}.", "sb"),
    ("a photo of a {s} {t} {c}.", "st"),
    ("a {b}, {t} {c} on a black background.", "bt"),
]


def measure(images):
    """Per-image raw measurements on 28x28 uint8: (brightness, area, texture) float arrays.

    Foreground = pixels > 32. brightness = mean foreground intensity, area =
    foreground fraction, texture = std of the foreground intensities.
    """
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    fg = x > 32
    n = np.maximum(fg.sum(1), 1)
    mean = (x * fg).sum(1) / n
    var = ((x - mean[:, None]) ** 2 * fg).sum(1) / n
    return mean, fg.sum(1) / x.shape[1], np.sqrt(var)


class Attributes:
    """Per-class thresholds fitted on the training images; maps images to attribute ids."""

    def __init__(self, images, labels):
        b, a, t = measure(images)
        self.cuts = {}
        for c in range(len(CLASSNAMES)):
            m = labels == c
            self.cuts[c] = (np.quantile(b[m], [1 / 3, 2 / 3]), np.quantile(a[m], [1 / 3, 2 / 3]),
                            np.quantile(t[m], [0.5]))

    def __call__(self, images, labels):
        """Returns int arrays (N,3): brightness id, size id, texture id."""
        b, a, t = measure(images)
        out = np.zeros((images.shape[0], 3), dtype=np.int64)
        for c in range(len(CLASSNAMES)):
            m = labels == c
            cb, ca, ct = self.cuts[c]
            out[m, 0] = np.searchsorted(cb, b[m], side="right")
            out[m, 1] = np.searchsorted(ca, a[m], side="right")
            out[m, 2] = np.searchsorted(ct, t[m], side="right")
        return out

    def to_json(self):
        return {CLASSNAMES[c]: {"brightness_cuts": v[0].tolist(), "area_cuts": v[1].tolist(),
                                "texture_cut": v[2].tolist()} for c, v in self.cuts.items()}


def caption_text(tmpl, c, v, b, s, t):
    return TEMPLATES[tmpl][0].format(c=VARIANTS[c][v], b=BRIGHT[b], s=SIZE[s], t=TEXTURE[t])


class Captions:
    """All distinct captions, with for each the (class, brightness, size, texture) it claims
    (-1 where the template says nothing). An image is consistent with a caption when the
    class matches and every stated attribute matches."""

    def __init__(self):
        self.texts, self.claims, self.index = [], [], {}
        for ti, (tmpl, attrs) in enumerate(TEMPLATES):
            for c in range(len(CLASSNAMES)):
                for v in range(len(VARIANTS[c])):
                    for b in (range(3) if "b" in attrs else [-1]):
                        for s in (range(3) if "s" in attrs else [-1]):
                            for t in (range(2) if "t" in attrs else [-1]):
                                text = caption_text(ti, c, v, max(b, 0), max(s, 0), max(t, 0))
                                self.index[(ti, c, v, b, s, t)] = len(self.texts)
                                self.texts.append(text)
                                self.claims.append((c, b, s, t))
        self.claims = np.array(self.claims, dtype=np.int64)

    def sample(self, rng, labels, attrs):
        """One caption id per image: a random template filled from the image's class and
        attributes; the class is named by its official name with probability 1/2, else by
        a uniformly chosen synonym."""
        n = labels.shape[0]
        tis = rng.integers(0, len(TEMPLATES), size=n)
        syn = rng.random(n) < 0.5
        u = rng.random(n)
        ids = np.empty(n, dtype=np.int64)
        for i, (ti, c) in enumerate(zip(tis, labels)):
            a = TEMPLATES[ti][1]
            nv = len(VARIANTS[c])
            v = 1 + min(int(u[i] * (nv - 1)), nv - 2) if syn[i] else 0
            key = (int(ti), int(c), v, int(attrs[i, 0]) if "b" in a else -1,
                   int(attrs[i, 1]) if "s" in a else -1, int(attrs[i, 2]) if "t" in a else -1)
            ids[i] = self.index[key]
        return ids

    def consistent(self, caption_ids, labels, attrs):
        """Bool (N_images, len(caption_ids)) matrix: image i is a positive for caption j."""
        cl = self.claims[caption_ids]  # (K,4)
        img = np.concatenate([labels[:, None].astype(np.int64), attrs], 1)  # (N,4)
        ok = (cl[None, :, :] == img[:, None, :]) | (cl[None, :, :] < 0)
        return ok.all(2)


# --------------------------------------------------------------------- BPE


def _pretokenize(text):
    import regex
    from clip_tokenizer import PAT, clean, byte_table
    bt = byte_table()
    return ["".join(bt[b] for b in tok.encode("utf-8")) for tok in PAT.findall(clean(text))]


def train_bpe(corpus, n_merges):
    """Learns up to n_merges byte-level BPE merges from a list of strings.

    Words are the CLIP pre-tokenizer's pieces, byte-mapped, with '</w>' glued to
    the last symbol. Each step merges the most frequent adjacent pair (ties: the
    lexicographically smallest pair), stopping early when no pair occurs twice.
    Returns the merge list [(a, b), ...].
    """
    words = Counter()
    for text in corpus:
        for w in _pretokenize(text):
            words[w] += 1
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
    merges, made = [], set()
    while len(merges) < n_merges:
        pairs = Counter()
        for w, sym in seqs.items():
            for i in range(len(sym) - 1):
                pairs[(sym[i], sym[i + 1])] += words[w]
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        a, b = best[0]
        if a + b in made:
            raise RuntimeError("BPE: merge %r %r repeats an existing symbol" % (a, b))
        made.add(a + b)
        merges.append((a, b))
        for w, sym in seqs.items():
            out, i = [], 0
            while i < len(sym):
                if i < len(sym) - 1 and sym[i] == a and sym[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            seqs[w] = out
    return merges


def save_bpe(d, merges):
    """Writes vocab.json + merges.txt in CLIP's layout. Returns the vocab size."""
    from clip_tokenizer import byte_table, SOT, EOT
    bt = list(byte_table().values())
    vocab = bt + [c + "</w>" for c in bt] + [a + b for a, b in merges] + [SOT, EOT]
    if len(set(vocab)) != len(vocab):
        raise RuntimeError("BPE vocabulary has duplicate entries")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    return len(vocab)
