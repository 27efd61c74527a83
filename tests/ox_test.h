/* A small test harness: each test file lists its cases with OX_TEST, and
 * main (from OX_TEST_MAIN) runs every case in its own child process, so a
 * crash fails that case only and is reported with its signal. The output
 * ends with "N passed, N failed[, N skipped]". A case that cannot run here
 * calls OX_SKIP("why"), which is printed; a skip is never silent.
 *
 *   ./test_x            run all cases
 *   ./test_x NAME...    run only the named cases
 *   ./test_x --list     list the cases */
#ifndef OX_TEST_H
#define OX_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*ox_test_fn)(void);
typedef struct ox_test_case {
    const char *name;
    ox_test_fn fn;
} ox_test_case;

#define OX_TEST_SKIP_CODE 77

#define OX_TEST_FAIL_AT(...)                                                        \
    do {                                                                            \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                           \
        fprintf(stderr, __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                        \
        exit(1);                                                                    \
    } while (0)

#define ASSERT(cond)                                                                \
    do {                                                                            \
        if (!(cond)) OX_TEST_FAIL_AT("assertion failed: %s", #cond);                \
    } while (0)

#define ASSERT_MSG(cond, ...)                                                       \
    do {                                                                            \
        if (!(cond)) OX_TEST_FAIL_AT(__VA_ARGS__);                                  \
    } while (0)

#define ASSERT_EQ(a, b)                                                             \
    do {                                                                            \
        long long ox_a_ = (long long)(a), ox_b_ = (long long)(b);                   \
        if (ox_a_ != ox_b_)                                                         \
            OX_TEST_FAIL_AT("%s == %s: %lld != %lld", #a, #b, ox_a_, ox_b_);        \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                         \
    do {                                                                            \
        const char *ox_a_ = (a), *ox_b_ = (b);                                      \
        if (!ox_a_ || !ox_b_ || strcmp(ox_a_, ox_b_) != 0)                          \
            OX_TEST_FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b,                   \
                            ox_a_ ? ox_a_ : "(null)", ox_b_ ? ox_b_ : "(null)");    \
    } while (0)

/* Substring check, for error messages. */
#define ASSERT_CONTAINS(haystack, needle)                                           \
    do {                                                                            \
        const char *ox_h_ = (haystack), *ox_n_ = (needle);                          \
        if (!ox_h_ || !strstr(ox_h_, ox_n_))                                        \
            OX_TEST_FAIL_AT("\"%s\" does not contain \"%s\"",                       \
                            ox_h_ ? ox_h_ : "(null)", ox_n_);                       \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                      \
    do {                                                                            \
        double ox_a_ = (double)(a), ox_b_ = (double)(b);                            \
        if (!(fabs(ox_a_ - ox_b_) <= (tol)))                                        \
            OX_TEST_FAIL_AT("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, ox_a_,       \
                            ox_b_, (double)(tol));                                  \
    } while (0)

/* Assert an OpenXPU call succeeded; on failure print the status and message. */
#define ASSERT_OK(ctx, call)                                                        \
    do {                                                                            \
        ox_status ox_s_ = (call);                                                   \
        if (ox_s_ != OX_OK)                                                         \
            OX_TEST_FAIL_AT("%s: %s (%s)", #call, ox_status_name(ox_s_),            \
                            ox_errmsg(ctx));                                        \
    } while (0)

#define OX_SKIP(...)                                                                \
    do {                                                                            \
        fprintf(stdout, "  skipped: ");                                             \
        fprintf(stdout, __VA_ARGS__);                                               \
        fputc('\n', stdout);                                                        \
        fflush(stdout);                                                             \
        exit(OX_TEST_SKIP_CODE);                                                    \
    } while (0)

#define OX_TEST(name) static void name(void)

static inline int ox_test_run_one(const ox_test_case *tc)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        tc->fn();
        fflush(stdout);
        exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    if (WIFSIGNALED(status)) {
        printf("FAIL %s (killed by signal %d)\n", tc->name, WTERMSIG(status));
        return 1;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == OX_TEST_SKIP_CODE) {
        printf("skip %s\n", tc->name);
        return 2;
    }
    printf("%s %s\n", code == 0 ? "ok  " : "FAIL", tc->name);
    return code == 0 ? 0 : 1;
}

static inline int ox_test_main(const ox_test_case *cases, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) puts(cases[i].name);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], cases[i].name) == 0;
            if (!wanted) continue;
        }
        int r = ox_test_run_one(&cases[i]);
        if (r == 0) passed++;
        else if (r == 2) skipped++;
        else failed++;
    }
    if (passed + failed + skipped == 0) {
        printf("no test case matched\n");
        return 1;
    }
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    /* Nothing ran but skips: tell ctest (SKIP_RETURN_CODE), never "passed". */
    if (!failed && !passed) return OX_TEST_SKIP_CODE;
    return failed ? 1 : 0;
}

/* OX_TEST_MAIN(case1, case2, ...) defines main running the listed cases. */
#define OX_TEST_ENTRY(fn) {#fn, fn},
#define OX_TEST_MAIN(...)                                                           \
    int main(int argc, char **argv)                                                 \
    {                                                                               \
        static const ox_test_case cases[] = {OX_TEST_FOREACH(OX_TEST_ENTRY, __VA_ARGS__)}; \
        return ox_test_main(cases, sizeof cases / sizeof cases[0], argc, argv);     \
    }

/* Apply a macro to up to 48 arguments. */
#define OX_TEST_FE_1(m, x) m(x)
#define OX_TEST_FE_2(m, x, ...) m(x) OX_TEST_FE_1(m, __VA_ARGS__)
#define OX_TEST_FE_3(m, x, ...) m(x) OX_TEST_FE_2(m, __VA_ARGS__)
#define OX_TEST_FE_4(m, x, ...) m(x) OX_TEST_FE_3(m, __VA_ARGS__)
#define OX_TEST_FE_5(m, x, ...) m(x) OX_TEST_FE_4(m, __VA_ARGS__)
#define OX_TEST_FE_6(m, x, ...) m(x) OX_TEST_FE_5(m, __VA_ARGS__)
#define OX_TEST_FE_7(m, x, ...) m(x) OX_TEST_FE_6(m, __VA_ARGS__)
#define OX_TEST_FE_8(m, x, ...) m(x) OX_TEST_FE_7(m, __VA_ARGS__)
#define OX_TEST_FE_9(m, x, ...) m(x) OX_TEST_FE_8(m, __VA_ARGS__)
#define OX_TEST_FE_10(m, x, ...) m(x) OX_TEST_FE_9(m, __VA_ARGS__)
#define OX_TEST_FE_11(m, x, ...) m(x) OX_TEST_FE_10(m, __VA_ARGS__)
#define OX_TEST_FE_12(m, x, ...) m(x) OX_TEST_FE_11(m, __VA_ARGS__)
#define OX_TEST_FE_13(m, x, ...) m(x) OX_TEST_FE_12(m, __VA_ARGS__)
#define OX_TEST_FE_14(m, x, ...) m(x) OX_TEST_FE_13(m, __VA_ARGS__)
#define OX_TEST_FE_15(m, x, ...) m(x) OX_TEST_FE_14(m, __VA_ARGS__)
#define OX_TEST_FE_16(m, x, ...) m(x) OX_TEST_FE_15(m, __VA_ARGS__)
#define OX_TEST_FE_17(m, x, ...) m(x) OX_TEST_FE_16(m, __VA_ARGS__)
#define OX_TEST_FE_18(m, x, ...) m(x) OX_TEST_FE_17(m, __VA_ARGS__)
#define OX_TEST_FE_19(m, x, ...) m(x) OX_TEST_FE_18(m, __VA_ARGS__)
#define OX_TEST_FE_20(m, x, ...) m(x) OX_TEST_FE_19(m, __VA_ARGS__)
#define OX_TEST_FE_21(m, x, ...) m(x) OX_TEST_FE_20(m, __VA_ARGS__)
#define OX_TEST_FE_22(m, x, ...) m(x) OX_TEST_FE_21(m, __VA_ARGS__)
#define OX_TEST_FE_23(m, x, ...) m(x) OX_TEST_FE_22(m, __VA_ARGS__)
#define OX_TEST_FE_24(m, x, ...) m(x) OX_TEST_FE_23(m, __VA_ARGS__)
#define OX_TEST_FE_25(m, x, ...) m(x) OX_TEST_FE_24(m, __VA_ARGS__)
#define OX_TEST_FE_26(m, x, ...) m(x) OX_TEST_FE_25(m, __VA_ARGS__)
#define OX_TEST_FE_27(m, x, ...) m(x) OX_TEST_FE_26(m, __VA_ARGS__)
#define OX_TEST_FE_28(m, x, ...) m(x) OX_TEST_FE_27(m, __VA_ARGS__)
#define OX_TEST_FE_29(m, x, ...) m(x) OX_TEST_FE_28(m, __VA_ARGS__)
#define OX_TEST_FE_30(m, x, ...) m(x) OX_TEST_FE_29(m, __VA_ARGS__)
#define OX_TEST_FE_31(m, x, ...) m(x) OX_TEST_FE_30(m, __VA_ARGS__)
#define OX_TEST_FE_32(m, x, ...) m(x) OX_TEST_FE_31(m, __VA_ARGS__)
#define OX_TEST_FE_33(m, x, ...) m(x) OX_TEST_FE_32(m, __VA_ARGS__)
#define OX_TEST_FE_34(m, x, ...) m(x) OX_TEST_FE_33(m, __VA_ARGS__)
#define OX_TEST_FE_35(m, x, ...) m(x) OX_TEST_FE_34(m, __VA_ARGS__)
#define OX_TEST_FE_36(m, x, ...) m(x) OX_TEST_FE_35(m, __VA_ARGS__)
#define OX_TEST_FE_37(m, x, ...) m(x) OX_TEST_FE_36(m, __VA_ARGS__)
#define OX_TEST_FE_38(m, x, ...) m(x) OX_TEST_FE_37(m, __VA_ARGS__)
#define OX_TEST_FE_39(m, x, ...) m(x) OX_TEST_FE_38(m, __VA_ARGS__)
#define OX_TEST_FE_40(m, x, ...) m(x) OX_TEST_FE_39(m, __VA_ARGS__)
#define OX_TEST_FE_41(m, x, ...) m(x) OX_TEST_FE_40(m, __VA_ARGS__)
#define OX_TEST_FE_42(m, x, ...) m(x) OX_TEST_FE_41(m, __VA_ARGS__)
#define OX_TEST_FE_43(m, x, ...) m(x) OX_TEST_FE_42(m, __VA_ARGS__)
#define OX_TEST_FE_44(m, x, ...) m(x) OX_TEST_FE_43(m, __VA_ARGS__)
#define OX_TEST_FE_45(m, x, ...) m(x) OX_TEST_FE_44(m, __VA_ARGS__)
#define OX_TEST_FE_46(m, x, ...) m(x) OX_TEST_FE_45(m, __VA_ARGS__)
#define OX_TEST_FE_47(m, x, ...) m(x) OX_TEST_FE_46(m, __VA_ARGS__)
#define OX_TEST_FE_48(m, x, ...) m(x) OX_TEST_FE_47(m, __VA_ARGS__)
#define OX_TEST_FE_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                        _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30,  \
                        _31, _32, _33, _34, _35, _36, _37, _38, _39, _40, _41, _42, _43, _44,  \
                        _45, _46, _47, _48, NAME, ...)                                         \
    NAME
#define OX_TEST_FOREACH(m, ...)                                                                \
    OX_TEST_FE_PICK(__VA_ARGS__, OX_TEST_FE_48, OX_TEST_FE_47, OX_TEST_FE_46, OX_TEST_FE_45,   \
                    OX_TEST_FE_44, OX_TEST_FE_43, OX_TEST_FE_42, OX_TEST_FE_41, OX_TEST_FE_40, \
                    OX_TEST_FE_39, OX_TEST_FE_38, OX_TEST_FE_37, OX_TEST_FE_36, OX_TEST_FE_35, \
                    OX_TEST_FE_34, OX_TEST_FE_33, OX_TEST_FE_32, OX_TEST_FE_31, OX_TEST_FE_30, \
                    OX_TEST_FE_29, OX_TEST_FE_28, OX_TEST_FE_27, OX_TEST_FE_26, OX_TEST_FE_25, \
                    OX_TEST_FE_24, OX_TEST_FE_23, OX_TEST_FE_22, OX_TEST_FE_21, OX_TEST_FE_20, \
                    OX_TEST_FE_19, OX_TEST_FE_18, OX_TEST_FE_17, OX_TEST_FE_16, OX_TEST_FE_15, \
                    OX_TEST_FE_14, OX_TEST_FE_13, OX_TEST_FE_12, OX_TEST_FE_11, OX_TEST_FE_10, \
                    OX_TEST_FE_9, OX_TEST_FE_8, OX_TEST_FE_7, OX_TEST_FE_6, OX_TEST_FE_5,      \
                    OX_TEST_FE_4, OX_TEST_FE_3, OX_TEST_FE_2, OX_TEST_FE_1)                    \
    (m, __VA_ARGS__)

#endif /* OX_TEST_H */
