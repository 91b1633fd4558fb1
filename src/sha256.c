/* SPDX-License-Identifier: MIT */
/*
 * sha256.c - SHA-256 as FIPS 180-4 specifies it: 64-byte blocks, the
 * message schedule of 64 words, big-endian length padding. Plain C, no
 * tables beyond the round constants; hashing a 600 MB checkpoint takes a few
 * seconds, which is small next to running a model over a dataset, so no
 * SIMD. Files are read with stdio in 1 MiB pieces.
 */
#include "sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void
sha256_init(Sha256 *s)
{
    static const uint32_t h0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, h0, sizeof h0);
    s->n = 0;
    s->fill = 0;
}

void
sha256_update(Sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->n += n;
    if (s->fill) {
        size_t m = MIN(n, 64 - s->fill);
        memcpy(s->buf + s->fill, p, m);
        s->fill += m, p += m, n -= m;
        if (s->fill < 64)
            return;
        block(s->h, s->buf);
        s->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        block(s->h, p);
    memcpy(s->buf, p, n);
    s->fill = n;
}

void
sha256_final(Sha256 *s, uint8_t out[32])
{
    uint64_t bits = s->n * 8;
    s->buf[s->fill++] = 0x80;
    if (s->fill > 56) {
        memset(s->buf + s->fill, 0, 64 - s->fill);
        block(s->h, s->buf);
        s->fill = 0;
    }
    memset(s->buf + s->fill, 0, 56 - s->fill);
    for (int i = 0; i < 8; i++)
        s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    block(s->h, s->buf);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
    s->fill = 0;
}

void
sha256_hex(const uint8_t dig[32], char hex[65])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = d[dig[i] >> 4];
        hex[2 * i + 1] = d[dig[i] & 15];
    }
    hex[64] = 0;
}

void
sha256_mem_hex(const void *data, size_t n, char hex[65])
{
    Sha256 s;
    uint8_t dig[32];
    sha256_init(&s);
    sha256_update(&s, data, n);
    sha256_final(&s, dig);
    sha256_hex(dig, hex);
}

int
sha256_file(const char *path, char hex[65], int64_t *size, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    enum { PIECE = 1 << 20 };
    uint8_t *buf = xmalloc(PIECE);
    Sha256 s;
    sha256_init(&s);
    size_t n;
    while ((n = fread(buf, 1, PIECE, f)) > 0)
        sha256_update(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    free(buf);
    if (bad)
        return ps_seterr(err, PS_EIO, "%s: read error", path);
    uint8_t dig[32];
    if (size)
        *size = (int64_t)s.n;
    sha256_final(&s, dig);
    sha256_hex(dig, hex);
    return PS_OK;
}
