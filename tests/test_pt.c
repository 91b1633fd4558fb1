/* SPDX-License-Identifier: MIT */
/*
 * test_pt.c - PyTorch checkpoints: real torch.save files (zip, legacy,
 * deflated) against the values PyTorch wrote beside them (pt_mixed.txt,
 * sae_weights.f32), PatchSAE and Dassl layouts, and hostile input: pickles
 * that try to run commands (and must leave no trace), broken storages,
 * recursion, memo and size bombs, truncations and random byte flips.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps.h"
#include "pt.h"
#include "test.h"

static PtFile *
load(const char *name)
{
    char err[PS_ERRLEN] = "";
    PtFile *f;
    int rc = pt_load(&f, t_data(name), err);
    CHECK_MSG(rc == PS_OK, "%s: %s", name, err);
    return rc == PS_OK ? f : NULL;
}

/* Loads a buffer expected to fail with code; the message must mention `needle`. */
static void
expect_fail(const void *buf, size_t n, int code, const char *needle, const char *what)
{
    char err[PS_ERRLEN] = "";
    PtFile *f = NULL;
    int rc = pt_load_buf(&f, buf, n, what, err);
    CHECK_MSG(rc == code, "%s: got %s (%s), expected %s", what, ps_strcode(rc), err,
              ps_strcode(code));
    CHECK(f == NULL);
    if (needle)
        CHECK_MSG(strstr(err, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err,
                  needle);
    pt_close(f);
}

static void
expect_file_fail(const char *name, int code, const char *needle)
{
    char err[PS_ERRLEN] = "";
    PtFile *f = NULL;
    int rc = pt_load(&f, t_data(name), err);
    CHECK_MSG(rc == code, "%s: got %s (%s), expected %s", name, ps_strcode(rc), err,
              ps_strcode(code));
    CHECK(f == NULL);
    if (needle)
        CHECK_MSG(strstr(err, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", name, err,
                  needle);
    CHECK_MSG(strstr(err, name) != NULL, "%s: message \"%s\" does not name the file", name, err);
}

/* ---- real files against PyTorch's values ---- */

static int
check_tensor_line(const PtObj *root, char *line, const char *file)
{
    char *bar = strchr(line, '|');
    if (!bar)
        return 0;
    *bar = 0;
    char name[256], dt[16], shp[128];
    if (sscanf(line, "%255s %15s %127s", name, dt, shp) != 3)
        return 0;
    const PtTensor *t = pt_as_tensor(pt_find(root, name));
    CHECK_MSG(t != NULL, "%s: tensor %s not found", file, name);
    if (!t)
        return 1;
    static const char *const dts[] = {"F32", "F16", "BF16", "F64", "I64",
                                      "I32", "I16", "I8",   "U8",  "BOOL"};
    CHECK_MSG(!strcmp(dts[t->dtype], dt), "%s: %s dtype %s, expected %s", file, name,
              dts[t->dtype], dt);
    int64_t shape[PT_MAX_DIM];
    int nd = 0;
    if (strcmp(shp, "-"))
        for (char *p = shp; nd < PT_MAX_DIM; nd++) {
            shape[nd] = strtoll(p, &p, 10);
            if (*p != ',') {
                nd++;
                break;
            }
            p++;
        }
    CHECK_MSG(t->nd == nd, "%s: %s rank %d, expected %d", file, name, t->nd, nd);
    for (int i = 0; i < nd && i < t->nd; i++)
        CHECK_EQ_INT(t->shape[i], shape[i]);
    const float *v;
    char err[PS_ERRLEN] = "";
    int rc = pt_tensor_f32(t, &v, err);
    CHECK_MSG(rc == PS_OK, "%s: %s: %s", file, name, err);
    if (rc)
        return 1;
    size_t i = 0;
    int bad = 0;
    for (char *p = bar + 1;; i++) {
        char *e;
        double x = strtod(p, &e);
        if (e == p)
            break;
        p = e;
        if (i >= t->numel || v[i] != (float)x)
            bad++;
    }
    CHECK_MSG(i == t->numel && !bad, "%s: %s: %zu values (%zu expected), %d differ", file, name,
              i, t->numel, bad);
    return 1;
}

static void
test_mixed_file(const char *name)
{
    PtFile *f = load(name);
    if (!f)
        return;
    const PtObj *r = pt_root(f);
    char *txt;
    size_t n;
    char err[PS_ERRLEN];
    CHECK(ps_read_file(t_data("pt_mixed.txt"), 1 << 20, &txt, &n, err) == PS_OK);
    int lines = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n"))
        lines += check_tensor_line(r, line, name);
    CHECK_EQ_INT(lines, 19);
    free(txt);

    /* the Python values around the tensors */
    CHECK_EQ_INT(pt_as_int(pt_find(r, "nested.list.1"), 0), 3);
    CHECK_STR(pt_as_str(pt_find(r, "nested.list.2")), "x");
    CHECK_NEAR(pt_as_float(pt_find(r, "nested.tuple.1"), 0), 2.5, 0);
    CHECK(pt_find(r, "nested.tuple.2") && pt_find(r, "nested.tuple.2")->type == PT_NONE);
    const PtObj *o = pt_find(r, "nested.tuple.3");
    CHECK(o && o->type == PT_BOOL && o->u.i == 1);
    o = pt_find(r, "nested.tuple.4");
    CHECK(o && o->type == PT_BYTES && o->u.str.len == 3 && !memcmp(o->u.str.s, "\0\1\xff", 3));
    CHECK_EQ_INT(pt_as_int(pt_find(r, "nested.odict.k"), 0), -1);
    CHECK_STR(pt_as_str(pt_find(r, "nested.odict.7")), "seven");
    o = pt_find(r, "nested.set");
    CHECK(o && o->type == PT_SET && o->u.seq.n == 2);
    o = pt_find(r, "nested.frozen");
    CHECK(o && o->type == PT_SET && o->u.seq.n == 1);
    CHECK_NEAR(pt_as_float(pt_find(r, "nested.big"), 0), 1180591620717411303424.0, 1e6);
    CHECK_EQ_INT(pt_as_int(pt_find(r, "nested.neg"), 0), -(1LL << 40));
    CHECK_STR(pt_as_str(pt_find(r, "nested.unicode")), "\xc3\xa9\xe2\x9c\x93");
    o = pt_find(r, "size");
    CHECK(o && o->type == PT_TUPLE && o->u.seq.n == 2 && pt_as_int(o->u.seq.v[1], 0) == 3);
    char buf[256];
    CHECK_STR(pt_repr(pt_find(r, "dtype"), buf, sizeof buf), "torch.float16");
    CHECK_STR(pt_repr(pt_find(r, "device"), buf, sizeof buf), "torch.device('cpu')");
    const PtTensor *t = pt_as_tensor(pt_find(r, "transposed"));
    CHECK(t && t->stride[0] == 1 && t->stride[1] == 6);
    t = pt_as_tensor(pt_find(r, "sliced"));
    CHECK(t && t->offset == 8);
    pt_close(f);
}

static void
test_mixed(void)
{
    test_mixed_file("pt_mixed.pt");
    test_mixed_file("pt_mixed_legacy.pt");
    test_mixed_file("pt_mixed_deflate.pt");
    PtFile *f = load("pt_mixed.pt");
    if (f)
        CHECK_STR(pt_format(f), "zip");
    pt_close(f);
    f = load("pt_mixed_legacy.pt");
    if (f)
        CHECK_STR(pt_format(f), "legacy");
    pt_close(f);
    expect_file_fail("pt_mixed_big.pt", PS_EFORMAT, "big-endian");

    /* a top directory that is not the file name, an offset strided view */
    f = load("odd_top.pt");
    if (f) {
        const PtTensor *t = pt_as_tensor(pt_find(pt_root(f), "t"));
        const float *v;
        CHECK(t && pt_tensor_f32(t, &v, NULL) == PS_OK && v[0] == 1 && v[1] == 3 && v[2] == 2 &&
              v[3] == 4);
    }
    pt_close(f);
}

/* ---- PatchSAE and Dassl layouts ---- */

static void
test_patchsae_file(const char *name, const char *cfgkey)
{
    PtFile *f = load(name);
    if (!f)
        return;
    const PtObj *r = pt_root(f), *cfg = pt_get(r, cfgkey);
    char buf[4096], path[64];
    CHECK(cfg && cfg->type == PT_OBJECT && cfg->u.obj.inst);
    if (cfg)
        CHECK_STR(cfg->u.obj.name, "src.sae_training.config.ViTSAERunnerConfig");
    snprintf(path, sizeof path, "%s.d_in", cfgkey);
    CHECK_EQ_INT(pt_as_int(pt_find(r, path), 0), 16);
    CHECK_EQ_INT(pt_as_int(pt_get(cfg, "d_sae"), 0), 64);
    CHECK_EQ_INT(pt_as_int(pt_get(cfg, "block_layer"), 0), -2);
    CHECK_STR(pt_as_str(pt_get(cfg, "module_name")), "resid");
    CHECK_STR(pt_as_str(pt_get(cfg, "model_name")), "openai/clip-vit-base-patch16");
    CHECK_NEAR(pt_as_float(pt_get(cfg, "l1_coefficient"), 0), 8e-5, 1e-12);
    CHECK(pt_get(cfg, "class_token") && pt_get(cfg, "class_token")->type == PT_NONE);
    CHECK_STR(pt_repr(pt_get(cfg, "device"), buf, sizeof buf), "torch.device('cpu')");
    CHECK_STR(pt_repr(pt_get(cfg, "dtype"), buf, sizeof buf), "torch.float32");
    pt_repr(cfg, buf, sizeof buf);
    const char *head = "<src.sae_training.config.ViTSAERunnerConfig class_token=None ";
    CHECK_MSG(!strncmp(buf, head, strlen(head)), "repr: %s", buf);
    CHECK(strstr(buf, " d_in=16 ") && strstr(buf, " dtype=torch.float32 "));

    float *ref;
    size_t n;
    char err[PS_ERRLEN];
    CHECK(ps_read_file(t_data("sae_weights.f32"), 1 << 20, (char **)&ref, &n, err) == PS_OK);
    CHECK_EQ_INT(n, (16 * 64 * 2 + 64 + 16) * 4);
    static const char *const names[] = {"W_enc", "b_enc", "W_dec", "b_dec"};
    static const int sizes[] = {16 * 64, 64, 64 * 16, 16};
    const float *p = ref;
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "state_dict.%s", names[i]);
        const PtTensor *t = pt_as_tensor(pt_find(r, path));
        const float *v;
        CHECK_MSG(t && t->dtype == ST_F32 && t->numel == (size_t)sizes[i], "%s: %s", name, path);
        if (t && pt_tensor_f32(t, &v, err) == PS_OK && t->numel == (size_t)sizes[i])
            CHECK_MSG(!memcmp(v, p, (size_t)sizes[i] * 4), "%s: %s differs", name, path);
        p += sizes[i];
    }
    const PtTensor *t = pt_as_tensor(pt_find(r, "state_dict.W_enc"));
    CHECK(t && t->nd == 2 && t->shape[0] == 16 && t->shape[1] == 64);
    free(ref);
    pt_close(f);
}

static int
count_tensor(void *ctx, const char *name, const PtObj *o)
{
    (void)name;
    if (o->type == PT_TENSOR)
        ++*(int *)ctx;
    return 0;
}

static void
test_layouts(void)
{
    test_patchsae_file("sae_patchsae.pt", "cfg");
    test_patchsae_file("sae_patchsae_config.pt", "config");
    test_patchsae_file("sae_patchsae_legacy.pt", "cfg");

    PtFile *f = load("dassl.pt");
    if (f) {
        const PtObj *r = pt_root(f);
        const PtTensor *t = pt_as_tensor(pt_find(r, "state_dict.prompt_learner.ctx"));
        CHECK(t && t->nd == 2 && t->shape[0] == 2 && t->shape[1] == 8);
        t = pt_as_tensor(pt_find(r, "state_dict.prompt_learner.proj.weight"));
        CHECK(t && t->shape[0] == 16 && t->shape[1] == 8);
        CHECK(pt_as_tensor(pt_find(r, "state_dict.prompt_learner.compound_prompts_text.1")));
        CHECK_EQ_INT(pt_as_int(pt_get(r, "epoch"), 0), 5);
        CHECK(pt_get(r, "scheduler") && pt_get(r, "scheduler")->type == PT_NONE);
        CHECK_NEAR(pt_as_float(pt_find(r, "optimizer.param_groups.0.lr"), 0), 0.0035, 1e-12);
        CHECK(pt_as_tensor(pt_find(r, "optimizer.state.0.momentum_buffer")));
        int n = 0;
        CHECK(pt_walk(r, count_tensor, &n, NULL) == PS_OK);
        CHECK_EQ_INT(n, 6);
    }
    pt_close(f);

    /* the info listing */
    f = load("sae_patchsae.pt");
    if (f) {
        const char *out = t_tmp("pt_print.txt");
        FILE *fp = fopen(out, "w");
        CHECK(fp && pt_print(fp, pt_root(f), "  ", NULL) == PS_OK);
        if (fp)
            fclose(fp);
        char *txt;
        size_t n;
        if (ps_read_file(out, 1 << 20, &txt, &n, NULL) == PS_OK) {
            const char *head = "  cfg = <src.sae_training.config.ViTSAERunnerConfig class_token=";
            CHECK(!strncmp(txt, head, strlen(head)));
            CHECK(strstr(txt, "\n  state_dict.W_enc F32  (16, 64)\n"));
            CHECK(strstr(txt, "\n  state_dict.b_dec F32  (16)\n"));
            free(txt);
        }
    }
    pt_close(f);
}

/* The MaPLe fixture (Dassl layout, views into shared F16 storages) against
 * the same tiny CLIP weights stored as safetensors with OpenAI names. */
typedef struct Cmp {
    StFile *st;
    int compared, bad;
} Cmp;

static int
cmp_visit(void *ctx, const char *name, const PtObj *o)
{
    Cmp *c = ctx;
    if (o->type != PT_TENSOR)
        return 0;
    char stname[256];
    if (!strncmp(name, "image_encoder.", 14))
        snprintf(stname, sizeof stname, "visual.%s", name + 14);
    else if (!strncmp(name, "text_encoder.", 13))
        snprintf(stname, sizeof stname, "%s", name + 13);
    else
        return 1;
    const float *a, *b;
    char err[PS_ERRLEN];
    if (pt_tensor_f32(o->u.t, &a, err) != PS_OK ||
        st_get_f32(c->st, stname, o->u.t->nd, o->u.t->shape, &b, err) != PS_OK) {
        c->bad++;
        t_failf(__FILE__, __LINE__, "%s: %s", name, err);
        return 1;
    }
    c->compared++;
    if (memcmp(a, b, o->u.t->numel * sizeof *a)) {
        c->bad++;
        t_failf(__FILE__, __LINE__, "%s differs from %s", name, stname);
    }
    return 1;
}

static void
test_maple(void)
{
    PtFile *f = load("clip_tiny/maple/model.pth.tar-5");
    Cmp c = {0};
    char err[PS_ERRLEN];
    if (!f || st_open(&c.st, t_data("clip_tiny/openai.safetensors"), err) != PS_OK) {
        CHECK(0);
        pt_close(f);
        return;
    }
    const PtObj *sd = pt_get(pt_root(f), "state_dict");
    CHECK(pt_walk(sd, cmp_visit, &c, err) == PS_OK);
    CHECK_EQ_INT(c.bad, 0);
    CHECK_MSG(c.compared >= 100, "only %d tensors compared", c.compared);
    const PtTensor *t = pt_as_tensor(pt_get(sd, "prompt_learner.token_suffix"));
    CHECK(t && t->dtype == ST_F16 && t->offset == 48 && t->stride[0] == 1232 && t->stride[1] == 16);
    t = pt_as_tensor(pt_get(sd, "prompt_learner.ctx"));
    CHECK(t && t->offset == 16);
    st_close(c.st);
    pt_close(f);
}

/* ---- hostile input ---- */

static void
test_refused(void)
{
    static const struct {
        const char *file, *tag, *needle;
    } evil[] = {
        {"evil_os_system.pt", "os", "os.system"},
        {"evil_posix_system.pt", "posix", "posix.system"},
        {"evil_eval.pt", "eval", "builtins.eval"},
        {"evil_popen.pt", "popen", "subprocess.Popen"},
        {"evil_stack_global.pt", "sg", "os.system"},
        {"evil_getattr.pt", NULL, "builtins.getattr"},
        {"evil_reduce.pt", NULL, "collections.Counter"},
        {"evil_nested.pt", "nt", "nt.system"},
    };
    for (size_t i = 0; i < LEN(evil); i++) {
        char pwned[64];
        if (evil[i].tag) {
            snprintf(pwned, sizeof pwned, "/tmp/patchsae_pwned_%s", evil[i].tag);
            unlink(pwned);
        }
        expect_file_fail(evil[i].file, PS_EREFUSED, evil[i].needle);
        if (evil[i].tag)
            CHECK_MSG(access(pwned, F_OK) != 0, "%s: %s exists", evil[i].file, pwned);
    }

    /* every denied global is refused even when only referenced */
    static const char *const denied[][2] = {
        {"os", "system"}, {"os", "popen"}, {"os.path", "join"}, {"posix", "system"},
        {"nt", "system"}, {"subprocess", "Popen"}, {"subprocess", "check_output"},
        {"sys", "exit"}, {"builtins", "eval"}, {"builtins", "exec"}, {"builtins", "__import__"},
        {"builtins", "getattr"}, {"builtins", "open"}, {"builtins", "compile"},
        {"builtins", "type"}, {"__builtin__", "eval"}, {"importlib", "import_module"},
        {"shutil", "rmtree"}, {"socket", "socket"}, {"pickle", "loads"}, {"_pickle", "loads"},
        {"runpy", "run_path"}, {"code", "interact"}, {"ctypes", "CDLL"},
        {"webbrowser", "open"}, {"pty", "spawn"}, {"torch", "load"}, {"numpy", "load"},
        {"operator", "attrgetter"}, {"functools", "partial"}, {"copyreg", "_extension_registry"},
        {"torch.storage", "_load_from_bytes"}, {"mymod", "execute_later"}, {"a.b", "os_system"},
        {"x", "Foo.__reduce__"}, {"torch.hub", "load_state_dict_from_url"}, {"multiprocessing", "Process"},
    };
    for (size_t i = 0; i < LEN(denied); i++) {
        char pkl[256];
        int n = snprintf(pkl, sizeof pkl, "\x80\x02\x63%s\n%s\n.", denied[i][0], denied[i][1]);
        char what[128];
        snprintf(what, sizeof what, "global %s.%s", denied[i][0], denied[i][1]);
        expect_fail(pkl, (size_t)n, PS_EREFUSED, "nothing was executed", what);
    }
    static const char *const allowed[][2] = {
        {"torch", "float32"}, {"collections", "OrderedDict"}, {"builtins", "set"},
        {"builtins", "object"}, {"src.sae_training.config", "ViTSAERunnerConfig"},
        {"copyreg", "_reconstructor"}, {"argparse", "Namespace"}, {"__main__", "Cfg"},
    };
    for (size_t i = 0; i < LEN(allowed); i++) {
        char pkl[256], err[PS_ERRLEN] = "";
        int n = snprintf(pkl, sizeof pkl, "\x80\x02\x63%s\n%s\n.", allowed[i][0], allowed[i][1]);
        PtFile *f;
        CHECK_MSG(pt_load_buf(&f, pkl, (size_t)n, "allowed", err) == PS_OK, "%s.%s: %s",
                  allowed[i][0], allowed[i][1], err);
        pt_close(f);
    }
    /* calls: REDUCE on a placeholder class or an instance, NEWOBJ on a non-class */
    expect_fail("\x80\x02\x63mymod\nFoo\n)R.", 17, PS_EREFUSED, "mymod.Foo", "reduce class");
    expect_fail("\x80\x02\x63torch\ndevice\nX\x03\0\0\0cpu\x85R)R.", 29, PS_EREFUSED,
                "an instance", "reduce instance");
    expect_fail("\x80\x02K\x05)\x81.", 7, PS_EREFUSED, NULL, "newobj int");
    /* a dataclass made by NEWOBJ + BUILD, and by copyreg._reconstructor, load as data */
    const char ok1[] = "\x80\x02\x63m\nC\n)\x81}X\x01\0\0\0aK\x07sb.";
    const char ok2[] = "\x80\x02" "ccopyreg\n_reconstructor\n\x63m\nC\n\x63__builtin__\nobject\nN\x87R"
                       "}X\x01\0\0\0aK\x07sb.";
    const char *oks[] = {ok1, ok2};
    size_t okn[] = {sizeof ok1 - 1, sizeof ok2 - 1};
    for (int i = 0; i < 2; i++) {
        PtFile *f;
        char err[PS_ERRLEN] = "", buf[128];
        CHECK_MSG(pt_load_buf(&f, oks[i], okn[i], "dataclass", err) == PS_OK, "%s", err);
        if (f) {
            CHECK_EQ_INT(pt_as_int(pt_find(pt_root(f), "a"), 0), 7);
            CHECK_STR(pt_repr(pt_root(f), buf, sizeof buf), "<m.C a=7>");
        }
        pt_close(f);
    }
}

static void
test_bad_storage(void)
{
    expect_file_fail("bad_offset.pt", PS_EFORMAT, "past its storage");
    expect_file_fail("bad_stride.pt", PS_EFORMAT, "past its storage");
    expect_file_fail("bad_short_entry.pt", PS_EFORMAT, "holds 20 bytes, 24 needed");
    expect_file_fail("bad_missing_entry.pt", PS_EFORMAT, "no entry");
    expect_file_fail("bad_huge_storage.pt", PS_EFORMAT, "too large");
    expect_file_fail("bad_neg_size.pt", PS_EFORMAT, "size or stride");
    expect_file_fail("bad_alias.pt", PS_EFORMAT, "named twice");
    expect_file_fail("bad_broadcast.pt", PS_EFORMAT, "expanded tensor view");
    PtFile *e = load("expanded.pt"); /* (3, 4) with strides (0, 1) at offset 2: rows 2 3 4 5 */
    if (e) {
        const PtTensor *t = pt_as_tensor(pt_find(pt_root(e), "t"));
        const float *v;
        int ok = t && t->numel == 12 && pt_tensor_f32(t, &v, NULL) == PS_OK;
        for (int i = 0; ok && i < 12; i++)
            ok = v[i] == (float)(2 + i % 4);
        CHECK(ok);
    }
    pt_close(e);

    char err[PS_ERRLEN];
    PtFile *f;
    CHECK(pt_load(&f, t_data("no_such_file.pt"), err) == PS_EIO && !f);
    expect_fail("", 0, PS_EFORMAT, "not a PyTorch checkpoint", "empty");
    expect_fail("hello world", 11, PS_EFORMAT, "not a PyTorch checkpoint", "text");
    expect_fail("PK\x05\x06", 4, PS_EFORMAT, "zip", "zip stub");
}

/* A pickle in a malloc'd buffer: PROTO 2, body, STOP. */
static unsigned char *
bomb(size_t *n, const char *head, const char *unit, size_t reps, const char *tail_unit,
     size_t tail_reps)
{
    size_t hu = strlen(head), uu = strlen(unit), tu = strlen(tail_unit);
    *n = 2 + hu + uu * reps + tu * tail_reps + 1;
    unsigned char *b = malloc(*n), *p = b;
    *p++ = 0x80;
    *p++ = 2;
    memcpy(p, head, hu);
    p += hu;
    for (size_t i = 0; i < reps; i++, p += uu)
        memcpy(p, unit, uu);
    for (size_t i = 0; i < tail_reps; i++, p += tu)
        memcpy(p, tail_unit, tu);
    *p = '.';
    return b;
}

static int
count_all(void *ctx, const char *name, const PtObj *o)
{
    (void)name;
    (void)o;
    ++*(size_t *)ctx;
    return 0;
}

static void
test_bombs(void)
{
    size_t n;
    unsigned char *b;
    /* 5000 nested lists: [[[[...]]]] */
    b = bomb(&n, "", "]", 5000, "a", 4999);
    expect_fail(b, n, PS_EFORMAT, "nested deeper", "list bomb");
    free(b);
    /* 900 nested lists are fine, and walkable */
    b = bomb(&n, "", "]", 900, "a", 899);
    PtFile *f;
    char err[PS_ERRLEN] = "";
    CHECK_MSG(pt_load_buf(&f, b, n, "deep", err) == PS_OK, "%s", err);
    if (f) {
        size_t visits = 0;
        CHECK(pt_walk(pt_root(f), count_all, &visits, err) == PS_OK && visits == 900);
        char buf[64];
        pt_repr(pt_root(f), buf, sizeof buf);
        CHECK(!strncmp(buf, "[[[[", 4));
        FILE *null = fopen("/dev/null", "w");
        CHECK(pt_print(null, pt_root(f), NULL, err) == PS_OK);
        fclose(null);
    }
    pt_close(f);
    free(b);
    /* tuples and dicts nest the same way */
    b = bomb(&n, "", "(", 3000, "t", 3000);
    expect_fail(b, n, PS_EFORMAT, "deeper", "tuple bomb");
    free(b);
    b = bomb(&n, "}", "K\x01}", 3000, "s", 3000);
    expect_fail(b, n, PS_EFORMAT, "nested deeper", "dict bomb");
    free(b);
    /* a million values on the stack without a container: fine up to the limit */
    b = bomb(&n, "", "N", 5000000, "", 0);
    expect_fail(b, n, PS_EFORMAT, "stack deeper", "stack bomb");
    free(b);

    /* a shared-reference bomb: 40 levels of [x, x] through the memo */
    b = bomb(&n, "Nq\x01" "0", "h\x01h\x01\x86q\x01" "0", 40, "h\x01", 1);
    CHECK_MSG(pt_load_buf(&f, b, n, "laughs", err) == PS_OK, "%s", err);
    if (f) {
        size_t visits = 0;
        CHECK(pt_walk(pt_root(f), count_all, &visits, err) == PS_EFORMAT);
        CHECK(strstr(err, "shared references") != NULL);
        char buf[256];
        pt_repr(pt_root(f), buf, sizeof buf);
        CHECK(strlen(buf) < sizeof buf);
        FILE *null = fopen("/dev/null", "w");
        CHECK(pt_print(null, pt_root(f), NULL, err) == PS_OK); /* printed as one repr */
        fclose(null);
    }
    pt_close(f);
    free(b);

    /* a list that contains itself */
    const char cyc[] = "\x80\x02]q\x01h\x01" "a.";
    CHECK_MSG(pt_load_buf(&f, cyc, sizeof cyc - 1, "cycle", err) == PS_OK, "%s", err);
    if (f) {
        size_t visits = 0;
        CHECK(pt_walk(pt_root(f), count_all, &visits, err) == PS_OK && visits == 1);
        char buf[64];
        CHECK_STR(pt_repr(pt_root(f), buf, sizeof buf), "[...]");
        CHECK(pt_find(pt_root(f), "0.0.0.0.0") == pt_root(f));
    }
    pt_close(f);

    /* declared sizes beyond the buffer */
    expect_fail("\x80\x02X\xff\xff\xff\xff" "abc.", 11, PS_EFORMAT, "truncated", "huge unicode");
    expect_fail("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f" "ab.", 14, PS_EFORMAT, "truncated",
                "huge bytes8");
    expect_fail("\x80\x04\x8d\0\0\0\0\0\0\0\x80.", 12, PS_EFORMAT, "truncated", "huge unicode8");
    expect_fail("\x80\x02\x8b\xff\xff\xff\x7f\x01.", 9, PS_EFORMAT, "truncated", "huge long4");
    expect_fail("\x80\x02\x8b\xff\xff\xff\xff\x01.", 9, PS_EFORMAT, "negative", "negative long4");
    expect_fail("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.", 13, PS_EFORMAT, "frame", "frame");
    expect_fail("\x80\x02T\xff\xff\xff\xff.", 8, PS_EFORMAT, "negative", "binstring");
    /* memo abuse */
    expect_fail("\x80\x02h\x05.", 5, PS_EFORMAT, "never set", "get unset");
    expect_fail("\x80\x02j\xff\xff\xff\x7f.", 8, PS_EFORMAT, "never set", "long get unset");
    expect_fail("\x80\x02Nr\xf0\xff\xff\xff.", 9, PS_EFORMAT, "out of range", "huge put");
    expect_fail("\x80\x02Np99999999999\n.", 17, PS_EFORMAT, "out of range", "huge text put");
    expect_fail("\x80\x02q\x00N.", 6, PS_EFORMAT, "underflow", "put on empty");
    /* stack and mark misuse */
    expect_fail("\x80\x02.", 3, PS_EFORMAT, "underflow", "empty stop");
    expect_fail("\x80\x02R.", 4, PS_EFORMAT, "underflow", "reduce on empty");
    expect_fail("\x80\x02NN.", 5, PS_EFORMAT, "left on the stack", "two values");
    expect_fail("\x80\x02(a.", 5, PS_EFORMAT, "underflow", "append after mark");
    expect_fail("\x80\x02t.", 4, PS_EFORMAT, "no MARK", "tuple without mark");
    expect_fail("\x80\x02}Nu.", 6, PS_EFORMAT, "MARK", "setitems without mark");
    expect_fail("\x80\x02}(Nu.", 7, PS_EFORMAT, "odd", "odd setitems");
    expect_fail("\x80\x02K\x01K\x02s.", 8, PS_EFORMAT, "underflow", "setitem short");
    expect_fail("\x80\x02NK\x01K\x02s.", 9, PS_EFORMAT, "not a dict", "setitem on none");
    expect_fail("\x80\x02\xff.", 4, PS_EFORMAT, "opcode 0xff", "bad opcode");
    expect_fail("\x80\x09N.", 4, PS_EFORMAT, "protocol", "protocol 9");
    expect_fail("\x80\x02N", 3, PS_EFORMAT, "no STOP", "no stop");
    expect_fail("\x80\x02\x63os", 5, PS_EFORMAT, "unterminated", "global cut");
    expect_fail("\x80\x02\x63o s\nsystem\n.", 14, PS_EFORMAT, "malformed", "global space");
    expect_fail("\x80\x02\x63\nx\n.", 8, PS_EFORMAT, "malformed", "global empty");
    expect_fail("\x80\x02K\x01K\x02\x93.", 8, PS_EFORMAT, "not strings", "stack_global ints");
    expect_fail("\x80\x02NQ.", 5, PS_EFORMAT, "persistent id", "persid in plain pickle");
    expect_fail("\x80\x02Nb.", 5, PS_EFORMAT, "underflow", "build short");
    expect_fail("\x80\x02K\x01Nb.", 7, PS_EFORMAT, "no state", "build on int");
    expect_fail("\x80\x02\x97.", 4, PS_EFORMAT, "opcode", "next_buffer");
    expect_fail("\x80\x02\x82\x01.", 5, PS_EFORMAT, "opcode", "ext1");
    /* the machine's own protocol-0/1 forms still work */
    const char p0[] = "\x80\x02(lp0\nI12\naF2.5\naI01\naL-7L\nag0\na.";
    CHECK_MSG(pt_load_buf(&f, p0, sizeof p0 - 1, "proto0", err) == PS_OK, "%s", err);
    if (f) {
        char buf[128];
        CHECK_STR(pt_repr(pt_root(f), buf, sizeof buf), "[12, 2.5, True, -7, ...]");
    }
    pt_close(f);
}

static int
touch_all(void *ctx, const char *name, const PtObj *o)
{
    (void)name;
    if (o->type == PT_TENSOR) {
        const float *v;
        if (pt_tensor_f32(o->u.t, &v, NULL) == PS_OK && o->u.t->numel)
            *(float *)ctx += v[0] + v[o->u.t->numel - 1];
    }
    return 0;
}

/* Truncations and byte flips of valid files: errors are fine, crashes are not. */
static void
test_fuzz(void)
{
    static const char *const files[] = {"sae_patchsae.pt", "pt_mixed.pt", "pt_mixed_legacy.pt",
                                        "pt_mixed_deflate.pt", "dassl.pt"};
    int iters = getenv("PS_SANITIZED") ? 300 : 1500;
    if (getenv("PS_FUZZ_ITERS")) /* longer campaigns by hand */
        iters = atoi(getenv("PS_FUZZ_ITERS"));
    t_seed(4242);
    FILE *null = fopen("/dev/null", "w");
    for (size_t fi = 0; fi < LEN(files); fi++) {
        char *orig, err[PS_ERRLEN];
        size_t n;
        if (ps_read_file(t_data(files[fi]), 1 << 20, &orig, &n, err) != PS_OK) {
            CHECK_MSG(0, "%s", err);
            continue;
        }
        unsigned char *buf = malloc(n);
        int loaded = 0, failed = 0;
        float sink = 0;
        for (size_t cut = 0; cut < n; cut += 1 + n / 97) {
            PtFile *f;
            memcpy(buf, orig, cut);
            if (pt_load_buf(&f, buf, cut, "cut", err) == PS_OK) {
                pt_walk(pt_root(f), touch_all, &sink, NULL);
                pt_close(f);
            }
        }
        for (int it = 0; it < iters; it++) {
            memcpy(buf, orig, n);
            int flips = 1 + (int)(t_rand() % 4);
            for (int k = 0; k < flips; k++) {
                size_t at = t_rand() % n;
                buf[at] = (t_rand() & 1) ? (unsigned char)t_rand() : buf[at] ^ (1u << (t_rand() % 8));
            }
            PtFile *f;
            if (pt_load_buf(&f, buf, n, "flipped", err) == PS_OK) {
                loaded++;
                pt_walk(pt_root(f), touch_all, &sink, NULL);
                pt_print(null, pt_root(f), NULL, NULL);
                pt_close(f);
            } else {
                failed++;
                CHECK_MSG(strlen(err) > 0, "empty error message");
            }
        }
        CHECK(loaded + failed == iters);
        free(buf);
        free(orig);
    }
    fclose(null);
}

void
test_pt(void)
{
    test_mixed();
    test_layouts();
    test_maple();
    test_refused();
    test_bad_storage();
    test_bombs();
    test_fuzz();
}
