/* SPDX-License-Identifier: MIT */
/*
 * sha256.h - SHA-256 (FIPS 180-4) of memory and of files, for recording which
 * weights an index was built from. Streaming: sha256_init, sha256_update any
 * number of times, sha256_final. Checked against the FIPS/NIST vectors in
 * tests/test_sha256.c.
 */
#ifndef PS_SHA256_H
#define PS_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct Sha256 {
    uint32_t h[8];      /* chaining state */
    uint64_t n;         /* bytes hashed so far */
    uint8_t buf[64];    /* partial block */
    size_t fill;        /* bytes in buf */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
/* Writes the 32-byte digest; s must be re-initialised before reuse. */
void sha256_final(Sha256 *s, uint8_t out[32]);
/* Lower-case hex of a digest into hex (65 bytes, NUL-terminated). */
void sha256_hex(const uint8_t dig[32], char hex[65]);
/* hex digest of n bytes. */
void sha256_mem_hex(const void *data, size_t n, char hex[65]);
/* hex digest and size (*size, may be NULL) of a file, read in 1 MiB pieces. PS_EIO on failure. */
int sha256_file(const char *path, char hex[65], int64_t *size, char *err);

#endif
