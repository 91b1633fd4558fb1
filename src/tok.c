/* SPDX-License-Identifier: MIT */
/*
 * tok.c - the CLIP text tokenizer (OpenAI's SimpleTokenizer behaviour, no ftfy).
 * Prompts go through it before the text encoder; its ids must equal those of
 * tools/clip_tokenizer.py, whose answers tests/data/tok_cases.tsv holds.
 *
 * Pipeline for one text (Python names of the reference in brackets):
 *   1. UTF-8 -> code points. An invalid byte becomes the pseudo code point
 *      0x110000 + byte: class "other", no case, written back as that byte
 *      (Python never sees such text; this keeps the C side total).
 *   2. html.unescape twice: numeric references (decimal, hex; Windows-1252
 *      remap of 0x80-0x9f, U+FFFD for surrogates / > U+10FFFF, nothing for
 *      html's invalid code points) and all 2231 named references of HTML5,
 *      with the legacy semicolon-less longest-prefix rule, as Python 3.11 does.
 *   3. str.strip(); re.sub(r'\s+', ' '); str.strip() (isspace also strips
 *      U+001C..U+001F, which regex's \s does not match).
 *   4. str.lower(): the full one-to-one mapping table, U+0130 -> "i\u0307",
 *      and U+03A3 -> final sigma U+03C2 in Python's Final_Sigma context.
 *   5. The pre-tokenizer regex (regex module, IGNORECASE), by hand:
 *      <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd |
 *      [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+, leftmost, alternatives in that
 *      order, whitespace skipped. IGNORECASE matters after lowercasing only
 *      for U+017F (long s), which matches 's', and for U+0345, which then
 *      matches no alternative and is dropped.
 *   6. Each piece's UTF-8 bytes -> GPT-2 byte symbols, '</w>' on the last;
 *      a piece equal to a special token is that token.
 *   7. BPE: repeatedly take the lowest-ranked adjacent pair present and merge
 *      all its occurrences left to right (OpenAI's loop). Done with a heap of
 *      (rank, position) so that hostile 1 MB words stay O(n log n): all
 *      entries of the lowest rank are taken out first, so a lower-ranked pair
 *      created by this round waits for the next one, as in the Python loop.
 *   8. Symbols -> ids; a symbol missing from a (custom) vocab -> eot, the unk
 *      of HF's CLIPTokenizer. Words of up to 64 bytes are cached (32768 of
 *      them; the cache is emptied when full).
 *
 * Unicode coverage: every code point, as Python 3.11.2 (unicodedata 14.0.0)
 * and regex 2.5.123 classify and lowercase it; src/tok_tables.h is generated
 * from them by tools/gen_tok_tables.py and the process locale is never used.
 * Checked against tools/clip_tokenizer.py at development time on all
 * 1,112,063 code points (each in "A c Σ c 1 ' c"), on every HTML5 entity and
 * on random mixes; tests/data/tok_cases.tsv keeps Latin-1, Latin Extended,
 * Greek, Cyrillic, Armenian, Hebrew, Arabic, Devanagari, Thai, Hangul, CJK,
 * emoji, number categories and entity cases.
 * Not done: ftfy.fix_text (no NFC, no quote uncurling, no mojibake repair).
 */
#include "tok.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "ps.h"
#include "tok_tables.h"

#define N_OPENAI_MERGES (49152 - 256 - 2)
#define MAX_FILE        (64u << 20) /* merges / vocab files larger than this are refused */
#define PSEUDO          0x110000u   /* 0x110000 + byte: an invalid UTF-8 byte */
#define CACHE_SLOTS     (1 << 16)
#define CACHE_MAX       (1 << 15) /* entries; the cache is emptied when full */
#define CACHE_KEY_MAX   64        /* longer words are not cached */

static const char SOT_STR[] = "<|startoftext|>";
static const char EOT_STR[] = "<|endoftext|>";

typedef struct CacheSlot {
    uint64_t h;
    uint32_t koff, klen, ioff, nid; /* klen 0 = empty */
} CacheSlot;

struct TokData {
    char *pool; /* (pool_len) symbol strings, each NUL-terminated */
    size_t pool_len, pool_cap;
    uint32_t *sym_off; /* (n_sym) offset of each symbol in pool */
    uint32_t *sym_len; /* (n_sym) its length in bytes */
    int32_t *sym_id;   /* (n_sym) vocab id, or -1 */
    int n_sym, sym_cap;
    int32_t *str_ht; /* (str_mask+1) symbol hash slots, -1 empty */
    uint32_t str_mask;
    int32_t *id_sym; /* (n_vocab) symbol of each id */
    int32_t *merge;  /* (n_merges, 3) symbols a, b, ab in rank order */
    int merge_cap;
    int32_t *pair_ht; /* (pair_mask+1) merge rank of a pair, -1 empty */
    uint32_t pair_mask;
    int32_t byte_sym[2][256]; /* symbol of byte b alone, and with '</w>' */
    /* word cache (mutated through const Tok *: see tok.h) */
    CacheSlot *cache; /* (CACHE_SLOTS) */
    int cache_n;
    unsigned char *ckey; /* (ckey_len) cached words */
    size_t ckey_len, ckey_cap;
    int32_t *cid; /* (cid_len) their ids */
    size_t cid_len, cid_cap;
    /* BPE scratch, grown to the longest word seen */
    int32_t *w_sym, *w_next, *w_prev; /* (w_cap) */
    uint64_t *heap, *round;           /* (3 * w_cap) */
    size_t w_cap;
};

/* ---- growable arrays ---------------------------------------------------- */

/* Makes *p hold at least need elements of size elem; 0, or -1 when out of memory. */
static int
grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16, bytes;
    while (nc < need)
        nc *= 2;
    if (ps_mul(nc, elem, &bytes))
        return -1;
    void *np = realloc(*p, bytes);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

/* ---- Unicode ------------------------------------------------------------ */

static int
prop(uint32_t c)
{
    if (c >= PSEUDO)
        return TOK_CLS_O;
    int lo = 0, hi = TOK_NPROP - 1;
    while (lo < hi) { /* last range start <= c */
        int mid = (lo + hi + 1) / 2;
        if (tok_prop_start[mid] <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return tok_prop_val[lo];
}

static int
cls(uint32_t c)
{
    if (c < 0x80) { /* fast path, same answers as the table */
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return TOK_CLS_L;
        if (c >= '0' && c <= '9')
            return TOK_CLS_N;
        if (c == ' ' || (c >= 9 && c <= 13))
            return TOK_CLS_W;
        return TOK_CLS_O;
    }
    return prop(c) & TOK_CLS_MASK;
}

static uint32_t
lower1(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    int lo = 0, hi = TOK_NLOWER - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (tok_lower[mid][0] == c)
            return tok_lower[mid][1];
        if (tok_lower[mid][0] < c)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return c;
}

/* Decodes the code point at s[i] (i < n) into *c; returns its length. Strict UTF-8: an
 * invalid byte gives PSEUDO + byte and length 1. */
static size_t
utf8_next(const unsigned char *s, size_t n, size_t i, uint32_t *c)
{
    unsigned b = s[i];
    size_t len = 0;
    uint32_t v = 0, min = 0;
    if (b < 0x80) {
        *c = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF)
        len = 2, v = b & 0x1F, min = 0x80;
    else if (b >= 0xE0 && b <= 0xEF)
        len = 3, v = b & 0x0F, min = 0x800;
    else if (b >= 0xF0 && b <= 0xF4)
        len = 4, v = b & 0x07, min = 0x10000;
    int ok = len > 0 && len <= n - i;
    for (size_t k = 1; ok && k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            ok = 0;
        else
            v = (v << 6) | (s[i + k] & 0x3F);
    }
    if (!ok || v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *c = PSEUDO + b;
        return 1;
    }
    *c = v;
    return len;
}

/* Decodes s[0..n) into cp (n entries suffice); returns the count. */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t m = 0;
    for (size_t i = 0; i < n;)
        i += utf8_next(s, n, i, &cp[m++]);
    return m;
}

/* Writes the UTF-8 of c (a pseudo code point gives its byte); returns the length (<= 4). */
static int
utf8_put(uint32_t c, unsigned char *o)
{
    if (c >= PSEUDO) {
        o[0] = (unsigned char)(c - PSEUDO);
        return 1;
    }
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (unsigned char)(0xC0 | (c >> 6));
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18));
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* 1 if s[0..n) is valid UTF-8 without NUL. */
static int
utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += utf8_next((const unsigned char *)s, n, i, &c);
        if (c == 0 || c >= PSEUDO)
            return 0;
    }
    return 1;
}

/* GPT-2's byte table: printable Latin-1 bytes stand for themselves, the 68 others for U+0100... */
static int
byte_kept(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void
byte_table(uint32_t map[256])
{
    uint32_t n = 0;
    for (int b = 0; b < 256; b++)
        map[b] = byte_kept(b) ? (uint32_t)b : 256 + n++;
}

/* ---- text cleaning ------------------------------------------------------ */

static int
is_digit(uint32_t c)
{
    return c >= '0' && c <= '9';
}

static int
hex_val(uint32_t c)
{
    if (is_digit(c))
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

static int
html_cmp(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

/* Value of the named reference s[0..n) (ASCII, maybe with ';'), or NULL. */
static const char *
html_find(const uint32_t *s, size_t n)
{
    char name[40];
    if (n >= sizeof name)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x80)
            return NULL;
        name[i] = (char)s[i];
    }
    name[n] = 0;
    const char *e = bsearch(name, tok_html, TOK_NHTML, sizeof tok_html[0], html_cmp);
    return e ? tok_html[(size_t)(e - (const char *)tok_html) / sizeof tok_html[0]].value : NULL;
}

static size_t
put_utf8_str(const char *v, uint32_t *dst)
{
    return utf8_decode((const unsigned char *)v, strlen(v), dst);
}

/* The character a numeric reference &#num; stands for (html._replace_charref); 0 = nothing. */
static uint32_t
charref(uint32_t num)
{
    for (int i = 0; i < TOK_NBADREF; i++)
        if (tok_badref[i][0] == num)
            return tok_badref[i][1];
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF)
        return 0xFFFD;
    for (int i = 0; i < TOK_NBADCP; i++)
        if (num >= tok_badcp[i][0] && num <= tok_badcp[i][1])
            return 0;
    return num;
}

/* html.unescape of src[0..n) into dst (n entries suffice: nothing grows); returns the count. */
static size_t
unescape(const uint32_t *src, size_t n, uint32_t *dst)
{
    size_t o = 0, i = 0;
    while (i < n) {
        if (src[i] != '&') {
            dst[o++] = src[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && src[j] == '#') {
            size_t k = j + 1;
            int hex =
                k < n && (src[k] == 'x' || src[k] == 'X') && k + 1 < n && hex_val(src[k + 1]) >= 0;
            if (hex)
                k++;
            if (k < n && (hex || is_digit(src[k]))) {
                uint32_t num = 0;
                while (k < n && (hex ? hex_val(src[k]) >= 0 : is_digit(src[k]))) {
                    uint32_t d = hex ? (uint32_t)hex_val(src[k]) : src[k] - '0';
                    num = num > 0x10FFFF ? num : num * (hex ? 16 : 10) + d;
                    k++;
                }
                if (k < n && src[k] == ';')
                    k++;
                uint32_t c = charref(num);
                if (c)
                    dst[o++] = c;
                i = k;
                continue;
            }
            dst[o++] = src[i++]; /* "&#" without digits: no reference */
            continue;
        }
        size_t k = j;
        while (k < n && k - j < 32 && src[k] != '\t' && src[k] != '\n' && src[k] != '\f' &&
               src[k] != ' ' && src[k] != '<' && src[k] != '&' && src[k] != '#' && src[k] != ';')
            k++;
        if (k == j) {
            dst[o++] = src[i++];
            continue;
        }
        if (k < n && src[k] == ';')
            k++;
        size_t len = k - j; /* the name s = src[j..k) */
        const char *v = html_find(src + j, len);
        size_t used = len; /* else the longest prefix of >= 2 characters that is a name */
        for (size_t x = len - 1; !v && x >= 2; x--)
            if ((v = html_find(src + j, x)))
                used = x;
        if (v) {
            o += put_utf8_str(v, dst + o);
            for (size_t r = j + used; r < k; r++)
                dst[o++] = src[r];
        } else {
            for (size_t r = i; r < k; r++)
                dst[o++] = src[r];
        }
        i = k;
    }
    return o;
}

/*
 * strip(), re.sub(r'\s+', ' '), strip() in place; returns the new length. The
 * first strip is implied by the last (what it removes stays strippable after
 * the substitution), so only the last is done.
 */
static size_t
squeeze(uint32_t *a, size_t n)
{
    size_t o = 0;
    int in_ws = 0;
    for (size_t i = 0; i < n; i++) {
        int ws = cls(a[i]) == TOK_CLS_W;
        if (!ws)
            a[o++] = a[i];
        else if (!in_ws)
            a[o++] = ' ';
        in_ws = ws;
    }
    size_t lo = 0, hi = o;
    while (lo < hi && (prop(a[lo]) & TOK_F_PYSPACE))
        lo++;
    while (hi > lo && (prop(a[hi - 1]) & TOK_F_PYSPACE))
        hi--;
    memmove(a, a + lo, (hi - lo) * sizeof *a);
    return hi - lo;
}

/* Python's Final_Sigma test for the capital sigma at a[i]. */
static int
final_sigma(const uint32_t *a, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && (prop(a[j - 1]) & TOK_F_IGNORABLE))
        j--;
    if (j == 0 || !(prop(a[j - 1]) & TOK_F_CASED))
        return 0;
    for (j = i + 1; j < n && (prop(a[j]) & TOK_F_IGNORABLE); j++)
        ;
    return j == n || !(prop(a[j]) & TOK_F_CASED);
}

/* str.lower() of a[0..n) into dst (2n entries suffice); returns the count. */
static size_t
lower(const uint32_t *a, size_t n, uint32_t *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] == 0x130) {
            dst[o++] = 'i';
            dst[o++] = 0x307;
        } else if (a[i] == 0x3A3) {
            dst[o++] = final_sigma(a, n, i) ? 0x3C2 : 0x3C3;
        } else {
            dst[o++] = lower1(a[i]);
        }
    }
    return o;
}

/* Steps 1-4: the cleaned, lowercased code points of text (malloc'd, *m of them). */
static uint32_t *
clean(const char *text, size_t *m)
{
    size_t n = strlen(text);
    uint32_t *a = xmalloc((n + 1) * sizeof *a), *b = xmalloc((2 * n + 1) * sizeof *b);
    size_t k = utf8_decode((const unsigned char *)text, n, a);
    k = unescape(a, k, b);
    k = unescape(b, k, a);
    k = squeeze(a, k);
    k = lower(a, k, b);
    free(a);
    *m = k;
    return b;
}

/* ---- symbols and merges ------------------------------------------------- */

static uint64_t
hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static uint64_t
hash_pair(int32_t a, int32_t b)
{
    uint64_t h = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    h ^= h >> 33; /* murmur3 finaliser */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static const char *
sym_str(const TokData *d, int32_t s)
{
    return d->pool + d->sym_off[s];
}

/* The symbol spelled s[0..n), or -1. */
static int32_t
sym_find(const TokData *d, const char *s, size_t n)
{
    if (!d->str_ht)
        return -1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & d->str_mask;; i = (i + 1) & d->str_mask) {
        int32_t x = d->str_ht[i];
        if (x < 0)
            return -1;
        if (d->sym_len[x] == n && !memcmp(sym_str(d, x), s, n))
            return x;
    }
}

static void
str_ht_put(TokData *d, int32_t s)
{
    uint32_t i = (uint32_t)hash_bytes(sym_str(d, s), d->sym_len[s]) & d->str_mask;
    while (d->str_ht[i] >= 0)
        i = (i + 1) & d->str_mask;
    d->str_ht[i] = s;
}

/* The symbol spelled s[0..n), added (with id -1) when new; -1 when out of memory. */
static int32_t
intern(TokData *d, const char *s, size_t n)
{
    int32_t x = sym_find(d, s, n);
    if (x >= 0)
        return x;
    if ((uint32_t)d->n_sym + 1 > d->str_mask / 2) {
        uint32_t nm = d->str_mask ? d->str_mask * 2 + 1 : 1023;
        int32_t *ht = malloc(((size_t)nm + 1) * sizeof *ht);
        if (!ht)
            return -1;
        free(d->str_ht);
        d->str_ht = ht;
        d->str_mask = nm;
        memset(ht, 0xff, ((size_t)nm + 1) * sizeof *ht);
        for (int32_t i = 0; i < d->n_sym; i++)
            str_ht_put(d, i);
    }
    size_t cap = (size_t)d->sym_cap, c2 = cap, c3 = cap;
    if (grow((void **)&d->sym_off, &cap, (size_t)d->n_sym + 1, sizeof *d->sym_off) ||
        grow((void **)&d->sym_len, &c2, (size_t)d->n_sym + 1, sizeof *d->sym_len) ||
        grow((void **)&d->sym_id, &c3, (size_t)d->n_sym + 1, sizeof *d->sym_id) ||
        grow((void **)&d->pool, &d->pool_cap, d->pool_len + n + 1, 1) ||
        d->pool_len + n + 1 > UINT32_MAX)
        return -1;
    d->sym_cap = (int)MIN(cap, MIN(c2, c3));
    x = d->n_sym++;
    d->sym_off[x] = (uint32_t)d->pool_len;
    d->sym_len[x] = (uint32_t)n;
    d->sym_id[x] = -1;
    memcpy(d->pool + d->pool_len, s, n);
    d->pool[d->pool_len + n] = 0;
    d->pool_len += n + 1;
    str_ht_put(d, x);
    return x;
}

/* Merge rank of the pair (a, b), or -1. */
static int32_t
pair_rank(const TokData *d, int32_t a, int32_t b)
{
    for (uint32_t i = (uint32_t)hash_pair(a, b) & d->pair_mask;; i = (i + 1) & d->pair_mask) {
        int32_t r = d->pair_ht[i];
        if (r < 0 || (d->merge[3 * r] == a && d->merge[3 * r + 1] == b))
            return r;
    }
}

/* Appends the merge of a[0..na) and b[0..nb) (next rank); -1 when out of memory. */
static int
add_merge(Tok *t, const char *a, size_t na, const char *b, size_t nb)
{
    TokData *d = t->d;
    char buf[512], *ab = na + nb < sizeof buf ? buf : malloc(na + nb);
    if (!ab)
        return -1;
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    size_t cap = (size_t)d->merge_cap;
    int32_t sa = intern(d, a, na), sb = intern(d, b, nb), sab = intern(d, ab, na + nb);
    if (ab != buf)
        free(ab);
    if (sa < 0 || sb < 0 || sab < 0 ||
        grow((void **)&d->merge, &cap, 3 * ((size_t)t->n_merges + 1), sizeof *d->merge))
        return -1;
    d->merge_cap = (int)cap;
    d->merge[3 * t->n_merges] = sa;
    d->merge[3 * t->n_merges + 1] = sb;
    d->merge[3 * t->n_merges + 2] = sab;
    t->n_merges++;
    return 0;
}

/* Sets the symbol and id table entry for id; -1 when out of memory. */
static int
set_id(Tok *t, const char *s, size_t n, int32_t id)
{
    int32_t x = intern(t->d, s, n);
    if (x < 0)
        return -1;
    t->d->sym_id[x] = id; /* a repeated spelling keeps the last id, as Python's dict(zip()) */
    t->d->id_sym[id] = x;
    return 0;
}

/* Common end of both loaders: byte symbols, the pair table, the specials. */
static int
finish(Tok *t, const char *path, char *err)
{
    TokData *d = t->d;
    uint32_t map[256];
    byte_table(map);
    for (int b = 0; b < 256; b++) {
        unsigned char s[8];
        int n = utf8_put(map[b], s);
        memcpy(s + n, "</w>", 4);
        d->byte_sym[0][b] = intern(d, (const char *)s, (size_t)n);
        d->byte_sym[1][b] = intern(d, (const char *)s, (size_t)n + 4);
        if (d->byte_sym[0][b] < 0 || d->byte_sym[1][b] < 0)
            return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    }
    uint32_t mask = 15;
    while (mask / 2 < (uint32_t)t->n_merges)
        mask = mask * 2 + 1;
    d->pair_ht = malloc(((size_t)mask + 1) * sizeof *d->pair_ht);
    if (!d->pair_ht)
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    memset(d->pair_ht, 0xff, ((size_t)mask + 1) * sizeof *d->pair_ht);
    d->pair_mask = mask;
    for (int32_t r = 0; r < t->n_merges; r++) {
        uint32_t i = (uint32_t)hash_pair(d->merge[3 * r], d->merge[3 * r + 1]) & mask;
        for (;; i = (i + 1) & mask) {
            int32_t q = d->pair_ht[i];
            if (q < 0) {
                d->pair_ht[i] = r;
                break;
            }
            if (d->merge[3 * q] == d->merge[3 * r] && d->merge[3 * q + 1] == d->merge[3 * r + 1])
                break; /* a repeated merge keeps its first rank */
        }
    }
    int32_t s = sym_find(d, SOT_STR, strlen(SOT_STR)), e = sym_find(d, EOT_STR, strlen(EOT_STR));
    if (s < 0 || d->sym_id[s] < 0 || e < 0 || d->sym_id[e] < 0)
        return ps_seterr(err, PS_EFORMAT, "%s: vocabulary has no %s or no %s", path, SOT_STR,
                         EOT_STR);
    t->sot = d->sym_id[s];
    t->eot = d->sym_id[e];
    d->cache = calloc(CACHE_SLOTS, sizeof *d->cache);
    if (!d->cache)
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    return PS_OK;
}

/* Splits line [s, e) at ASCII blanks into exactly two fields; 0 on success. */
static int
split2(const char *s, const char *e, const char **a, size_t *na, const char **b, size_t *nb)
{
    const char *f[3];
    size_t nf[3];
    int k = 0;
    while (s < e) {
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\v' || *s == '\f'))
            s++;
        if (s == e)
            break;
        if (k == 2)
            return -1;
        f[k] = s;
        while (s < e && !(*s == ' ' || *s == '\t' || *s == '\r' || *s == '\v' || *s == '\f'))
            s++;
        nf[k] = (size_t)(s - f[k]);
        k++;
    }
    if (k != 2)
        return -1;
    *a = f[0], *na = nf[0], *b = f[1], *nb = nf[1];
    return 0;
}

static int
start(Tok *t)
{
    memset(t, 0, sizeof *t);
    t->d = calloc(1, sizeof *t->d);
    return t->d ? 0 : -1;
}

static int
fail(Tok *t, int rc)
{
    tok_free(t);
    return rc;
}

/*
 * Loads OpenAI's bpe_simple_vocab_16e6.txt.gz: the whole gzip stream must be
 * intact; line 0 is a header (ignored), lines 1..48894 are the merges used
 * ("a b"). The vocab is built as OpenAI does: 256 byte symbols in byte-table
 * order, the same with '</w>', the merges joined, <|startoftext|>,
 * <|endoftext|> (49408 ids). Errors: PS_EIO (open/read), PS_EFORMAT (not gzip,
 * truncated, fewer merges, a line not of two UTF-8 fields), PS_ENOMEM. On
 * failure t is zeroed; on success free it with tok_free.
 */
int
tok_load_bpe_gz(Tok *t, const char *path, char *err)
{
    if (start(t))
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return fail(
            t, ps_seterr(err, PS_EIO, "%s: %s", path, errno ? strerror(errno) : "cannot open"));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = PS_OK;
    for (;;) {
        if (grow((void **)&buf, &cap, len + (1 << 16) + 1, 1)) {
            rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
            break;
        }
        int r = gzread(g, buf + len, 1 << 16);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(g, &zerr);
            rc = ps_seterr(err, zerr == Z_ERRNO ? PS_EIO : PS_EFORMAT, "%s: %s", path,
                           zerr == Z_ERRNO ? strerror(errno) : m);
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > MAX_FILE) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: more than %u bytes uncompressed", path, MAX_FILE);
            break;
        }
        if (gzdirect(g)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: not gzip data", path);
            break;
        }
    }
    if (rc == PS_OK && len == 0)
        rc = ps_seterr(err, PS_EFORMAT, "%s: empty", path);
    int zrc = gzclose_r(g);
    if (rc == PS_OK && zrc != Z_OK)
        rc = ps_seterr(err, PS_EFORMAT, "%s: corrupt or truncated gzip data", path);
    if (rc != PS_OK) {
        free(buf);
        return fail(t, rc);
    }
    buf[len] = 0;

    TokData *d = t->d;
    t->n_vocab = 512 + N_OPENAI_MERGES + 2;
    d->id_sym = malloc((size_t)t->n_vocab * sizeof *d->id_sym);
    if (!d->id_sym) {
        free(buf);
        return fail(t, ps_seterr(err, PS_ENOMEM, "%s: out of memory", path));
    }
    uint32_t map[256];
    byte_table(map);
    int order[256], k = 0; /* bytes in vocab order: by mapped code point */
    for (int b = 0; b < 256; b++)
        if (byte_kept(b))
            order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (!byte_kept(b))
            order[k++] = b;
    for (int w = 0; w < 2 && rc == PS_OK; w++) {
        for (int i = 0; i < 256; i++) {
            char s[8];
            int n = utf8_put(map[order[i]], (unsigned char *)s);
            memcpy(s + n, "</w>", 4);
            if (set_id(t, s, (size_t)n + (w ? 4 : 0), w * 256 + i)) {
                rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
                break;
            }
        }
    }
    const char *p = buf, *end = buf + len;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    p = nl ? nl + 1 : end;
    for (int line = 1; rc == PS_OK && line <= N_OPENAI_MERGES; line++) {
        if (p >= end) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: %d merges, expected at least %d", path, line - 1,
                           N_OPENAI_MERGES);
            break;
        }
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end, *a, *b;
        size_t na, nb;
        if (split2(p, e, &a, &na, &b, &nb) || !utf8_valid(a, na) || !utf8_valid(b, nb)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: line %d: expected two UTF-8 symbols", path,
                           line + 1);
            break;
        }
        if (add_merge(t, a, na, b, nb)) {
            rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
            break;
        }
        int32_t ab = d->merge[3 * (t->n_merges - 1) + 2];
        d->sym_id[ab] = 512 + line - 1;
        d->id_sym[512 + line - 1] = ab;
        p = e + (e < end);
    }
    free(buf);
    if (rc == PS_OK && (set_id(t, SOT_STR, strlen(SOT_STR), t->n_vocab - 2) ||
                        set_id(t, EOT_STR, strlen(EOT_STR), t->n_vocab - 1)))
        rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    if (rc == PS_OK)
        rc = finish(t, path, err);
    return rc == PS_OK ? rc : fail(t, rc);
}

/*
 * Loads HF CLIPTokenizer files. vocab.json: a JSON object {token: id} whose
 * ids are exactly 0..n-1 (n <= TOK_MAX_VOCAB), containing <|startoftext|> and
 * <|endoftext|>. merges.txt: optional first line "#version...", then one
 * "a b" merge a line in rank order (empty lines skipped, '\r' tolerated).
 * All merges are used (HF's slow tokenizer keeps the first 48894: the same for
 * CLIP's files). Errors name the file and, for merges, the line: PS_EIO,
 * PS_EFORMAT, PS_ENOMEM. On failure t is zeroed.
 */
int
tok_load_hf(Tok *t, const char *vocab_json, const char *merges_txt, char *err)
{
    if (start(t))
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", vocab_json);
    char *buf;
    size_t len;
    int rc = ps_read_file(vocab_json, MAX_FILE, &buf, &len, err);
    if (rc != PS_OK)
        return fail(t, rc);
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root)
        return fail(
            t, ps_seterr(err, PS_EFORMAT, "%s: line %d: %s", vocab_json, jerr.line, jerr.text));
    size_t n = json_is_object(root) ? json_object_size(root) : 0;
    if (!json_is_object(root) || n < 2 || n > TOK_MAX_VOCAB) {
        json_decref(root);
        return fail(t, ps_seterr(err, PS_EFORMAT, "%s: expected an object of 2..%d tokens",
                                 vocab_json, TOK_MAX_VOCAB));
    }
    TokData *d = t->d;
    t->n_vocab = (int)n;
    d->id_sym = malloc(n * sizeof *d->id_sym);
    if (!d->id_sym) {
        json_decref(root);
        return fail(t, ps_seterr(err, PS_ENOMEM, "%s: out of memory", vocab_json));
    }
    memset(d->id_sym, 0xff, n * sizeof *d->id_sym);
    const char *key;
    json_t *val;
    json_object_foreach (root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        size_t kl = strlen(key);
        if (id < 0 || (size_t)id >= n || d->id_sym[id] >= 0 || kl == 0 || !utf8_valid(key, kl)) {
            rc = ps_seterr(err, PS_EFORMAT,
                           "%s: token \"%.60s\": id must be a unique integer in 0..%zu", vocab_json,
                           key, n - 1);
            break;
        }
        if (set_id(t, key, kl, (int32_t)id)) {
            rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory", vocab_json);
            break;
        }
    }
    json_decref(root);
    if (rc != PS_OK)
        return fail(t, rc);

    if ((rc = ps_read_file(merges_txt, MAX_FILE, &buf, &len, err)) != PS_OK)
        return fail(t, rc);
    const char *p = buf, *end = buf + len;
    for (int line = 1; rc == PS_OK && p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *a, *b;
        size_t na, nb;
        const char *next = e + (e < end);
        if (e > p && e[-1] == '\r')
            e--;
        if (e == p || (line == 1 && e - p >= 8 && !memcmp(p, "#version", 8))) {
            p = next;
            continue;
        }
        if (split2(p, e, &a, &na, &b, &nb) || !utf8_valid(a, na) || !utf8_valid(b, nb)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: line %d: expected two UTF-8 symbols", merges_txt,
                           line);
        } else if (t->n_merges >= TOK_MAX_VOCAB) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: more than %d merges", merges_txt, TOK_MAX_VOCAB);
        } else if (add_merge(t, a, na, b, nb)) {
            rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory", merges_txt);
        }
        p = next;
    }
    free(buf);
    if (rc == PS_OK)
        rc = finish(t, vocab_json, err);
    return rc == PS_OK ? rc : fail(t, rc);
}

/* Frees everything the loaders allocated and zeroes t. NULL and zeroed Toks are fine. */
void
tok_free(Tok *t)
{
    if (!t)
        return;
    TokData *d = t->d;
    if (d) {
        free(d->pool);
        free(d->sym_off);
        free(d->sym_len);
        free(d->sym_id);
        free(d->str_ht);
        free(d->id_sym);
        free(d->merge);
        free(d->pair_ht);
        free(d->cache);
        free(d->ckey);
        free(d->cid);
        free(d->w_sym);
        free(d->w_next);
        free(d->w_prev);
        free(d->heap);
        free(d->round);
        free(d);
    }
    memset(t, 0, sizeof *t);
}

int
tok_vocab_size(const Tok *t)
{
    return t->n_vocab;
}

int32_t
tok_sot(const Tok *t)
{
    return t->sot;
}

int32_t
tok_eot(const Tok *t)
{
    return t->eot;
}

/* ---- BPE ---------------------------------------------------------------- */

static void
heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t
heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = v;
    return top;
}

static void
push_pair(TokData *d, size_t *nh, int32_t pos)
{
    int32_t nx = d->w_next[pos];
    if (nx < 0)
        return;
    int32_t r = pair_rank(d, d->w_sym[pos], d->w_sym[nx]);
    if (r >= 0)
        heap_push(d->heap, nh, (uint64_t)r << 32 | (uint32_t)pos);
}

/* BPE of the byte word p[0..n) (n >= 1); the ids go to d->w_sym[0..return). */
static size_t
bpe(TokData *d, int32_t unk, const unsigned char *p, size_t n)
{
    if (n > d->w_cap) {
        size_t c = n;
        d->w_sym = xrealloc(d->w_sym, c * sizeof *d->w_sym);
        d->w_next = xrealloc(d->w_next, c * sizeof *d->w_next);
        d->w_prev = xrealloc(d->w_prev, c * sizeof *d->w_prev);
        d->heap = xrealloc(d->heap, 3 * c * sizeof *d->heap);
        d->round = xrealloc(d->round, 3 * c * sizeof *d->round);
        d->w_cap = c;
    }
    int32_t *sym = d->w_sym, *next = d->w_next, *prev = d->w_prev;
    for (size_t i = 0; i < n; i++) {
        sym[i] = d->byte_sym[i == n - 1][p[i]];
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(d, &nh, (int32_t)i);
    while (nh > 0) {
        uint32_t r = (uint32_t)(d->heap[0] >> 32);
        size_t nr = 0; /* all entries of rank r, in position order */
        while (nh > 0 && (uint32_t)(d->heap[0] >> 32) == r)
            d->round[nr++] = heap_pop(d->heap, &nh);
        for (size_t k = 0; k < nr; k++) {
            int32_t pos = (int32_t)(uint32_t)d->round[k], nx = next[pos];
            if (sym[pos] < 0 || nx < 0 || pair_rank(d, sym[pos], sym[nx]) != (int32_t)r)
                continue; /* stale: this pair was consumed or changed */
            sym[pos] = d->merge[3 * r + 2];
            sym[nx] = -1;
            next[pos] = next[nx];
            if (next[nx] >= 0)
                prev[next[nx]] = pos;
            if (prev[pos] >= 0)
                push_pair(d, &nh, prev[pos]);
            push_pair(d, &nh, pos);
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) {
        int32_t id = d->sym_id[sym[i]];
        sym[m++] = id >= 0 ? id : unk; /* m <= i: in place is safe */
    }
    return m;
}

/* The ids of one piece of bytes; *ids points into the cache or the scratch. */
static size_t
word_ids(const Tok *t, const unsigned char *p, size_t n, const int32_t **ids)
{
    TokData *d = t->d;
    uint64_t h = 0;
    uint32_t slot = 0;
    if (n <= CACHE_KEY_MAX) {
        h = hash_bytes(p, n);
        for (slot = (uint32_t)h & (CACHE_SLOTS - 1);; slot = (slot + 1) & (CACHE_SLOTS - 1)) {
            CacheSlot *c = &d->cache[slot];
            if (c->klen == 0)
                break;
            if (c->h == h && c->klen == n && !memcmp(d->ckey + c->koff, p, n)) {
                *ids = d->cid + c->ioff;
                return c->nid;
            }
        }
    }
    size_t m = bpe(d, t->eot, p, n);
    *ids = d->w_sym;
    if (n > CACHE_KEY_MAX)
        return m;
    if (d->cache_n >= CACHE_MAX) {
        memset(d->cache, 0, CACHE_SLOTS * sizeof *d->cache);
        d->cache_n = 0;
        d->ckey_len = d->cid_len = 0;
        for (slot = (uint32_t)h & (CACHE_SLOTS - 1); d->cache[slot].klen;
             slot = (slot + 1) & (CACHE_SLOTS - 1))
            ;
    }
    if (grow((void **)&d->ckey, &d->ckey_cap, d->ckey_len + n, 1) ||
        grow((void **)&d->cid, &d->cid_cap, d->cid_len + m, sizeof *d->cid))
        return m; /* no room to cache: still correct */
    CacheSlot *c = &d->cache[slot];
    c->h = h;
    c->koff = (uint32_t)d->ckey_len;
    c->klen = (uint32_t)n;
    c->ioff = (uint32_t)d->cid_len;
    c->nid = (uint32_t)m;
    memcpy(d->ckey + d->ckey_len, p, n);
    memcpy(d->cid + d->cid_len, d->w_sym, m * sizeof *d->cid);
    d->ckey_len += n;
    d->cid_len += m;
    d->cache_n++;
    *ids = d->cid + c->ioff;
    return m;
}

/* Length of a special token at a[i] (the regex, IGNORECASE: 's' also U+017F), or 0. */
static size_t
match_special(const uint32_t *a, size_t n, size_t i)
{
    static const char *const sp[2] = {SOT_STR, EOT_STR};
    for (int k = 0; k < 2; k++) {
        size_t l = strlen(sp[k]), j = 0;
        for (; j < l && i + j < n; j++) {
            uint32_t c = a[i + j];
            if (c != (unsigned char)sp[k][j] && !(sp[k][j] == 's' && c == 0x17F))
                break;
        }
        if (j == l)
            return l;
    }
    return 0;
}

/* Length of 's 't 're 've 'm 'll 'd at a[i] (a[i] == '\''), or 0. */
static size_t
match_contraction(const uint32_t *a, size_t n, size_t i)
{
    uint32_t c1 = i + 1 < n ? a[i + 1] : 0, c2 = i + 2 < n ? a[i + 2] : 0;
    if (c1 == 's' || c1 == 0x17F || c1 == 't' || c1 == 'm' || c1 == 'd')
        return 2;
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return 3;
    return 0;
}

/*
 * Steps 5-8 on the cleaned text a[0..m): ids go to ids[0..max); returns the
 * total count, or stops at max when `stop` (enough for tok_tokenize).
 */
static size_t
encode_cps(const Tok *t, const uint32_t *a, size_t m, int32_t *ids, size_t max, int stop)
{
    unsigned char *buf = xmalloc(4 * m + 1);
    size_t total = 0;
    for (size_t i = 0; i < m && !(stop && total >= max);) {
        size_t len = 0;
        int c = cls(a[i]);
        if (a[i] == '<')
            len = match_special(a, m, i);
        else if (a[i] == '\'')
            len = match_contraction(a, m, i);
        if (len == 0) {
            if (c == TOK_CLS_L || c == TOK_CLS_O)
                for (len = 1; i + len < m && cls(a[i + len]) == c; len++)
                    ;
            else if (c == TOK_CLS_N)
                len = 1;
        }
        if (len == 0) { /* whitespace, or U+0345 */
            i++;
            continue;
        }
        size_t nb = 0;
        for (size_t k = 0; k < len; k++)
            nb += (size_t)utf8_put(a[i + k], buf + nb);
        i += len;
        int32_t special = -1;
        if (nb == strlen(SOT_STR) && !memcmp(buf, SOT_STR, nb))
            special = t->sot;
        else if (nb == strlen(EOT_STR) && !memcmp(buf, EOT_STR, nb))
            special = t->eot;
        const int32_t *w = &special;
        size_t nw = special >= 0 ? 1 : word_ids(t, buf, nb, &w);
        for (size_t k = 0; k < nw; k++, total++)
            if (total < max)
                ids[total] = w[k];
    }
    free(buf);
    return total;
}

/*
 * The ids of text (UTF-8, NUL-terminated; invalid bytes are kept as bytes)
 * without SOT/EOT. Writes the first min(total, max) ids to ids and the total
 * count to *n (so *n > max means ids was too short). PS_OK, or PS_EUSAGE for a
 * text longer than TOK_MAX_TEXT bytes (*n = 0).
 */
int
tok_encode(const Tok *t, const char *text, int32_t *ids, int max, int *n)
{
    PS_ASSERT(t && t->d && text && n && max >= 0 && (ids || max == 0));
    *n = 0;
    if (strlen(text) > TOK_MAX_TEXT)
        return PS_EUSAGE;
    size_t m;
    uint32_t *a = clean(text, &m);
    size_t total = encode_cps(t, a, m, ids, (size_t)max, 0);
    free(a);
    *n = total > INT32_MAX ? INT32_MAX : (int)total;
    return PS_OK;
}

/*
 * OpenAI's tokenize(text, context_length=ctx, truncate=True) for one text:
 * out[0..ctx) = SOT, the ids, EOT, then zeros. A text of more than ctx-2 ids
 * keeps the first ctx-2 (OpenAI cuts to ctx and sets the last to EOT: the
 * same). ctx >= 1 (ctx 1 gives [EOT], as OpenAI). PS_OK or PS_EUSAGE (text
 * longer than TOK_MAX_TEXT; out is then all zeros).
 */
int
tok_tokenize(const Tok *t, const char *text, int ctx, int32_t *out)
{
    PS_ASSERT(t && t->d && text && out && ctx >= 1);
    memset(out, 0, (size_t)ctx * sizeof *out);
    if (strlen(text) > TOK_MAX_TEXT)
        return PS_EUSAGE;
    if (ctx == 1) {
        out[0] = t->eot;
        return PS_OK;
    }
    size_t m;
    uint32_t *a = clean(text, &m);
    size_t total = encode_cps(t, a, m, out + 1, (size_t)ctx - 2, 1);
    free(a);
    size_t k = MIN(total, (size_t)ctx - 2);
    out[0] = t->sot;
    out[k + 1] = t->eot;
    return PS_OK;
}

/*
 * Debug text of ids: the symbols concatenated, '</w>' read as a space, byte
 * symbols turned back into their bytes (so the result is the cleaned,
 * lowercased text with spaces between words); ids outside the vocab are
 * skipped. Writes at most cap-1 bytes and a NUL (if cap > 0); returns the
 * full length, like snprintf.
 */
size_t
tok_decode(const Tok *t, const int32_t *ids, int n, char *out, size_t cap)
{
    uint32_t map[256];
    byte_table(map);
    unsigned char inv[68]; /* U+0100 + k -> byte */
    for (int b = 0; b < 256; b++)
        if (map[b] >= 256)
            inv[map[b] - 256] = (unsigned char)b;
    size_t o = 0;
    for (int k = 0; k < n; k++) {
        if (ids[k] < 0 || ids[k] >= t->n_vocab)
            continue;
        int32_t s = t->d->id_sym[ids[k]];
        const char *p = sym_str(t->d, s);
        size_t len = t->d->sym_len[s];
        for (size_t i = 0; i < len;) {
            if (len - i >= 4 && !memcmp(p + i, "</w>", 4)) {
                if (o + 1 < cap)
                    out[o] = ' ';
                o++;
                i += 4;
                continue;
            }
            uint32_t c;
            i += utf8_next((const unsigned char *)p, len, i, &c);
            int byte = c < 256 && byte_kept((int)c) ? (int)c
                       : c >= 256 && c < 256 + 68   ? inv[c - 256]
                                                    : -1;
            if (byte < 0)
                continue;
            if (o + 1 < cap)
                out[o] = (char)byte;
            o++;
        }
    }
    if (cap > 0)
        out[MIN(o, cap - 1)] = 0;
    return o;
}

/* Writes text to path via path.tmp and rename. */
static int
write_atomic(const char *path, const char *text, size_t n, char *err)
{
    char tmp[4096];
    int rc0 = ps_check_output(path, err);
    if (rc0)
        return rc0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ps_seterr(err, PS_EUSAGE, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return ps_seterr(err, PS_EIO, "%s: %s", tmp, strerror(errno));
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(e));
    }
    return PS_OK;
}

/*
 * Writes dir/vocab.json ({token: id} in id order, UTF-8) and dir/merges.txt
 * ("#version: 0.2", then "a b" per merge in rank order) as HF's
 * CLIPTokenizer saves them; dir must exist. Each file is written to a
 * temporary name and renamed. PS_EIO, PS_EFORMAT (two ids with one spelling),
 * PS_ENOMEM.
 */
int
tok_save_hf(const Tok *t, const char *dir, char *err)
{
    PS_ASSERT(t && t->d && dir);
    const TokData *d = t->d;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/vocab.json", dir) >= (int)sizeof path - 8)
        return ps_seterr(err, PS_EUSAGE, "%s: path too long", dir);
    json_t *o = json_object();
    if (!o)
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    for (int id = 0; id < t->n_vocab; id++) {
        const char *s = sym_str(d, d->id_sym[id]);
        if (json_object_get(o, s)) {
            json_decref(o);
            return ps_seterr(err, PS_EFORMAT, "%s: token \"%.60s\" has two ids", path, s);
        }
        if (json_object_set_new(o, s, json_integer(id))) {
            json_decref(o);
            return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
        }
    }
    char *js = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(o);
    if (!js)
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    int rc = write_atomic(path, js, strlen(js), err);
    free(js);
    if (rc != PS_OK)
        return rc;

    snprintf(path, sizeof path, "%s/merges.txt", dir);
    size_t len = 0, cap = 0;
    char *buf = NULL;
    static const char head[] = "#version: 0.2\n";
    if (grow((void **)&buf, &cap, sizeof head, 1))
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    memcpy(buf, head, sizeof head - 1);
    len = sizeof head - 1;
    for (int r = 0; r < t->n_merges; r++) {
        int32_t a = d->merge[3 * r], b = d->merge[3 * r + 1];
        size_t need = len + d->sym_len[a] + d->sym_len[b] + 2;
        if (grow((void **)&buf, &cap, need, 1)) {
            free(buf);
            return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
        }
        memcpy(buf + len, sym_str(d, a), d->sym_len[a]);
        len += d->sym_len[a];
        buf[len++] = ' ';
        memcpy(buf + len, sym_str(d, b), d->sym_len[b]);
        len += d->sym_len[b];
        buf[len++] = '\n';
    }
    rc = write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
