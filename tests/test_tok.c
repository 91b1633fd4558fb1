/* SPDX-License-Identifier: MIT */
/*
 * test_tok.c - the CLIP tokenizer against the answers of the Python reference
 * (tools/clip_tokenizer.py via tools/gen_tok_fixtures.py): OpenAI's vocab
 * loaded from the .gz and from the HF files tok_save_hf writes, a small custom
 * vocab, context truncation, decode, hostile loader inputs, and speed.
 * OpenAI's bpe_simple_vocab_16e6.txt.gz is read from the shared data
 * directory ($PS_SHARED_DATA, ../shared/data, ../../shared/data or
 * /work/shared/data); without it those checks are skipped with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ps.h"
#include "test.h"
#include "tok.h"

#define MAXIDS 4096

typedef struct Case {
    char *text;
    int total; /* ids of encode(text) */
    int n;     /* tokenize(text, 77) ids before the zero padding */
    int32_t ids[TOK_CTX];
} Case;

/* Undoes the fixture escapes \\ \t \n \r \xHH in place. */
static void
unesc(char *s)
{
    char *o = s;
    while (*s) {
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        s++;
        if (*s == 't')
            *o++ = '\t', s++;
        else if (*s == 'n')
            *o++ = '\n', s++;
        else if (*s == 'r')
            *o++ = '\r', s++;
        else if (*s == 'x') {
            char h[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            s += 3;
        } else
            *o++ = *s++;
    }
    *o = 0;
}

/* Reads a fixture TSV; returns the number of cases (*out malloc'd). */
static int
read_cases(const char *name, Case **out, char **bufp)
{
    char err[PS_ERRLEN], *buf;
    size_t len;
    if (ps_read_file(t_data(name), 1 << 22, &buf, &len, err) != PS_OK) {
        t_failf(__FILE__, __LINE__, "%s", err);
        return 0;
    }
    int cap = 16, n = 0;
    Case *c = xmalloc(cap * sizeof *c);
    for (char *line = buf, *next; *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : line + strlen(line);
        if (nl)
            *nl = 0;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t2) {
            t_failf(__FILE__, __LINE__, "%s: bad line %d", name, n + 1);
            continue;
        }
        *t1 = *t2 = 0;
        if (n == cap)
            c = xrealloc(c, (cap *= 2) * sizeof *c);
        unesc(line);
        c[n].text = line;
        c[n].total = atoi(t1 + 1);
        c[n].n = 0;
        for (char *p = t2 + 1, *e; *p && c[n].n < TOK_CTX; p = e) {
            c[n].ids[c[n].n++] = (int32_t)strtol(p, &e, 10);
            if (e == p)
                break;
        }
        n++;
    }
    *out = c;
    *bufp = buf;
    return n;
}

/* Every case: tokenize gives the ids then zeros, encode the total and the ids. */
static void
check_cases(const Tok *t, const char *name, const char *label)
{
    Case *c;
    char *buf;
    int n = read_cases(name, &c, &buf), bad_tok = 0, bad_enc = 0;
    CHECK(n > 0);
    static int32_t ids[MAXIDS];
    for (int i = 0; i < n; i++) {
        int32_t out[TOK_CTX], want[TOK_CTX] = {0};
        memcpy(want, c[i].ids, (size_t)c[i].n * sizeof *want);
        CHECK(tok_tokenize(t, c[i].text, TOK_CTX, out) == PS_OK);
        if (memcmp(out, want, sizeof out)) {
            if (bad_tok++ < 3)
                t_failf(__FILE__, __LINE__, "%s: tokenize(\"%.80s\") differs", label, c[i].text);
        }
        int total;
        CHECK(tok_encode(t, c[i].text, ids, MAXIDS, &total) == PS_OK);
        int ok = total == c[i].total;
        if (ok && total <= TOK_CTX - 2)
            ok = c[i].n == total + 2 && !memcmp(ids, c[i].ids + 1, (size_t)total * sizeof *ids);
        if (ok && total > TOK_CTX - 2)
            ok = !memcmp(ids, c[i].ids + 1, (TOK_CTX - 2) * sizeof *ids);
        if (!ok && bad_enc++ < 3)
            t_failf(__FILE__, __LINE__, "%s: encode(\"%.80s\") gave %d ids, expected %d", label,
                    c[i].text, total, c[i].total);
    }
    CHECK_EQ_INT(bad_tok, 0);
    CHECK_EQ_INT(bad_enc, 0);
    free(c);
    free(buf);
}

static const char *
bpe_gz_path(void)
{
    return t_shared("bpe_simple_vocab_16e6.txt.gz");
}

static void
test_openai(const char *gz)
{
    char err[PS_ERRLEN] = "";
    Tok t, h;
    double t0 = ps_now();
    int rc = tok_load_bpe_gz(&t, gz, err);
    double t_load = ps_now() - t0;
    CHECK_MSG(rc == PS_OK, "tok_load_bpe_gz: %s", err);
    if (rc != PS_OK)
        return;
    CHECK_EQ_INT(tok_vocab_size(&t), 49408);
    CHECK_EQ_INT(t.n_merges, 48894);
    CHECK_EQ_INT(tok_sot(&t), 49406);
    CHECK_EQ_INT(tok_eot(&t), 49407);

    int32_t out[TOK_CTX];
    const int32_t cat[8] = {49406, 320, 1125, 539, 320, 2368, 269, 49407};
    CHECK(tok_tokenize(&t, "a photo of a cat.", TOK_CTX, out) == PS_OK);
    CHECK(!memcmp(out, cat, sizeof cat) && out[8] == 0 && out[76] == 0);
    check_cases(&t, "tok_cases.tsv", "gz");

    /* answers of OpenAI's / open_clip's tokenizer published in other projects' tests: independent
     * of our Python */
    static const struct {
        const char *text;
        int32_t ids[12];
    } known[] = {
        {"a photo of a dog", {49406, 320, 1125, 539, 320, 1929, 49407}},
        {"A Photo of a TREE!", {49406, 320, 1125, 539, 320, 2677, 256, 49407}},
        {"it's a cat's toy, running   fast",
         {49406, 585, 568, 320, 2368, 568, 5988, 267, 2761, 1953, 49407}},
        {"I can't believe it's not butter",
         {49406, 328, 753, 713, 2649, 585, 568, 783, 6952, 49407}},
        {"hello, world! how are you?", {49406, 3306, 267, 1002, 256, 829, 631, 592, 286, 49407}},
        {"email: user@example.com", {49406, 4462, 281, 7031, 287, 6228, 269, 2464, 49407}},
        {"the year 2024 was interesting", {49406, 518, 935, 273, 271, 273, 275, 739, 3628, 49407}},
        {"  HELLO   World  ", {49406, 3306, 1002, 49407}},
        {"MacBook Pro 16-inch", {49406, 20617, 2630, 272, 277, 268, 6523, 49407}},
        {"code editor with syntax highlighting",
         {49406, 3217, 7661, 593, 3758, 3879, 17344, 49407}},
    };
    for (size_t i = 0; i < LEN(known); i++) {
        int32_t want[TOK_CTX] = {0};
        memcpy(want, known[i].ids, sizeof known[i].ids);
        CHECK(tok_tokenize(&t, known[i].text, TOK_CTX, out) == PS_OK);
        CHECK_MSG(!memcmp(out, want, sizeof out), "known answer \"%s\" differs", known[i].text);
    }

    /* HF files written by tok_save_hf give the same ids */
    CHECK(tok_save_hf(&t, t_tmpdir(), err) == PS_OK);
    rc = tok_load_hf(&h, t_tmp("vocab.json"), t_tmp("merges.txt"), err);
    CHECK_MSG(rc == PS_OK, "tok_load_hf: %s", err);
    if (rc == PS_OK) {
        CHECK_EQ_INT(tok_vocab_size(&h), 49408);
        CHECK_EQ_INT(h.n_merges, 48894);
        CHECK_EQ_INT(tok_sot(&h), 49406);
        CHECK_EQ_INT(tok_eot(&h), 49407);
        check_cases(&h, "tok_cases.tsv", "hf");
        tok_free(&h);
    }
    char *m;
    size_t len;
    if (ps_read_file(t_tmp("merges.txt"), 1 << 24, &m, &len, err) == PS_OK) {
        CHECK(!strncmp(m, "#version: 0.2\ni n\nt h\n", 22));
        int lines = 0;
        for (size_t i = 0; i < len; i++)
            lines += m[i] == '\n';
        CHECK_EQ_INT(lines, 48895);
        free(m);
    }
    if (ps_read_file(t_tmp("vocab.json"), 1 << 24, &m, &len, err) == PS_OK) {
        CHECK(!strncmp(m, "{\"!\":0,\"\\\"\":1,", 14));
        CHECK(strstr(m, "\"<|endoftext|>\":49407}") != NULL);
        free(m);
    }

    /* context lengths and truncation */
    CHECK(tok_tokenize(&t, "a photo of a cat.", 1, out) == PS_OK && out[0] == 49407);
    CHECK(tok_tokenize(&t, "a photo of a cat.", 2, out) == PS_OK && out[0] == 49406 &&
          out[1] == 49407);
    const int32_t cut[5] = {49406, 320, 1125, 539, 49407};
    CHECK(tok_tokenize(&t, "a photo of a cat.", 5, out) == PS_OK && !memcmp(out, cut, sizeof cut));
    const int32_t exact[8] = {49406, 320, 1125, 539, 320, 2368, 269, 49407};
    CHECK(tok_tokenize(&t, "a photo of a cat.", 8, out) == PS_OK &&
          !memcmp(out, exact, sizeof exact));

    /* encode into a short buffer: the first max ids, the total count, nothing past max */
    int32_t few[4] = {-1, -1, -1, -1};
    int n;
    CHECK(tok_encode(&t, "a photo of a cat.", few, 3, &n) == PS_OK);
    CHECK_EQ_INT(n, 6);
    CHECK(few[0] == 320 && few[1] == 1125 && few[2] == 539 && few[3] == -1);
    CHECK(tok_encode(&t, "", few, 0, &n) == PS_OK && n == 0);

    /* decode, and invalid UTF-8 bytes kept as bytes */
    int32_t ids[64];
    char text[256];
    CHECK(tok_encode(&t, "Hello,  World! caf\xc3\xa9 \xf0\x9f\x98\x80", ids, 64, &n) == PS_OK);
    size_t dl = tok_decode(&t, ids, n, text, sizeof text);
    CHECK_STR(text, "hello , world ! caf\xc3\xa9 \xf0\x9f\x98\x80 ");
    CHECK_EQ_INT(dl, strlen(text));
    CHECK_EQ_INT(tok_decode(&t, ids, n, text, 4), dl);
    CHECK_STR(text, "hel");
    CHECK(tok_encode(&t, "CAF\xe9 x\xff\xfe", ids, 64, &n) == PS_OK);
    tok_decode(&t, ids, n, text, sizeof text);
    CHECK_STR(text, "caf \xe9 x \xff\xfe ");
    const int32_t odd[4] = {-5, 49406, 99999, 49407};
    tok_decode(&t, odd, 4, text, sizeof text);
    CHECK_STR(text, "<|startoftext|><|endoftext|>");

    /* speed: 1000 ImageNet prompts; a hostile 1 MB word stays fast (heap BPE) */
    Case *c;
    char *buf;
    int nc = read_cases("tok_cases.tsv", &c, &buf);
    Tok fresh;
    CHECK(tok_load_bpe_gz(&fresh, gz, err) == PS_OK);
    double t1 = ps_now();
    int done = 0;
    for (int i = 0; i < nc; i++)
        if (!strncmp(c[i].text, "a photo of a ", 13)) {
            tok_tokenize(&fresh, c[i].text, TOK_CTX, out);
            done++;
        }
    double t_cold = ps_now() - t1;
    t1 = ps_now();
    for (int i = 0; i < nc; i++)
        if (!strncmp(c[i].text, "a photo of a ", 13))
            tok_tokenize(&fresh, c[i].text, TOK_CTX, out);
    double t_warm = ps_now() - t1;
    CHECK(done >= 1000); /* the 1000 ImageNet prompts and "a photo of a cat." */
    CHECK(t_cold < 1.0);
    tok_free(&fresh);
    free(c);
    free(buf);
    size_t big = TOK_MAX_TEXT;
    char *word = xmalloc(big + 1);
    for (size_t i = 0; i < big; i++)
        word[i] = "ab"[i % 2 ? 1 : (i / 7) % 2];
    word[big] = 0;
    t1 = ps_now();
    CHECK(tok_encode(&t, word, NULL, 0, &n) == PS_OK && n > 0);
    double t_big = ps_now() - t1;
    CHECK(t_big < 5.0);
    word = xrealloc(word, big + 2);
    word[big] = 'a';
    word[big + 1] = 0;
    CHECK(tok_encode(&t, word, NULL, 0, &n) == PS_EUSAGE && n == 0);
    out[0] = 7;
    CHECK(tok_tokenize(&t, word, TOK_CTX, out) == PS_EUSAGE && out[0] == 0);
    free(word);
    fprintf(stderr,
            "tok: load .gz %.1f ms; %d prompts %.2f ms cold, %.2f ms warm; 1 MB word %.0f ms\n",
            t_load * 1e3, done, t_cold * 1e3, t_warm * 1e3, t_big * 1e3);
    tok_free(&t);
    tok_free(&t); /* a second free is a no-op */
}

static void
test_small(void)
{
    char err[PS_ERRLEN] = "";
    Tok t, h;
    char vocab[4096]; /* t_data's buffer is static */
    snprintf(vocab, sizeof vocab, "%s", t_data("tok_small_vocab.json"));
    int rc = tok_load_hf(&t, vocab, t_data("tok_small_merges.txt"), err);
    CHECK_MSG(rc == PS_OK, "tok_load_hf small: %s", err);
    if (rc != PS_OK)
        return;
    int nv = tok_vocab_size(&t);
    CHECK(nv > 300 && nv < 600);
    CHECK_EQ_INT(tok_sot(&t), nv - 2);
    CHECK_EQ_INT(tok_eot(&t), nv - 1);
    CHECK_EQ_INT(t.n_merges, 300);
    check_cases(&t, "tok_small_cases.tsv", "small");
    CHECK(mkdir(t_tmp("small"), 0755) == 0);
    CHECK(tok_save_hf(&t, t_tmp("small"), err) == PS_OK);
    rc = tok_load_hf(&h, t_tmp("small/vocab.json"), t_tmp("small/merges.txt"), err);
    CHECK_MSG(rc == PS_OK, "reload small: %s", err);
    if (rc == PS_OK) {
        check_cases(&h, "tok_small_cases.tsv", "small resaved");
        tok_free(&h);
    }
    CHECK(tok_save_hf(&t, t_tmp("no/such/dir"), err) == PS_EIO);
    tok_free(&t);
}

static int
write_gz(const char *path, const char *text, size_t n)
{
    gzFile g = gzopen(path, "wb");
    if (!g)
        return -1;
    int ok = n == 0 || gzwrite(g, text, (unsigned)n) == (int)n;
    return gzclose(g) == Z_OK && ok ? 0 : -1;
}

/* A loader call that must fail with code and a message containing want; t must come back zeroed. */
static void
expect_fail(int rc, const Tok *t, int code, const char *err, const char *want, int line)
{
    if (rc != code)
        t_failf(__FILE__, line, "rc %s, expected %s (%s)", ps_strcode(rc), ps_strcode(code), err);
    else if (!strstr(err, want))
        t_failf(__FILE__, line, "message \"%s\" lacks \"%s\"", err, want);
    else
        t_pass++;
    CHECK(t->d == NULL && t->n_vocab == 0);
}

static void
test_hostile_gz(const char *gz)
{
    char err[PS_ERRLEN];
    Tok t;
    const char *p = t_tmp("h.gz");
    expect_fail(tok_load_bpe_gz(&t, t_tmp("missing.gz"), err), &t, PS_EIO, err, "missing.gz",
                __LINE__);
    t_write_file(p, "", 0);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "h.gz", __LINE__);
    t_write_file(p, "hello\ni n\n", 10);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "not gzip", __LINE__);
    write_gz(p, "v\ni n\nt h\n", 10);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "2 merges", __LINE__);
    write_gz(p, "v\ni n\nt h x\n", 12);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "line 3", __LINE__);
    write_gz(p, "v\ni n\nt\n", 8);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "line 3", __LINE__);
    write_gz(p, "v\ni \xff\n", 6);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "line 2", __LINE__);
    if (!gz)
        return;
    char *raw;
    size_t n;
    if (ps_read_file(gz, 1 << 22, &raw, &n, err) != PS_OK) {
        t_failf(__FILE__, __LINE__, "%s", err);
        return;
    }
    t_write_file(p, raw, n / 2); /* truncated: the merges used are in the first 20% */
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "h.gz", __LINE__);
    t_write_file(p, raw, n - 4); /* only the length trailer missing */
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "h.gz", __LINE__);
    raw[n / 3] ^= 0x55; /* corrupt deflate data or CRC */
    raw[n / 3 + 1] ^= 0x55;
    t_write_file(p, raw, n);
    expect_fail(tok_load_bpe_gz(&t, p, err), &t, PS_EFORMAT, err, "h.gz", __LINE__);
    free(raw);
}

static void
test_hostile_hf(void)
{
    char err[PS_ERRLEN];
    Tok t;
    const char *v = t_tmp("hv.json"), *m = t_tmp("hm.txt");
    const char *good_m = "#version: 0.2\na b\n";
    static const struct {
        const char *vocab, *merges, *want;
        int code;
    } cases[] = {
        {"{\"a\":0,\"b\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3", NULL, "hv.json: line",
         PS_EFORMAT},
        {"[1, 2, 3]", NULL, "expected an object", PS_EFORMAT},
        {"{}", NULL, "expected an object", PS_EFORMAT},
        {"{\"a\":0,\"b\":\"1\",\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "\"b\"",
         PS_EFORMAT},
        {"{\"a\":0,\"b\":1.5,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "\"b\"",
         PS_EFORMAT},
        {"{\"a\":0,\"b\":0,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "unique", PS_EFORMAT},
        {"{\"a\":0,\"b\":4,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "0..3", PS_EFORMAT},
        {"{\"a\":0,\"b\":-1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "\"b\"", PS_EFORMAT},
        {"{\"a\":0,\"b\":99999999999999,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "\"b\"",
         PS_EFORMAT},
        {"{\"a\":0,\"a\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "hv.json",
         PS_EFORMAT},
        {"{\"a\":0,\"b\":1,\"<|endoftext|>\":2}", NULL, "no <|startoftext|>", PS_EFORMAT},
        {"{\"a\":0,\"\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", NULL, "hv.json", PS_EFORMAT},
        {"{\"a\":0,\"b\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", "#version: 0.2\na\n",
         "hm.txt: line 2", PS_EFORMAT},
        {"{\"a\":0,\"b\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", "a b\nb a c\n",
         "hm.txt: line 2", PS_EFORMAT},
        {"{\"a\":0,\"b\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", "a b\n   \n",
         "hm.txt: line 2", PS_EFORMAT},
        {"{\"a\":0,\"b\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}", "a \xc3\x28\n",
         "hm.txt: line 1", PS_EFORMAT},
    };
    for (size_t i = 0; i < LEN(cases); i++) {
        const char *mm = cases[i].merges ? cases[i].merges : good_m;
        t_write_file(v, cases[i].vocab, strlen(cases[i].vocab));
        t_write_file(m, mm, strlen(mm));
        int rc = tok_load_hf(&t, v, m, err);
        expect_fail(rc, &t, cases[i].code, err, cases[i].want, __LINE__);
        if (rc == PS_OK)
            tok_free(&t);
    }
    const char *ok_v = "{\"a\":0,\"b\":1,\"<|startoftext|>\":2,\"<|endoftext|>\":3}";
    t_write_file(v, ok_v, strlen(ok_v));
    expect_fail(tok_load_hf(&t, v, t_tmp("nope.txt"), err), &t, PS_EIO, err, "nope.txt", __LINE__);
    expect_fail(tok_load_hf(&t, t_tmp("nope.json"), m, err), &t, PS_EIO, err, "nope.json",
                __LINE__);

    /* a tiny valid vocab: merges without a header, CRLF; unknown symbols become eot */
    t_write_file(m, "a b\r\n\r\n", 7);
    int rc = tok_load_hf(&t, v, m, err);
    CHECK_MSG(rc == PS_OK, "tiny vocab: %s", err);
    if (rc == PS_OK) {
        CHECK_EQ_INT(t.n_merges, 1);
        int32_t out[6];
        CHECK(tok_tokenize(&t, "ab a", 6, out) == PS_OK);
        const int32_t want[6] = {2, 0, 3,
                                 3, 3, 0}; /* "a" "b</w>" | "a</w>": only "a" is in the vocab */
        CHECK(!memcmp(out, want, sizeof want));
        tok_free(&t);
    }
    /* merges out of training order ("ab a" before "a b"): one rank per round, as the Python loop */
    const char *ov = "{\"a\":0,\"b\":1,\"ab\":2,\"aba\":3,\"x</"
                     "w>\":4,\"<|startoftext|>\":5,\"<|endoftext|>\":6}";
    t_write_file(v, ov, strlen(ov));
    t_write_file(m, "ab a\na b\n", 9);
    rc = tok_load_hf(&t, v, m, err);
    CHECK_MSG(rc == PS_OK, "out-of-order merges: %s", err);
    if (rc == PS_OK) {
        int32_t out[6];
        const int32_t want[6] = {5, 2, 2, 4, 6, 0}; /* "ab" "ab" "x</w>", not "aba" "b" "x</w>" */
        CHECK(tok_tokenize(&t, "ababx", 6, out) == PS_OK && !memcmp(out, want, sizeof want));
        tok_free(&t);
    }
    t_write_file(v, ok_v, strlen(ok_v));
    t_write_file(m, "#version: 0.2\n", 14);
    rc = tok_load_hf(&t, v, m, err);
    CHECK(rc == PS_OK && t.n_merges == 0);
    if (rc == PS_OK)
        tok_free(&t);
}

void
test_tok(void)
{
    const char *gz = bpe_gz_path();
    if (gz)
        test_openai(gz);
    else
        fprintf(stderr, "tok: bpe_simple_vocab_16e6.txt.gz not found (set PS_SHARED_DATA): OpenAI "
                        "checks skipped\n");
    test_small();
    test_hostile_gz(gz);
    test_hostile_hf();
    tok_free(NULL);
}
