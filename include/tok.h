/* SPDX-License-Identifier: MIT */
/*
 * tok.h - the CLIP text tokenizer: OpenAI's byte-level BPE (SimpleTokenizer)
 * without ftfy. Text -> html-unescape twice, strip, collapse whitespace,
 * lowercase (Python str.lower(), all of Unicode) -> split with CLIP's
 * pre-tokenizer pattern (letters+ | one number | punctuation+ | 's 't 're 've
 * 'm 'll 'd | the two specials) -> UTF-8 bytes -> BPE over merge ranks -> ids.
 * tools/clip_tokenizer.py is the reference; tests/data/tok_cases.tsv holds its
 * answers. Details and coverage are in the comment at the top of src/tok.c.
 *
 * Usage:
 *     Tok t;
 *     if (tok_load_bpe_gz(&t, "bpe_simple_vocab_16e6.txt.gz", err) != PS_OK) ...
 *     int32_t ids[77];
 *     tok_tokenize(&t, "a photo of a cat.", 77, ids); // 49406 320 1125 539 320 2368 269 49407 0..
 *     tok_free(&t);
 *
 * Not thread-safe: tok_encode/tok_tokenize update a word cache inside the
 * Tok, so concurrent calls on one Tok need the caller's lock.
 */
#ifndef PS_TOK_H
#define PS_TOK_H

#include <stddef.h>
#include <stdint.h>

#define TOK_CTX       77         /* CLIP's context length */
#define TOK_MAX_TEXT  (1u << 20) /* longer texts (bytes) are refused (PS_EUSAGE) */
#define TOK_MAX_VOCAB (1 << 24)  /* larger vocab.json / merge lists are PS_EFORMAT */

typedef struct TokData TokData;

typedef struct Tok {
    int n_vocab;      /* ids are 0 .. n_vocab-1 */
    int n_merges;     /* merge ranks 0 .. n_merges-1 */
    int32_t sot, eot; /* ids of <|startoftext|> and <|endoftext|> (49406, 49407 for OpenAI's) */
    TokData *d;       /* private: symbols, hash tables, word cache */
} Tok;

/* OpenAI's bpe_simple_vocab_16e6.txt.gz: header line, then the first 48894 merges are used. */
int tok_load_bpe_gz(Tok *t, const char *path, char *err);
/* HF CLIPTokenizer files: vocab.json {token: id}, ids 0..n-1; merges.txt ("#version" optional). */
int tok_load_hf(Tok *t, const char *vocab_json, const char *merges_txt, char *err);
/* Frees everything and zeroes t; NULL and a zeroed Tok are no-ops. */
void tok_free(Tok *t);

int tok_vocab_size(const Tok *t);
int32_t tok_sot(const Tok *t);
int32_t tok_eot(const Tok *t);

/* Ids of text without SOT/EOT: the first min(total, max) to ids, *n = total. PS_OK, PS_EUSAGE. */
int tok_encode(const Tok *t, const char *text, int32_t *ids, int max, int *n);
/* OpenAI tokenize(truncate=True): out (ctx) = SOT ids EOT 0...; a longer text keeps ctx-2 ids. */
int tok_tokenize(const Tok *t, const char *text, int ctx, int32_t *out);
/* Debug text of ids ('</w>' -> ' ', bytes restored, unknown ids skipped); snprintf-style return. */
size_t tok_decode(const Tok *t, const int32_t *ids, int n, char *out, size_t cap);
/* Writes dir/vocab.json and dir/merges.txt (HF CLIPTokenizer layout) via temporary names. */
int tok_save_hf(const Tok *t, const char *dir, char *err);

#endif
