/* A user program: builds against the installed OpenXPU and runs a buffer
 * round trip on the default device. Prints "consumer ok" on success. */
#include <openxpu/openxpu.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    ox_context *ctx;
    ox_device *dev;
    ox_buffer *buf;
    const char msg[] = "hello from a user program";
    char back[sizeof msg] = {0};
    if (ox_context_create(NULL, &ctx) != OX_OK) {
        fprintf(stderr, "consumer: %s\n", ox_errmsg(NULL));
        return 1;
    }
    if (ox_device_default(ctx, &dev) != OX_OK || ox_buffer_alloc(dev, sizeof msg, &buf) != OX_OK ||
        ox_buffer_write(buf, 0, msg, sizeof msg) != OX_OK ||
        ox_buffer_read(buf, 0, back, sizeof back) != OX_OK) {
        fprintf(stderr, "consumer: %s\n", ox_errmsg(ctx));
        ox_context_free(ctx);
        return 1;
    }
    int ok = memcmp(msg, back, sizeof msg) == 0;
    printf("consumer %s (OpenXPU %s, header %s)\n", ok ? "ok" : "MISMATCH", ox_version_string(),
           OX_VERSION_STRING);
    ox_context_free(ctx);
    return ok ? 0 : 1;
}
