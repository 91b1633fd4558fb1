/* SPDX-License-Identifier: MIT */
/*
 * test.h - the whole test framework (Redis testhelp.h in spirit): CHECK macros
 * that count passes and print one "file:line: ..." line per failure, relative
 * error helpers for differential tests, and fixture paths.
 *
 * A suite is tests/test_NAME.c defining `void test_NAME(void)`; the Makefile
 * registers every such file, so adding a suite touches no shared file.
 */
#ifndef PS_TEST_H
#define PS_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

extern int t_pass, t_fail;

void t_failf(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define CHECK(c) do { if (c) t_pass++; else t_failf(__FILE__, __LINE__, "CHECK(%s) failed", #c); } while (0)
#define CHECK_MSG(c, ...) do { if (c) t_pass++; else t_failf(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ == b_) t_pass++; else t_failf(__FILE__, __LINE__, "%s = %lld, expected %s = %lld", #a, a_, #b, b_); } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (a_ && b_ && !strcmp(a_, b_)) t_pass++; \
    else t_failf(__FILE__, __LINE__, "%s = \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (double)(a), b_ = (double)(b); \
    if (fabs(a_ - b_) <= (tol)) t_pass++; \
    else t_failf(__FILE__, __LINE__, "%s = %.9g, expected %.9g (tol %g)", #a, a_, b_, (double)(tol)); } while (0)
/* Relative error ||got-ref|| / max(||ref||, tiny) over n floats. */
#define CHECK_REL(got, ref, n, tol) do { double r_ = t_relerr((got), (ref), (n)); \
    if (r_ <= (tol)) t_pass++; \
    else t_failf(__FILE__, __LINE__, "relative error of %s = %.3g > %g", #got, r_, (double)(tol)); } while (0)

double t_relerr(const float *got, const float *ref, size_t n);
double t_maxabs(const float *got, const float *ref, size_t n);

/* Path of a committed fixture: tests/data/NAME (static buffer, valid until the next call). */
const char *t_data(const char *name);
/* A fresh scratch directory for the running suite (removed at exit unless PS_KEEP_TMP). */
const char *t_tmpdir(void);
/* Path inside t_tmpdir()/SUITE/ (static rotating buffers: valid for the next 8 calls). */
const char *t_tmp(const char *name);
/*
 * Path of NAME in the shared data directory (OpenAI's BPE merges, class-name
 * lists): $PS_SHARED_DATA, ../shared/data, ../../shared/data or
 * /work/shared/data, the first that has it; NULL when none does. Static
 * buffer, valid until the next call.
 */
const char *t_shared(const char *name);
/* Copies a file (asserts on failure: fixtures are ours). */
void t_copy_file(const char *from, const char *to);
/*
 * An image folder t_tmp(name)/{cat,dog}/ holding three clip_tiny fixture
 * images each, in ImageFolder order; returns its path (static buffer).
 */
const char *t_class_folder(const char *name);
/* Writes n bytes to path; returns 0 on success. */
int t_write_file(const char *path, const void *data, size_t n);
/* Deterministic xorshift random numbers for differential tests. */
unsigned t_rand(void);
float t_randf(void); /* uniform in [-1, 1) */
void t_seed(unsigned s);

#endif
