/* SPDX-License-Identifier: MIT */
/*
 * run.c - the test runner: runs every registered suite, or those named on the
 * command line, prints one line per failure and ends with "N passed, N failed".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps.h"
#include "test.h"

int t_pass, t_fail;

#define SUITE(name) void test_##name(void);
#include "suites.h"
#undef SUITE

static const struct {
    const char *name;
    void (*fn)(void);
} suites[] = {
#define SUITE(name) { #name, test_##name },
#include "suites.h"
#undef SUITE
    { NULL, NULL },
};

void
t_failf(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    t_fail++;
    fflush(stdout);
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

double
t_relerr(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)ref[i];
        if (d != d)
            return INFINITY;
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

double
t_maxabs(const float *got, const float *ref, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d != d)
            return INFINITY;
        m = d > m ? d : m;
    }
    return m;
}

const char *
t_data(const char *name)
{
    static char buf[4096];
    const char *dir = getenv("PS_TEST_DATA");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/data", name);
    return buf;
}

static char tmpdir[256];          /* the run's root, removed at exit */
static const char *cur_suite = "none";

static void
rm_tmpdir(void)
{
    if (tmpdir[0] && !getenv("PS_KEEP_TMP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

/* Each suite gets its own sub-directory of the run's root, so suites cannot collide. */
const char *
t_tmpdir(void)
{
    static char dir[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/patchsae-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
        atexit(rm_tmpdir);
    }
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, cur_suite);
    mkdir(dir, 0700);
    return dir;
}

const char *
t_tmp(const char *name)
{
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 4096, "%s/%s", t_tmpdir(), name);
    return b;
}

const char *
t_shared(const char *name)
{
    static char buf[4096];
    const char *env = getenv("PS_SHARED_DATA");
    const char *dirs[] = { env ? env : "", "../shared/data", "../../shared/data",
                           "/work/shared/data" };
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        struct stat sb;
        snprintf(buf, sizeof buf, "%s/%s", dirs[i], name);
        if (dirs[i][0] && stat(buf, &sb) == 0)
            return buf;
    }
    return NULL;
}

void
t_copy_file(const char *from, const char *to)
{
    char *buf;
    size_t n;
    if (ps_read_file(from, 1 << 24, &buf, &n, NULL) != PS_OK || t_write_file(to, buf, n) != 0) {
        fprintf(stderr, "cannot copy %s to %s\n", from, to);
        exit(2);
    }
    free(buf);
}

const char *
t_class_folder(const char *name)
{
    static const char *const imgs[6] = { "img_land.png", "img_port.png", "img_square.png",
                                         "img_big.png", "img_gray.png", "img_rgba.png" };
    static char dir[512];
    char p[700];
    snprintf(dir, sizeof dir, "%s", t_tmp(name));
    mkdir(dir, 0700);
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/%s", dir, c ? "dog" : "cat");
        mkdir(p, 0700);
        for (int i = 0; i < 3; i++) {
            char from[64];
            snprintf(from, sizeof from, "clip_tiny/%s", imgs[3 * c + i]);
            snprintf(p, sizeof p, "%s/%s/%s", dir, c ? "dog" : "cat", imgs[3 * c + i]);
            t_copy_file(t_data(from), p);
        }
    }
    return dir;
}

int
t_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static unsigned rng = 2463534242u;
void t_seed(unsigned s) { rng = s ? s : 2463534242u; }
unsigned
t_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}
float t_randf(void) { return (float)((t_rand() >> 8) * (1.0 / 8388608.0) - 1.0); }

int
main(int argc, char **argv)
{
    int ran = 0;
    for (int i = 0; suites[i].name; i++) {
        int want = argc < 2;
        for (int j = 1; j < argc; j++)
            want |= !strcmp(argv[j], suites[i].name);
        if (!want)
            continue;
        int f0 = t_fail, p0 = t_pass;
        cur_suite = suites[i].name;
        suites[i].fn();
        fprintf(stderr, "  %-10s %d passed, %d failed\n", suites[i].name, t_pass - p0, t_fail - f0);
        ran++;
    }
    if (argc >= 2 && !ran) {
        fprintf(stderr, "no such suite\n");
        return 2;
    }
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail != 0;
}
