/* SPDX-License-Identifier: MIT */
/* test_sha256.c - SHA-256 against the FIPS 180-2 / NIST CAVS vectors, split updates, files. */
#include <stdlib.h>
#include <string.h>

#include "ps.h"
#include "sha256.h"
#include "test.h"

static void
check_split(const char *msg, const char *want)
{
    size_t n = strlen(msg);
    /* every split point, and byte-by-byte */
    for (size_t cut = 0; cut <= n; cut++) {
        Sha256 s;
        uint8_t dig[32];
        char hex[65];
        sha256_init(&s);
        sha256_update(&s, msg, cut);
        sha256_update(&s, msg + cut, n - cut);
        sha256_final(&s, dig);
        sha256_hex(dig, hex);
        CHECK_STR(hex, want);
    }
    Sha256 s;
    uint8_t dig[32];
    char hex[65];
    sha256_init(&s);
    for (size_t i = 0; i < n; i++)
        sha256_update(&s, msg + i, 1);
    sha256_final(&s, dig);
    sha256_hex(dig, hex);
    CHECK_STR(hex, want);
}

void
test_sha256(void)
{
    char hex[65];
    sha256_mem_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_mem_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_split("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check_split("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                "klmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* NIST CAVS short messages: lengths 55, 56, 63 and 64 bytes straddle the padding block */
    char m[1001];
    memset(m, 'a', sizeof m);
    sha256_mem_hex(m, 55, hex);
    CHECK_STR(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    sha256_mem_hex(m, 56, hex);
    CHECK_STR(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    sha256_mem_hex(m, 64, hex);
    CHECK_STR(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    /* one million 'a' (FIPS 180-2 B.3), in pieces of 1000 */
    Sha256 s;
    uint8_t dig[32];
    sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        sha256_update(&s, m, 1000);
    sha256_final(&s, dig);
    sha256_hex(dig, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* files: the same digest as memory, size reported, missing file refused */
    const char *p = t_tmp("sha.bin");
    size_t n = 3 * (1 << 20) + 17;
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK(t_write_file(p, big, n) == 0);
    char want[65];
    sha256_mem_hex(big, n, want);
    int64_t size = 0;
    CHECK_EQ_INT(sha256_file(p, hex, &size, NULL), PS_OK);
    CHECK_STR(hex, want);
    CHECK_EQ_INT(size, (int64_t)n);
    free(big);
    char err[PS_ERRLEN] = "";
    CHECK_EQ_INT(sha256_file(t_tmp("none.bin"), hex, NULL, err), PS_EIO);
    CHECK(strstr(err, "none.bin") != NULL);
}
