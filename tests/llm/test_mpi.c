/* ox run --mpi: the layers split across the ranks of mpirun give the very
 * text of one process (every rank runs the CPU here, and each layer is
 * computed the same way wherever it runs); ranks that read different model
 * files are refused before any work; a build without MPI says MPI is off. */
#include <openxpu/openxpu.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ox_test.h"
#include "run_ox.h"
#include "llm/tiny_model.h"

static void write_tiny(const char *arch, char *path, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/ox-mpi-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", arch);
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    char vocab[4096];
    tiny_vocab_path(arch, vocab, sizeof vocab);
    ox_context *ctx;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS};
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    ASSERT_MSG(tiny_model_write(ctx, arch, vocab, path) == OX_OK, "%s", tiny_model_errmsg(ctx));
    ox_context_free(ctx);
}

static const char *ox_bin(void)
{
    const char *bin = getenv("OX_BIN");
    if (!bin || !*bin) OX_SKIP("the ox tool was not built");
    return bin;
}

#ifdef OX_TEST_HAVE_MPI
static void allow_root(void)
{
    /* Open MPI refuses to run as root (as CI does) without these. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    /* In the sanitizer build, LeakSanitizer reports Open MPI's own
     * allocations that it keeps until exit; ours are checked by every
     * other test, which runs the same code without MPI. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
}

static void same_text_on_two_ranks(const char *arch, const char *ranks)
{
    const char *bin = ox_bin();
    allow_root();
    char model[4096];
    write_tiny(arch, model, sizeof model);
    ox_run *one = RUN_OX("run", model, "-p", "The quick brown fox", "-n", "24", "--temp", "0",
                         "--cache-type", "f32");
    ASSERT_MSG(one->status == 0, "ox run: %s", one->err);
    ox_run *two = RUN_PROGRAM(OX_TEST_MPIEXEC, "-np", (char *)ranks, (char *)bin, "run", model,
                              "-p", "The quick brown fox", "-n", "24", "--temp", "0",
                              "--cache-type", "f32", "--mpi");
    unlink(model);
    ASSERT_MSG(two->status == 0, "mpirun -np %s ox run --mpi: %s", ranks, two->err);
    ASSERT_MSG(strlen(one->out) > 0, "no text");
    ASSERT_MSG(strcmp(one->out, two->out) == 0, "one process: \"%s\"\n%s ranks: \"%s\"",
               one->out, ranks, two->out);
    ASSERT_CONTAINS(two->err, "rank 1 of");
    printf("  tiny-%s: the same %zu bytes of text from 1 process and from %s ranks\n", arch,
           strlen(one->out), ranks);
    free(one);
    free(two);
}

OX_TEST(two_ranks_give_one_process_text_llama) { same_text_on_two_ranks("llama", "2"); }
OX_TEST(two_ranks_give_one_process_text_qwen2) { same_text_on_two_ranks("qwen2", "2"); }

OX_TEST(ranks_must_agree_on_the_model)
{
    const char *bin = ox_bin();
    allow_root();
    char a[4096], b[4096];
    write_tiny("llama", a, sizeof a);
    write_tiny("qwen3", b, sizeof b);
    /* MPMD: rank 0 reads one file, rank 1 another */
    ox_run *r = RUN_PROGRAM(OX_TEST_MPIEXEC, "-np", "1", (char *)bin, "run", a, "-p", "hi",
                            "--mpi", ":", "-np", "1", (char *)bin, "run", b, "-p", "hi", "--mpi");
    unlink(a);
    unlink(b);
    ASSERT_MSG(r->status != 0, "different files were accepted: %s", r->err);
    ASSERT_CONTAINS(r->err, "the ranks' model files differ");
    ASSERT_CONTAINS(r->err, a);
    ASSERT_CONTAINS(r->err, b);
    ASSERT(strlen(r->out) == 0);
    free(r);
    /* one byte changed in the last weights (issue 16: only the first MiB
     * was compared): the whole file is hashed */
    write_tiny("llama", a, sizeof a);
    FILE *fa = fopen(a, "rb");
    ASSERT(fa != NULL);
    fseek(fa, 0, SEEK_END);
    long size = ftell(fa);
    fseek(fa, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)size);
    ASSERT(bytes && fread(bytes, 1, (size_t)size, fa) == (size_t)size);
    fclose(fa);
    bytes[size - 1] ^= 0x01;
    ASSERT(strlen(a) + 9 <= sizeof b);
    memcpy(b, a, strlen(a));
    memcpy(b + strlen(a), ".flipped", 9);
    FILE *fb = fopen(b, "wb");
    ASSERT(fb && fwrite(bytes, 1, (size_t)size, fb) == (size_t)size);
    fclose(fb);
    free(bytes);
    r = RUN_PROGRAM(OX_TEST_MPIEXEC, "-np", "1", (char *)bin, "run", a, "-p", "hi", "--mpi", ":",
                    "-np", "1", (char *)bin, "run", b, "-p", "hi", "--mpi");
    unlink(a);
    unlink(b);
    ASSERT_MSG(r->status != 0, "a file with its last byte changed was accepted: %s", r->err);
    ASSERT_CONTAINS(r->err, "the ranks' model files differ");
    ASSERT_CONTAINS(r->err, b);
    printf("  %ld-byte models, the last byte flipped: refused\n", size);
    free(r);
}

OX_TEST_MAIN(two_ranks_give_one_process_text_llama, two_ranks_give_one_process_text_qwen2,
             ranks_must_agree_on_the_model)
#else
OX_TEST(without_mpi_the_option_says_so)
{
    ox_bin();
    char model[4096];
    write_tiny("llama", model, sizeof model);
    ox_run *r = RUN_OX("run", model, "-p", "hi", "--mpi");
    unlink(model);
    ASSERT_EQ(r->status, 1);
    ASSERT_CONTAINS(r->err, "MPI is off in this build");
    printf("  this build has no MPI: the mpirun tests cannot run here\n");
    free(r);
}

/* ... and everything else runs as ever. */
OX_TEST(without_mpi_one_process_runs)
{
    ox_bin();
    char model[4096];
    write_tiny("qwen2", model, sizeof model);
    ox_run *r = RUN_OX("run", model, "-p", "hi", "-n", "4", "--temp", "0");
    unlink(model);
    ASSERT_MSG(r->status == 0, "ox run: %s", r->err);
    ASSERT_CONTAINS(r->err, "generation: 4 tokens");
    free(r);
}

OX_TEST_MAIN(without_mpi_the_option_says_so, without_mpi_one_process_runs)
#endif
