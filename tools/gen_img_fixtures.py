#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""
gen_img_fixtures.py - writes tests/data/img/: small image files and what PIL
(and the HF CLIPProcessor pipeline, re-created here with PIL + numpy only,
since transformers is not installed) makes of them. tests/test_img.c reads
the result without Python.

Run from the repository root with Debian's interpreter:
    /usr/bin/python3 tools/gen_img_fixtures.py
Checked with Pillow 9.4.0, numpy 1.24.2, libjpeg-turbo 2.1.5 (Debian 12).

manifest.txt, one record a line ('#' starts a comment):
    decode FILE W H EXPECT.rgb
        PIL's Image.open(FILE).convert("RGB"), raw (H, W, 3) uint8.
    prep INPUT SIZE CROP EXPECT_U8 EXPECT_F32
        HF CLIPProcessor with shortest_edge=SIZE, crop CROP, CLIP mean/std.
        INPUT is a file here or gen:W:H:SEED (the pattern in gen_pattern(),
        which test_img.c re-creates, so big inputs cost no bytes).
        EXPECT_U8 is the (CROP, CROP, 3) uint8 crop, raw, or fnv:HEX16 (the
        FNV-1a 64 hash of those bytes) for big crops; EXPECT_F32 is the
        (3, CROP, CROP) float32 pixel_values, raw little-endian, or "-".
"""
import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'img')
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


# ---- a minimal PNG writer (PIL cannot write 16-bit colour, LA16 or Adam7) ----

def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)


def pack_rows(a, depth):
    """(H, W*channels) samples -> list of packed row bytes."""
    a = np.asarray(a)
    if depth == 16:
        return [r.astype('>u2').tobytes() for r in a]
    if depth == 8:
        return [r.astype(np.uint8).tobytes() for r in a]
    rows = []
    for r in a:
        bits = ''.join(format(int(v), '0%db' % depth) for v in r)
        bits += '0' * (-len(bits) % 8)
        rows.append(bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]   # (x0, y0, dx, dy) per pass


def png_bytes(a, depth, ctype, extra=b'', interlace=False):
    """a: (H, W, channels) samples for colour type ctype."""
    a = np.asarray(a)
    h, w = a.shape[:2]
    ch = a.shape[2]
    if interlace:
        raw = b''
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.size:
                rows = pack_rows(sub.reshape(sub.shape[0], -1), depth)
                raw += b''.join(b'\x00' + r for r in rows)
    else:
        raw = b''.join(b'\x00' + r for r in pack_rows(a.reshape(h, w * ch), depth))
    ihdr = struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, 1 if interlace else 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + extra
            + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


# ---- content ----

def gen_pattern(w, h, seed):
    """8x8 blocks alternating hash noise and a wrapping gradient; test_img.c has the same."""
    y, x, c = np.meshgrid(np.arange(h, dtype=np.uint32), np.arange(w, dtype=np.uint32),
                          np.arange(3, dtype=np.uint32), indexing='ij')
    with np.errstate(over='ignore'):
        k = (x * np.uint32(73856093)) ^ (y * np.uint32(19349663)) \
            ^ ((c + np.uint32(1)) * np.uint32(83492791)) ^ (np.uint32(seed) * np.uint32(2654435761))
        k ^= k >> np.uint32(13)
        k *= np.uint32(0x5bd1e995)
        k ^= k >> np.uint32(15)
    noise = k & np.uint32(255)
    grad = (x * 3 + y * 5 + c * 60) & np.uint32(255)
    blk = ((x >> 3) + (y >> 3)) & np.uint32(1)
    return np.where(blk == 1, noise, grad).astype(np.uint8)


def photoish(w, h, ch, seed):
    """Smooth shapes, sharp edges and a little noise: compresses well, still exercises clipping."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, ch))
    for c in range(ch):
        v = 128 + 90 * np.sin(x / (3 + 2 * c) + y / 7.0) * np.cos(y / (5 + c))
        v += np.where((x - w / 2) ** 2 + (y - h / 3) ** 2 < (min(w, h) / 4) ** 2, 120 - 80 * c, 0)
        v += np.where(x > 2 * w / 3, -100, 0)
        v += rng.normal(0, 6, (h, w))
        out[..., c] = v
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ---- the reference pipelines ----

def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def hf_resize_crop(img, size, crop):
    """transformers CLIPImageProcessor: convert_rgb, resize(shortest_edge), center_crop (uint8)."""
    img = img.convert('RGB')
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)    # get_resize_output_image_size
    ow, oh = (new_short, new_long) if w <= h else (new_long, new_short)
    a = np.asarray(img.resize((ow, oh), resample=Image.BICUBIC, reducing_gap=None))
    # image_transforms.center_crop, zero padding when the image is smaller than the crop
    top, left = (oh - crop) // 2, (ow - crop) // 2
    if top >= 0 and left >= 0:
        return a[top:top + crop, left:left + crop].copy()
    nh, nw = max(crop, oh), max(crop, ow)
    canvas = np.zeros((nh, nw, 3), np.uint8)
    tp, lp = -(-(nh - oh) // 2), -(-(nw - ow) // 2)
    canvas[tp:tp + oh, lp:lp + ow] = a
    top, left = top + tp, left + lp
    return canvas[max(0, top):top + crop, max(0, left):left + crop].copy()


def hf_normalise(u8):
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)          # rescale
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)     # normalize
    return np.ascontiguousarray(x.transpose(2, 0, 1))                   # NCHW, N=1


def fnv1a64(b):
    hsh = 0xcbf29ce484222325
    for byte in b:
        hsh = ((hsh ^ byte) * 0x100000001b3) & 0xffffffffffffffff
    return '%016x' % hsh


def main():
    warnings.simplefilter('ignore', UserWarning)   # PIL's note on P + bytes transparency
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    man = ['# written by tools/gen_img_fixtures.py (Pillow %s, numpy %s); see its docstring'
           % (Image.__version__, np.__version__)]
    files = {}

    def put(name, data):
        with open(os.path.join(OUT, name), 'wb') as f:
            f.write(data)
        files[name] = len(data)

    def save_pil(name, im, **kw):
        b = io.BytesIO()
        im.save(b, **kw)
        put(name, b.getvalue())

    # ---- decode fixtures ----
    save_pil('rgb_37x53.png', Image.fromarray(photoish(37, 53, 3, 1)), format='PNG')
    save_pil('grey_150x100.png', Image.fromarray(photoish(150, 100, 1, 2)[..., 0]), format='PNG')
    rgba = photoish(64, 64, 4, 3)
    rgba[:8, :, 3] = 0                       # fully transparent but coloured: PIL keeps the colour
    save_pil('rgba_64x64.png', Image.fromarray(rgba, 'RGBA'), format='PNG')
    save_pil('la_24x20.png', Image.fromarray(photoish(24, 20, 2, 4), 'LA'), format='PNG')
    p = Image.fromarray(photoish(50, 40, 3, 5)).quantize(37)
    trns = bytes((i * 7) % 256 for i in range(37))
    save_pil('pal_trns_50x40.png', p, format='PNG', transparency=trns)
    # 4-bit palette with indices past the PLTE: PIL pads its palette with a grey ramp
    idx = (np.arange(30 * 6).reshape(6, 30) % 16).astype(np.uint8)
    plte = chunk(b'PLTE', bytes(range(10, 10 + 3 * 12)))      # 12 entries
    put('pal4_short_30x6.png', png_bytes(idx[..., None], 4, 3, plte))
    g16 = (np.add.outer(np.arange(30) * 11, np.arange(40) * 7) % 600).astype(np.uint16)
    put('grey16_40x30.png', png_bytes(g16[..., None], 16, 0))   # PIL: I -> RGB clips at 255
    rgb16 = (photoish(30, 40, 3, 6).astype(np.uint16) * 257 + 77) % 65536
    put('rgb16_30x40.png', png_bytes(rgb16, 16, 2))               # PIL: high byte
    la16 = photoish(9, 7, 2, 7).astype(np.uint16) * 255
    put('la16_9x7.png', png_bytes(la16, 16, 4))
    put('rgba16_11x5.png', png_bytes(photoish(11, 5, 4, 8).astype(np.uint16) * 300 % 65536, 16, 6))
    put('grey2_13x3.png', png_bytes((np.arange(39).reshape(3, 13, 1) % 4), 2, 0))
    put('grey1_17x2.png', png_bytes((np.arange(34).reshape(2, 17, 1) % 3 == 0).astype(int), 1, 0))
    put('grey_trns_5x4.png', png_bytes(np.arange(20).reshape(4, 5, 1) * 12, 8, 0,
                                       chunk(b'tRNS', struct.pack('>H', 24))))
    put('adam7_19x13.png', png_bytes(photoish(19, 13, 3, 9), 8, 2, interlace=True))
    put('adam7_g16_7x9.png', png_bytes(g16[:9, :7, None] * 60, 16, 0, interlace=True))
    save_pil('f_20x30.png', Image.fromarray(photoish(20, 30, 3, 10)), format='PNG')
    photo = Image.fromarray(photoish(96, 72, 3, 11))
    save_pil('q90_96x72.jpg', photo, format='JPEG', quality=90)
    save_pil('q75_444_prog_45x31.jpg', Image.fromarray(photoish(45, 31, 3, 12)), format='JPEG',
             quality=75, subsampling=0, progressive=True)
    save_pil('grey_33x17.jpg', Image.fromarray(photoish(33, 17, 1, 13)[..., 0]), format='JPEG',
             quality=85)
    save_pil('cmyk_21x14.jpg', Image.fromarray(photoish(21, 14, 4, 14), 'CMYK'), format='JPEG',
             quality=95)
    save_pil('pal_15x9.gif', Image.fromarray(photoish(15, 9, 3, 15)).quantize(64), format='GIF')
    save_pil('rgb_14x9.bmp', Image.fromarray(photoish(14, 9, 3, 16)), format='BMP')
    save_pil('rgb_10x7.ppm', Image.fromarray(photoish(10, 7, 3, 17)), format='PPM')

    man.append('# decode FILE W H EXPECT.rgb')
    for name in sorted(files):
        a = pil_rgb(os.path.join(OUT, name))
        exp = name + '.rgb'
        put(exp, a.tobytes())
        man.append('decode %s %d %d %s' % (name, a.shape[1], a.shape[0], exp))

    # ---- preprocessing fixtures ----
    man.append('# prep INPUT SIZE CROP EXPECT_U8 EXPECT_F32')
    preps = [('rgb_37x53.png', 32, 32, True), ('grey_150x100.png', 48, 48, False),
             ('rgba_64x64.png', 32, 32, False), ('pal_trns_50x40.png', 32, 32, False),
             ('grey16_40x30.png', 32, 32, False), ('rgb16_30x40.png', 32, 32, False),
             ('f_20x30.png', 32, 32, True), ('q90_96x72.jpg', 32, 32, True),
             ('cmyk_21x14.jpg', 32, 32, False),
             ('gen:500:7:1', 32, 32, False),       # extreme aspect ratio, upscaling
             ('gen:400:300:2', 24, 24, False),     # downscale by 12.5: wide support
             ('gen:32:80:3', 32, 32, True),        # short side already S: no horizontal pass
             ('gen:31:80:4', 32, 32, False),       # one-pixel upscale
             ('gen:40:30:5', 24, 32, True),        # crop larger than the resize: zero padding
             ('gen:250:180:6', 224, 224, False)]   # the real CLIP setting
    for inp, size, crop, want_f32 in preps:
        if inp.startswith('gen:'):
            _, w, h, seed = inp.split(':')
            img = Image.fromarray(gen_pattern(int(w), int(h), int(seed)))
            stem = 'gen_%s_%s_%s' % (w, h, seed)
        else:
            img = Image.open(os.path.join(OUT, inp))
            stem = inp.replace('.', '_')
        u8 = hf_resize_crop(img, size, crop)
        assert u8.shape == (crop, crop, 3)
        if crop > 64:
            eu8 = 'fnv:' + fnv1a64(u8.tobytes())
        else:
            eu8 = '%s.s%d.c%d.u8' % (stem, size, crop)
            put(eu8, u8.tobytes())
        ef = '-'
        if want_f32:
            ef = '%s.s%d.c%d.f32' % (stem, size, crop)
            put(ef, hf_normalise(u8).astype('<f4').tobytes())
        man.append('prep %s %d %d %s %s' % (inp, size, crop, eu8, ef))

    with open(os.path.join(OUT, 'manifest.txt'), 'w') as f:
        f.write('\n'.join(man) + '\n')
    total = sum(files.values())
    print('%d files, %d bytes' % (len(files) + 1, total), file=sys.stderr)


if __name__ == '__main__':
    main()
