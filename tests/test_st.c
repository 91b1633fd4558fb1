/* SPDX-License-Identifier: MIT */
/*
 * test_st.c - safetensors: writer + reader round trips of every dtype,
 * metadata, float conversion, shape-check messages, one test per hostile
 * header (each must be PS_EFORMAT naming the file), and a small fuzz loop
 * (every truncation and random byte flips of a valid file; run under ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"
#include "st.h"
#include "test.h"

/* Writes an 8-byte length (hlen, or the JSON's own length when hlen < 0), the JSON, datalen zero bytes. */
static const char *
mkfile(const char *name, const char *json, long long hlen, size_t datalen)
{
    size_t jl = strlen(json), n = 8 + jl + datalen;
    unsigned char *b = calloc(1, n);
    uint64_t h = hlen < 0 ? (uint64_t)jl : (uint64_t)hlen;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(h >> (8 * i));
    memcpy(b + 8, json, jl);
    const char *path = t_tmp(name);
    CHECK(t_write_file(path, b, n) == 0);
    free(b);
    return path;
}

/* The file must be refused with PS_EFORMAT and a message "PATH: ..." containing want. */
static void
hostile_at(int line, const char *name, const char *json, long long hlen, size_t datalen,
           const char *want)
{
    char err[PS_ERRLEN] = "";
    const char *path = mkfile(name, json, hlen, datalen);
    StFile *f = (StFile *)1;
    int rc = st_open(&f, path, err);
    size_t pl = strlen(path);
    int ok = rc == PS_EFORMAT && f == NULL && !strncmp(err, path, pl) && !strncmp(err + pl, ": ", 2)
             && strstr(err, want);
    CHECK_MSG(ok, "line %d: %s: rc %s, err \"%s\", wanted \"%s\"", line, name, ps_strcode(rc), err,
              want);
    st_close(f == (StFile *)1 ? NULL : f);
}
#define HOSTILE(name, json, datalen, want) hostile_at(__LINE__, name, json, -1, datalen, want)

static void
test_hostile(void)
{
    char err[PS_ERRLEN];
    StFile *f;
    /* shorter than 8 bytes */
    const char *p = t_tmp("short.safetensors");
    CHECK(t_write_file(p, "\x02\0\0", 3) == 0);
    CHECK(st_open(&f, p, err) == PS_EFORMAT && f == NULL && strstr(err, p) && strstr(err, "short"));
    CHECK(t_write_file(p, "", 0) == 0);
    CHECK(st_open(&f, p, err) == PS_EFORMAT && strstr(err, p));
    CHECK(st_open_buf(&f, "", 0, "empty.st", err) == PS_EFORMAT && !strncmp(err, "empty.st: ", 10));

    hostile_at(__LINE__, "pasteof", "{}", 1000, 0, "past end of file");
    hostile_at(__LINE__, "absurd", "{}", 200ll << 20, 0, "absurd");
    hostile_at(__LINE__, "huge", "{}", -2 & 0x7fffffffffffffffll, 0, "absurd");
    HOSTILE("badjson", "{\"a\": ", 0, "bad JSON");
    HOSTILE("emptyjson", "", 0, "bad JSON");
    HOSTILE("trailing", "{} x", 0, "bad JSON");
    HOSTILE("array", "[1, 2]", 0, "not a JSON object");
    HOSTILE("entry", "{\"a\": 3}", 0, "entry \"a\" is not a JSON object");
    HOSTILE("nodtype", "{\"a\": {\"shape\": [], \"data_offsets\": [0, 4]}}", 4, "no dtype");
    HOSTILE("unkdtype", "{\"a\": {\"dtype\": \"F128\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
            "unknown dtype F128");
    HOSTILE("numdtype", "{\"a\": {\"dtype\": 4, \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
            "unknown dtype");
    HOSTILE("noshape", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4,
            "shape is not an array");
    HOSTILE("negshape", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
            4, "non-negative integers");
    HOSTILE("fltshape", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}",
            4, "non-negative integers");
    HOSTILE("strshape", "{\"a\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}",
            4, "non-negative integers");
    HOSTILE("bigint", "{\"a\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999999], "
            "\"data_offsets\": [0, 4]}}", 4, "bad JSON");
    HOSTILE("ndim", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], "
            "\"data_offsets\": [0, 1]}}", 1, "9 dimensions");
    HOSTILE("overflow", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
            "\"data_offsets\": [0, 4]}}", 4, "overflows");
    HOSTILE("overflow2", "{\"a\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], "
            "\"data_offsets\": [0, 4]}}", 4, "overflows");
    HOSTILE("nooffs", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "data_offsets");
    HOSTILE("offs3", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
            8, "data_offsets is not [begin, end]");
    HOSTILE("offsneg", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}",
            8, "data_offsets is not [begin, end]");
    HOSTILE("offsrev", "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}",
            8, "data_offsets is not [begin, end]");
    HOSTILE("offsize", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
            8, "hold 4 bytes but shape (2) of F32 needs 8");
    HOSTILE("offseof", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
            8, "past the end of the data (8 bytes)");
    HOSTILE("offshuge", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], "
            "\"data_offsets\": [9223372036854775806, 9223372036854775807]}}", 8, "past the end");
    HOSTILE("overlap", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
            "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
            "\"a\" and \"b\" overlap");
    HOSTILE("overlap2", "{\"a\": {\"dtype\": \"U8\", \"shape\": [16], \"data_offsets\": [0, 16]}, "
            "\"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]}, "
            "\"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [8, 10]}}", 16, "overlap");
    HOSTILE("dup", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
            "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, "duplicate");
    HOSTILE("metaobj", "{\"__metadata__\": [\"x\"]}", 0, "__metadata__ is not a JSON object");
    HOSTILE("metaval", "{\"__metadata__\": {\"k\": \"v\", \"n\": 3}}", 0,
            "__metadata__ value of \"n\" is not a string");
    HOSTILE("nul", "{\"a\\u0000b\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [0, 0]}}",
            0, "bad JSON");

    /* not hostile: empty header, zero-sized tensors, gaps, trailing bytes */
    p = mkfile("okempty", "{}  ", -1, 0);
    CHECK(st_open(&f, p, err) == PS_OK && st_count(f) == 0 && st_meta_count(f) == 0);
    st_close(f);
    p = mkfile("okzero", "{\"z\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [4, 4]},"
               " \"a\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1]}}", -1, 9);
    CHECK(st_open(&f, p, err) == PS_OK && st_count(f) == 2);
    if (f) {
        CHECK_STR(st_at(f, 0)->name, "a");
        CHECK_EQ_INT(st_numel(st_at(f, 0)), 1);
        CHECK_EQ_INT(st_numel(st_find(f, "z")), 0);
    }
    st_close(f);
    /* I/O errors are PS_EIO, also naming the file */
    CHECK(st_open(&f, "/nonexistent/x.safetensors", err) == PS_EIO && strstr(err, "/nonexistent"));
    CHECK(st_open(&f, t_tmpdir(), err) == PS_EIO && strstr(err, t_tmpdir()));
}

static void
test_roundtrip(void)
{
    char err[PS_ERRLEN];
    float f32[6] = { 1.5f, -2.25f, 0.0f, 3e-8f, 65504.0f, -1e30f };
    uint16_t f16[6], bf16[6];
    for (int i = 0; i < 6; i++) {
        f16[i] = ps_f32_to_f16(f32[i]);
        bf16[i] = ps_f32_to_bf16(f32[i]);
    }
    f16[5] = 0x0001; /* smallest subnormal */
    double f64[3] = { 0.1, -7.0, 1e300 };
    int64_t i64[3] = { INT64_MIN, -1, INT64_MAX };
    int32_t i32[3] = { INT32_MIN, 7, INT32_MAX };
    int16_t i16[3] = { -32768, 300, 32767 };
    int8_t i8[5] = { -128, -1, 0, 1, 127 };
    uint8_t u8[7] = { 0, 1, 2, 128, 200, 254, 255 }, b[3] = { 1, 0, 1 };
    int64_t s23[2] = { 2, 3 }, s3[1] = { 3 }, s5[1] = { 5 }, s7[3] = { 7, 1, 1 }, s32[2] = { 3, 2 };

    StWriter *w = st_writer_new();
    st_writer_add(w, "u8", ST_U8, 3, s7, u8); /* odd sizes first: the writer must realign */
    st_writer_add(w, "f32", ST_F32, 2, s23, f32);
    st_writer_add(w, "f16", ST_F16, 2, s32, f16);
    st_writer_add(w, "bf16", ST_BF16, 2, s23, bf16);
    st_writer_add(w, "f64", ST_F64, 1, s3, f64);
    st_writer_add(w, "i64", ST_I64, 1, s3, i64);
    st_writer_add(w, "i32", ST_I32, 1, s3, i32);
    st_writer_add(w, "i16", ST_I16, 1, s3, i16);
    st_writer_add(w, "i8", ST_I8, 1, s5, i8);
    st_writer_add(w, "bool", ST_BOOL, 1, s3, b);
    st_writer_add(w, "scalar", ST_F32, 0, NULL, f32 + 1);
    st_writer_add(w, "empty", ST_F16, 2, (int64_t[]){ 0, 4 }, NULL);
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "note", "first");
    st_writer_meta(w, "note", "héllo \"quoted\"\n");
    const char *path = t_tmp("rt.safetensors");
    CHECK(st_writer_save(w, path, err) == PS_OK);
    st_writer_free(w);

    char tmpname[4200];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    FILE *tf = fopen(tmpname, "rb");
    CHECK(tf == NULL); /* the temporary name is gone */
    if (tf)
        fclose(tf);

    /* header length is a multiple of 8 and padded with spaces */
    char *raw;
    size_t nraw;
    CHECK(ps_read_file(path, 1 << 20, &raw, &nraw, err) == PS_OK);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | (unsigned char)raw[i];
    CHECK(hl % 8 == 0 && hl < nraw);
    CHECK(raw[8] == '{');
    CHECK(raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}');
    CHECK(strstr(raw + 8, "\"__metadata__\"") == raw + 9); /* metadata first */

    StFile *f;
    CHECK(st_open(&f, path, err) == PS_OK);
    if (!f) {
        free(raw);
        return;
    }
    CHECK_STR(st_path(f), path);
    CHECK_EQ_INT(st_count(f), 12);
    CHECK_EQ_INT(st_meta_count(f), 2);
    CHECK_STR(st_meta(f, "format"), "pt");
    CHECK_STR(st_meta(f, "note"), "héllo \"quoted\"\n");
    CHECK_STR(st_meta_key(f, 0), "format");
    CHECK(st_meta(f, "absent") == NULL);
    CHECK(st_find(f, "absent") == NULL);

    /* contiguous, each tensor aligned to its element size (what HF's reader accepts) */
    size_t end = 8 + (size_t)hl;
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        size_t off = (size_t)((const char *)t->data - (const char *)st_at(f, 0)->data) + 8 + hl;
        CHECK_MSG(off == end, "%s at %zu, expected %zu", t->name, off, end);
        CHECK_MSG(off % st_dtype_size(t->dtype) == 0, "%s misaligned", t->name);
        end = off + t->nbytes;
    }
    CHECK_EQ_INT(end, nraw);

    struct { const char *name; StDtype dt; int nd; const int64_t *shape; const void *data; } want[] = {
        { "u8", ST_U8, 3, s7, u8 },         { "f32", ST_F32, 2, s23, f32 },
        { "f16", ST_F16, 2, s32, f16 },     { "bf16", ST_BF16, 2, s23, bf16 },
        { "f64", ST_F64, 1, s3, f64 },      { "i64", ST_I64, 1, s3, i64 },
        { "i32", ST_I32, 1, s3, i32 },      { "i16", ST_I16, 1, s3, i16 },
        { "i8", ST_I8, 1, s5, i8 },         { "bool", ST_BOOL, 1, s3, b },
        { "scalar", ST_F32, 0, NULL, f32 + 1 },
    };
    for (size_t k = 0; k < LEN(want); k++) {
        const StTensor *t = st_find(f, want[k].name);
        CHECK_MSG(t != NULL, "tensor %s missing", want[k].name);
        if (!t)
            continue;
        CHECK_STR(t->name, want[k].name);
        CHECK_MSG(t->dtype == want[k].dt, "%s: dtype %s", t->name, st_dtype_name(t->dtype));
        CHECK_EQ_INT(t->nd, want[k].nd);
        CHECK(t->nd == 0 || !memcmp(t->shape, want[k].shape, (size_t)t->nd * 8));
        CHECK_EQ_INT(t->nbytes, (size_t)st_numel(t) * st_dtype_size(t->dtype));
        CHECK_MSG(!memcmp(t->data, want[k].data, t->nbytes), "%s: bytes differ", t->name);
    }
    const StTensor *e = st_find(f, "empty");
    CHECK(e && e->nbytes == 0 && e->nd == 2 && e->shape[0] == 0 && e->shape[1] == 4);

    /* float32 views and conversions */
    const float *v, *v2;
    CHECK(st_get_f32(f, "f32", 2, s23, &v, err) == PS_OK);
    CHECK(v == st_find(f, "f32")->data); /* aligned F32: zero copy */
    CHECK(v && !memcmp(v, f32, sizeof f32));
    CHECK(st_get_f32(f, "f16", 2, s32, &v, err) == PS_OK);
    for (int i = 0; v && i < 6; i++)
        CHECK(v[i] == ps_f16_to_f32(f16[i]));
    CHECK(v && v[0] == 1.5f && v[1] == -2.25f && v[4] == 65504.0f && v[5] == 5.9604644775390625e-08f);
    CHECK(st_get_f32(f, "f16", 2, s32, &v2, err) == PS_OK && v2 == v); /* cached */
    CHECK(st_get_f32(f, "bf16", 0, NULL, &v, err) == PS_OK);
    for (int i = 0; v && i < 6; i++)
        CHECK(v[i] == ps_bf16_to_f32(bf16[i]));
    CHECK(v && v[0] == 1.5f && v[1] == -2.25f);
    CHECK(st_get_f32(f, "f64", 1, s3, &v, err) == PS_OK);
    CHECK(v && v[0] == 0.1f && v[1] == -7.0f && isinf(v[2]));
    CHECK(st_get_f32(f, "scalar", 0, NULL, &v, err) == PS_OK && v && *v == -2.25f);
    CHECK(st_get_f32(f, "empty", 2, (int64_t[]){ 0, 4 }, &v, err) == PS_OK && v != NULL);

    /* shape checks */
    CHECK(st_get_f32(f, "f32", 2, s32, &v, err) == PS_ESHAPE && v == NULL);
    CHECK(strstr(err, path) && strstr(err, "tensor f32 has shape (2, 3), expected (3, 2)"));
    CHECK(st_get_f32(f, "f32", 1, s3, &v, err) == PS_ESHAPE);
    CHECK(strstr(err, "tensor f32 has shape (2, 3), expected (3)"));
    CHECK(st_get_f32(f, "nope", 2, s23, &v, err) == PS_ESHAPE);
    CHECK(strstr(err, path) && strstr(err, "tensor nope missing (expected shape (2, 3))"));
    CHECK(st_get_f32(f, "i64", 1, s3, &v, err) == PS_EFORMAT && strstr(err, "I64"));
    char sb[64];
    CHECK_STR(st_shape_str(s7, 3, sb, sizeof sb), "(7, 1, 1)");
    CHECK_STR(st_shape_str(NULL, 0, sb, sizeof sb), "()");
    CHECK_STR(st_shape_str(s7, 3, sb, 5), "(7, ");
    st_close(f);

    /* the same bytes from an unaligned buffer: F32 comes back as an aligned copy */
    char *ub = malloc(nraw + 1);
    memcpy(ub + 1, raw, nraw);
    CHECK(st_open_buf(&f, ub + 1, nraw, "mem", err) == PS_OK);
    if (f) {
        CHECK_STR(st_path(f), "mem");
        CHECK(st_get_f32(f, "f32", 2, s23, &v, err) == PS_OK);
        CHECK(v && v != st_find(f, "f32")->data && ((uintptr_t)v & 3) == 0);
        CHECK(v && !memcmp(v, f32, sizeof f32));
        st_close(f);
    }
    free(ub);
    free(raw);
    st_close(NULL);

    /* an empty writer makes a valid file; a bad directory is PS_EIO naming the path */
    w = st_writer_new();
    CHECK(st_writer_save(w, t_tmp("none.safetensors"), err) == PS_OK);
    CHECK(st_writer_save(w, "/nonexistent/dir/x.safetensors", err) == PS_EIO &&
          strstr(err, "/nonexistent/dir/x.safetensors"));
    st_writer_free(w);
    CHECK(st_open(&f, t_tmp("none.safetensors"), err) == PS_OK && st_count(f) == 0);
    st_close(f);
}

/* Opens every accepted mutation and touches all it hands out (ASan finds over-reads). */
static void
poke(const unsigned char *buf, size_t n, int *accepted)
{
    char err[PS_ERRLEN];
    StFile *f;
    unsigned char *copy = malloc(n ? n : 1); /* exact size: reads past the end are caught */
    memcpy(copy, buf, n);
    int rc = st_open_buf(&f, copy, n, "fuzz", err);
    CHECK(rc == PS_OK || (rc == PS_EFORMAT && !strncmp(err, "fuzz: ", 6)) || rc == PS_ENOMEM);
    if (rc == PS_OK) {
        ++*accepted;
        unsigned sum = 0;
        for (int i = 0; i < st_count(f); i++) {
            const StTensor *t = st_at(f, i);
            for (size_t k = 0; k < t->nbytes; k++)
                sum += ((const unsigned char *)t->data)[k];
            const float *v;
            if (st_get_f32(f, t->name, t->nd, t->shape, &v, err) == PS_OK)
                for (int64_t k = 0; k < st_numel(t); k++)
                    sum += v[k] > 0;
            CHECK(st_find(f, t->name) != NULL);
        }
        for (int i = 0; i < st_meta_count(f); i++)
            sum += (unsigned)strlen(st_meta(f, st_meta_key(f, i)));
        (void)sum;
        st_close(f);
    }
    free(copy);
}

static void
test_fuzz(void)
{
    char err[PS_ERRLEN];
    float a[4] = { 1, 2, 3, 4 };
    uint16_t h[3] = { 0x3c00, 0x4000, 0xc000 };
    uint8_t u[3] = { 1, 2, 3 };
    StWriter *w = st_writer_new();
    st_writer_add(w, "a", ST_F32, 2, (int64_t[]){ 2, 2 }, a);
    st_writer_add(w, "h", ST_F16, 1, (int64_t[]){ 3 }, h);
    st_writer_add(w, "u", ST_U8, 1, (int64_t[]){ 3 }, u);
    st_writer_meta(w, "k", "v");
    const char *path = t_tmp("fuzz.safetensors");
    CHECK(st_writer_save(w, path, err) == PS_OK);
    st_writer_free(w);
    char *raw;
    size_t n;
    if (ps_read_file(path, 1 << 20, &raw, &n, err) != PS_OK) {
        CHECK(0);
        return;
    }
    int accepted = 0;
    for (size_t len = 0; len <= n; len++)
        poke((unsigned char *)raw, len, &accepted);
    CHECK(accepted >= 1); /* at least the whole file */

    /* a truncated file on disk, through st_open */
    StFile *f;
    CHECK(t_write_file(t_tmp("trunc.safetensors"), raw, n - 3) == 0);
    CHECK(st_open(&f, t_tmp("trunc.safetensors"), err) == PS_EFORMAT && strstr(err, "trunc"));

    unsigned char *m = malloc(n);
    t_seed(12345);
    int tried = 0;
    static const char digits[] = "0123456789[]{},:\"-. ";
    for (int it = 0; it < 20000; it++) {
        memcpy(m, raw, n);
        int flips = 1 + (int)(t_rand() % 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = t_rand() % n;
            /* bias half of the mutations to the header and to JSON-ish bytes */
            if (t_rand() & 1)
                pos = t_rand() % (n < 120 ? n : 120);
            m[pos] = (t_rand() & 1) ? (unsigned char)t_rand() : (unsigned char)digits[t_rand() % 20];
        }
        poke(m, n, &accepted);
        tried++;
    }
    CHECK_EQ_INT(tried, 20000);
    free(m);
    free(raw);
}

void
test_st(void)
{
    test_hostile();
    test_roundtrip();
    test_fuzz();
}
