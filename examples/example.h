/* What the three examples share: read a kernel file, then run one check on
 * every device OpenXPU finds, each against a host result, and say per
 * device what happened. Header-only, so each example is one file plus its
 * kernel. */
#ifndef OPENXPU_EXAMPLE_H
#define OPENXPU_EXAMPLE_H

#include <openxpu/openxpu.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EXAMPLE_KERNEL_DIR
#define EXAMPLE_KERNEL_DIR "kernels"
#endif

/* Run the example on one device with its program built: print what it
 * checked, return 0 when the device's result matched the host's. */
typedef int (*example_fn)(ox_device *device, ox_queue *queue, ox_program *program);

/* Stop on a library error: print it and return 1 from the calling
 * function. */
#define EXAMPLE_CHECK(ctx, call)                                                     \
    do {                                                                             \
        ox_status s_ = (call);                                                       \
        if (s_ != OX_OK) {                                                           \
            fprintf(stderr, "    %s failed: %s\n", #call, ox_errmsg(ctx));           \
            return 1;                                                                \
        }                                                                            \
    } while (0)

static char *example_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1))) {
        if (fread(text, 1, (size_t)n, f) != (size_t)n) {
            free(text);
            text = NULL;
        } else {
            text[n] = '\0';
        }
    }
    fclose(f);
    return text;
}

/* argv[1], if given, is the directory of the kernel files. Exit status 0
 * when every device that runs user kernels matched the host and at least
 * one did. */
static int example_main(int argc, char **argv, const char *kernel_file, const char *options,
                        example_fn run)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", argc > 1 ? argv[1] : EXAMPLE_KERNEL_DIR, kernel_file);
    char *source = example_read(path);
    if (!source) {
        fprintf(stderr, "cannot read %s (pass the kernels directory as the argument)\n", path);
        return 1;
    }
    ox_context *ctx;
    if (ox_context_create(NULL, &ctx) != OX_OK) {
        fprintf(stderr, "no context: %s\n", ox_errmsg(NULL));
        free(source);
        return 1;
    }
    int count = 0, ran = 0, failed = 0;
    ox_device_count(ctx, &count);
    for (int i = 0; i < count; i++) {
        ox_device *device;
        ox_device_info info = {.struct_size = sizeof info};
        if (ox_device_get(ctx, i, &device) != OX_OK || ox_device_get_info(device, &info) != OX_OK)
            continue;
        printf("%s (%s):\n", info.id, info.name);
        ox_program *program;
        ox_status s = ox_program_build(device, source, options, &program);
        if (s == OX_ERR_UNSUPPORTED) { /* no C compiler for the CPU, say */
            printf("    skipped: %s\n", ox_errmsg(ctx));
            continue;
        }
        ox_queue *queue = NULL;
        if (s != OX_OK || ox_queue_create(device, &queue) != OX_OK) {
            printf("    FAILED: %s\n", ox_errmsg(ctx));
            failed++;
            continue;
        }
        int bad = run(device, queue, program);
        printf("    %s\n", bad ? "FAILED" : "ok");
        failed += bad != 0;
        ran++;
        ox_queue_free(queue);
        ox_program_free(program);
    }
    ox_context_free(ctx);
    free(source);
    if (ran == 0) printf("no device here runs user kernels\n");
    return failed || ran == 0;
}

#endif /* OPENXPU_EXAMPLE_H */
