/* SPDX-License-Identifier: MIT */
/* test_ps.c - the shared basics: half-precision conversion, checked sizes, the arena. */
#include <stdint.h>
#include <string.h>

#include "ps.h"
#include "test.h"

static void
test_half(void)
{
    CHECK(ps_f16_to_f32(0x3c00) == 1.0f);
    CHECK(ps_f16_to_f32(0xc000) == -2.0f);
    CHECK(ps_f16_to_f32(0x0001) == 5.9604644775390625e-08f); /* smallest subnormal */
    CHECK(ps_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(ps_f16_to_f32(0x7c00)));
    CHECK(ps_bf16_to_f32(0x3f80) == 1.0f);
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) { /* every finite half round-trips */
        if ((h & 0x7c00) == 0x7c00)
            continue;
        if (ps_f32_to_f16(ps_f16_to_f32((uint16_t)h)) != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(ps_f32_to_f16(1.0f + 1.0f / 4096), 0x3c00);  /* ties to even, down */
    CHECK_EQ_INT(ps_f32_to_f16(100000.0f), 0x7c00);
    CHECK_EQ_INT(ps_f32_to_bf16(1.0f), 0x3f80);
}

static void
test_sizes(void)
{
    char err[PS_ERRLEN];
    size_t n;
    int64_t ok[2] = { 3, 4 }, huge[3] = { INT64_MAX, INT64_MAX, 2 }, neg[1] = { -1 };
    CHECK(ps_numel(ok, 2, 4, SIZE_MAX, &n, err) == PS_OK && n == 48);
    CHECK(ps_numel(huge, 3, 4, SIZE_MAX, &n, err) == PS_ENOMEM);
    CHECK(ps_numel(neg, 1, 4, SIZE_MAX, &n, err) == PS_EFORMAT);
    CHECK(ps_numel(ok, 2, 4, 47, &n, err) == PS_ENOMEM);
    CHECK(ps_mul(SIZE_MAX / 2 + 1, 2, &n) == -1);
    CHECK(ps_add(SIZE_MAX, 1, &n) == -1);
}

static void
test_arena(void)
{
    Arena a;
    CHECK(ps_arena_init(&a, 1 << 20, NULL) == PS_OK);
    char *p = ps_arena_alloc(&a, 10), *q = ps_arena_alloc(&a, 100);
    CHECK(((uintptr_t)q & 63) == 0 && q >= p + 10);
    memset(q, 1, 100);
    ps_arena_reset(&a);
    CHECK(ps_arena_alloc(&a, 1) == p);
    ps_arena_free(&a);
    ps_arena_free(&a); /* second free is a no-op */
    CHECK(a.base == NULL);
}

static void
test_err(void)
{
    char err[PS_ERRLEN];
    CHECK(ps_seterr(err, PS_EIO, "open %s", "x") == PS_EIO);
    CHECK_STR(err, "open x");
    CHECK(ps_preferr(err, PS_EIO, "model %d", 3) == PS_EIO);
    CHECK_STR(err, "model 3: open x");
    CHECK(ps_seterr(NULL, PS_EFORMAT, "ignored") == PS_EFORMAT);
    char *buf;
    size_t n;
    CHECK(ps_read_file("/nonexistent/file", 100, &buf, &n, err) == PS_EIO);
    CHECK(strstr(err, "/nonexistent/file") != NULL);
    /* outputs are renamed into place: never over a device or a directory */
    CHECK(ps_check_output("/dev/null", err) == PS_EUSAGE && strstr(err, "/dev/null"));
    CHECK(ps_check_output("/tmp", err) == PS_EUSAGE);
    CHECK(ps_check_output("/nonexistent/new-file", err) == PS_OK);
}

void
test_ps(void)
{
    test_half();
    test_sizes();
    test_arena();
    test_err();
}
