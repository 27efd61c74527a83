/* The reader of user kernels' parameter lists (src/core/kernel_sig.c)
 * against hand-written expectations: kinds, names, types and sizes of
 * parameters; comments, strings and preprocessor lines that only look like
 * kernels; KERNEL_WG sizes and -D defines; the refusals and their
 * messages; the entry points keep the source's line numbers. */
#include <string.h>

#include "core/core.h"
#include "core/kernel_sig.h"
#include "ox_test.h"
#include "test_helpers.h"

static ox_context *open_ctx(void)
{
    ox_context *ctx;
    ox_context_options o = test_options(OX_CONTEXT_NO_PLUGINS);
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    return ctx;
}

OX_TEST(parameters_of_every_kind)
{
    ox_context *ctx = open_ctx();
    static const char src[] =
        "/* KERNEL fake(int a) in a comment */\n"
        "// KERNEL fake2(int a)\n"
        "#define NOT_A KERNEL\n"
        "FN float helper(LOCAL float *t) { return t[0]; }\n"
        "KERNEL first(ARG_BUF(const OX_STORAGE(1), x), LOCAL  float  *tile,\n"
        "             const uchar c, short s, unsigned int u, double d, u64 big,\n"
        "             REAL r)\n"
        "{\n"
        "    const char *s2 = \"KERNEL in_a_string(int q)\";\n"
        "    if (c) { BARRIER(); }\n"
        "}\n"
        "KERNEL_WG(WG, 2, 1) second(void) { }\n"
        "KERNEL declared(int n);\n";
    ox__sig_program sig;
    ASSERT_OK(ctx, ox__sig_parse(ctx, "t", src, "-DREAL=float -DWG=32", &sig));
    ASSERT_EQ(sig.n_kernels, 2);
    ASSERT(sig.barriers);
    const ox__sig_kernel *k = ox__sig_find(&sig, "first");
    ASSERT(k != NULL);
    ASSERT_EQ(k->n_params, 8);
    ASSERT_EQ(k->params[0].kind, OX__ARG_BUFFER);
    ASSERT_STR_EQ(k->params[0].name, "x");
    ASSERT_STR_EQ(k->params[0].type, "const OX_STORAGE(1)");
    ASSERT_EQ(k->params[0].size, 0); /* an element type it cannot size */
    ASSERT_EQ(k->params[1].kind, OX__ARG_LOCAL);
    ASSERT_STR_EQ(k->params[1].name, "tile");
    ASSERT_STR_EQ(k->params[1].type, "LOCAL float *");
    static const char *names[] = {"c", "s", "u", "d", "big", "r"};
    static const size_t sizes[] = {1, 2, 4, 8, 8, 4};
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(k->params[2 + i].kind, OX__ARG_SCALAR);
        ASSERT_STR_EQ(k->params[2 + i].name, names[i]);
        ASSERT_EQ(k->params[2 + i].size, sizes[i]);
    }
    ASSERT_EQ(k->reqd_wg[0], 0);
    const ox__sig_kernel *w = ox__sig_find(&sig, "second");
    ASSERT(w != NULL);
    ASSERT_EQ(w->n_params, 0);
    ASSERT_EQ(w->reqd_wg[0], 32);
    ASSERT_EQ(w->reqd_wg[1], 2);
    ASSERT_EQ(w->reqd_wg[2], 1);
    ASSERT(ox__sig_find(&sig, "declared") == NULL); /* a prototype, not a kernel */
    ASSERT(ox__sig_find(&sig, "fake") == NULL);
    ASSERT(ox__sig_find(&sig, "in_a_string") == NULL);

    /* buffers' element sizes (for OX_KERNEL_CHECKS' indexes), qualifiers aside */
    ox__sig_program elems;
    ASSERT_OK(ctx, ox__sig_parse(ctx, "t", "KERNEL e(ARG_BUF(const ox_half, h), ARG_BUF(volatile "
                                 "float, f), ARG_BUF(i64, l), ARG_BUF(const i8, b)) { }\n", NULL,
                                 &elems));
    static const size_t element_sizes[] = {2, 4, 8, 1};
    for (int i = 0; i < 4; i++) ASSERT_EQ(elems.kernels[0].params[i].size, element_sizes[i]);
    ox__sig_free(&elems);

    /* entry points: the user's kernels renamed in place, lines kept */
    size_t c_size, cuda_size;
    char *c = ox__sig_wrap(src, &sig, OX__KERNEL_C, &c_size);
    ASSERT(c != NULL);
    /* C: the work-item as a hidden first parameter */
    ASSERT_CONTAINS(c, "OX__KERNEL_FN ox__user_first(struct ox__item *ox__wi, ARG_BUF(const "
                       "OX_STORAGE(1), x)");
    ASSERT_CONTAINS(c, "OX__KERNEL_FN ox__user_second(struct ox__item *ox__wi) { }");
    ASSERT_CONTAINS(c, "OX__ENTRY void ox__group_first(");
    ASSERT_CONTAINS(c, "LOCAL float * ox__p1 = (LOCAL float *)*(void *const *)ox__a[1];");
    ASSERT_CONTAINS(c, "REAL ox__p7 = *(REAL *)ox__a[7];");
    ASSERT_CONTAINS(c, "GLOBAL const OX_STORAGE(1) *ox__p0 = (GLOBAL const OX_STORAGE(1) "
                       "*)*(void *const *)ox__a[0];");
    ASSERT_CONTAINS(c, "ox__c_barriers = 1");
    const char *entries = strstr(c, "\n/* entry points");
    ASSERT(entries != NULL);
    int lines = 0;
    for (const char *p = c; p < entries; p++) lines += *p == '\n';
    ASSERT_EQ(lines, 13); /* the source's 13 lines, no more */
    ox__free(ctx, c, c_size);
    char *cuda = ox__sig_wrap(src, &sig, OX__KERNEL_CUDA, &cuda_size);
    ASSERT(cuda != NULL);
    ASSERT_CONTAINS(cuda, "KERNEL first(ARG_BUF(const OX_STORAGE(1), x), u64 ox__l_tile, "
                          "const uchar c,");
    ASSERT_CONTAINS(cuda, "OX__DYNAMIC_LOCAL(ox__dl);");
    ASSERT_CONTAINS(cuda, "ox__user_first(x_base, x_off, (LOCAL float *)(ox__dl + ox__l_tile)");
    ASSERT_CONTAINS(cuda, "KERNEL_WG(32, 2, 1) second()");
    ASSERT_CONTAINS(cuda, "OX__KERNEL_FN ox__user_second(void) { }");
    ox__free(ctx, cuda, cuda_size);
    ox__sig_free(&sig);
    ox_context_free(ctx);
}

static void refused(ox_context *ctx, const char *src, const char *options, const char *message)
{
    ox__sig_program sig;
    ASSERT_EQ(ox__sig_parse(ctx, "prog", src, options, &sig), OX_ERR_BUILD);
    ASSERT_CONTAINS(ox_errmsg(ctx), message);
    ASSERT_EQ(sig.n_kernels, 0);
}

OX_TEST(refusals_name_the_kernel_and_parameter)
{
    ox_context *ctx = open_ctx();
    refused(ctx, "\n\nKERNEL k(GLOBAL float *x) {}", NULL,
            "prog:3: kernel 'k', parameter 0 'GLOBAL float *x': a pointer; buffers are "
            "ARG_BUF(type, name)");
    refused(ctx, "KERNEL k(int a, size_t n) {}", NULL,
            "kernel 'k', parameter 1 'size_t n': scalar type 'size_t' is not one every device "
            "sizes alike");
    refused(ctx, "KERNEL k(REAL a) {}", "-DREAL=half", "scalar type 'REAL'");
    refused(ctx, "KERNEL k(ARG_SHAPE( )) {}", NULL, "kernel 'k': ARG_SHAPE(name) expected");
    refused(ctx, "KERNEL k(ARG_SHAPE(a b)) {}", NULL, "kernel 'k': ARG_SHAPE(name) expected");
    refused(ctx, "KERNEL k(ARG_BUF(float)) {}", NULL, "ARG_BUF(type, name) expected");
    refused(ctx, "KERNEL k(float v[4]) {}", NULL, "parameter 0 'float v[4]'");
    refused(ctx, "KERNEL k(int a, int a) {}", NULL, "two parameters named 'a'");
    refused(ctx, "KERNEL k(int a) {}\nKERNEL k(int b) {}", NULL, "prog:2: kernel 'k' is defined twice");
    refused(ctx, "KERNEL_WG(64, 1) k(int n) {}", NULL, "KERNEL_WG takes three");
    refused(ctx, "KERNEL_WG(0, 1, 1) k(int n) {}", NULL, "KERNEL_WG takes three positive");
    refused(ctx, "KERNEL (int n) {}", NULL, "a kernel name must follow KERNEL");
    refused(ctx, "KERNEL k {}", NULL, "kernel 'k': a parameter list must follow its name");
    /* names (issue 16: these got "a parameter list must follow") */
    refused(ctx, "KERNEL k\xc3\xa9(int n) {}", NULL,
            "kernel name 'k': a non-ASCII character at byte 2");
    refused(ctx, "KERNEL \xc3\xa9(int n) {}", NULL, "a non-ASCII character at byte 1");
    char long_name[5100] = "KERNEL ";
    memset(long_name + 7, 'a', 5000);
    strcpy(long_name + 5007, "(int n) {}");
    refused(ctx, long_name, NULL, "is 5000 characters; at most 63");
    /* an unterminated comment at the end (the CPU once compiled it: its
     * entry points, added after the source, closed the comment) */
    refused(ctx, "KERNEL k(int n) { }\n\n/* the end", NULL,
            "prog:3: unterminated comment: the '/*' here is never closed");
    refused(ctx, "KERNEL k(int n) { } // fine\n/* a */ /* b", NULL, "prog:2: unterminated");
    refused(ctx, "KERNEL k(int n) n = 1;", NULL, "kernel 'k': its body must follow");
    refused(ctx, "KERNEL k(int n", NULL, "a parameter list must follow");
    char many[2048] = "KERNEL k(";
    for (int i = 0; i < 65; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sint a%d", i ? ", " : "", i);
    strcat(many, ") {}");
    refused(ctx, many, NULL, "more than 64 parameters");
    ox_context_free(ctx);
}

OX_TEST(no_barrier_means_no_fibers)
{
    ox_context *ctx = open_ctx();
    ox__sig_program sig;
    ASSERT_OK(ctx, ox__sig_parse(ctx, "t", "/* BARRIER() */ KERNEL k(int n) { int BARRIERS = n; }",
                                 NULL, &sig));
    ASSERT(!sig.barriers); /* in a comment, or part of another word */
    ox__sig_free(&sig);
    ASSERT_OK(ctx, ox__sig_parse(ctx, "t", "#define SYNC BARRIER()\nKERNEL k(int n) { SYNC; }",
                                 NULL, &sig));
    ASSERT(sig.barriers); /* behind a macro: still seen */
    ox__sig_free(&sig);
    ox_context_free(ctx);
}

/* ARG_SHAPE(t) (common.h): the eight i64 parameters it declares, in order. */
OX_TEST(arg_shape_is_eight_sizes_and_strides)
{
    ox_context *ctx = open_ctx();
    ox__sig_program sig;
    ASSERT_OK(ctx, ox__sig_parse(ctx, "prog", "KERNEL k(ARG_BUF(float, y), ARG_SHAPE(y), int n) {}",
                                 NULL, &sig));
    ASSERT_EQ(sig.n_kernels, 1);
    const ox__sig_kernel *k = &sig.kernels[0];
    ASSERT_EQ(k->n_params, 10);
    const char *names[] = {"y_ne0", "y_ne1", "y_ne2", "y_ne3", "y_nb0", "y_nb1", "y_nb2", "y_nb3"};
    for (int i = 0; i < 8; i++) {
        ASSERT_STR_EQ(k->params[1 + i].name, names[i]);
        ASSERT_STR_EQ(k->params[1 + i].type, "i64");
        ASSERT_EQ(k->params[1 + i].kind, OX__ARG_SCALAR);
        ASSERT_EQ((int)k->params[1 + i].size, 8);
    }
    ASSERT_STR_EQ(k->params[9].name, "n");
    ox__sig_free(&sig);
    ox_context_free(ctx);
}

OX_TEST_MAIN(arg_shape_is_eight_sizes_and_strides, parameters_of_every_kind, refusals_name_the_kernel_and_parameter,
             no_barrier_means_no_fibers)
