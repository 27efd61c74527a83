/* A fast hash of a whole file (cli_file_hash): XXH3-64 from Debian's
 * libxxhash over pieces of 64 MiB hashed on all cores, the pieces' hashes
 * then hashed in order, so the result does not depend on the number of
 * threads. Kept in $XDG_CACHE_HOME/openxpu/file-hashes by path, size,
 * modification time, device and inode, so a model file is read once. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef OX_HAVE_XXHASH
#include <xxhash.h>
#endif

#define PIECE ((size_t)64 << 20)
#define MAX_HASH_THREADS 16

/* One piece's hash: XXH3-64, or FNV-1a 64 where the build has no libxxhash
 * (slower, same guarantees for the comparison it serves). */
static uint64_t hash_bytes(const void *data, size_t n)
{
#ifdef OX_HAVE_XXHASH
    return (uint64_t)XXH3_64bits(data, n);
#else
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
#endif
}

typedef struct hash_job {
    const unsigned char *data;
    size_t size, pieces;
    uint64_t *out;
    int thread, threads;
} hash_job;

uint64_t cli_bytes_hash(const void *data, size_t n)
{
    return hash_bytes(data, n);
}

const char *cli_bytes_hash_name(void)
{
#ifdef OX_HAVE_XXHASH
    return "xxh3-64";
#else
    return "fnv1a-64";
#endif
}

static void *hash_pieces(void *arg)
{
    hash_job *j = arg;
    for (size_t i = (size_t)j->thread; i < j->pieces; i += (size_t)j->threads) {
        size_t at = i * PIECE, n = j->size - at < PIECE ? j->size - at : PIECE;
        j->out[i] = hash_bytes(j->data + at, n);
    }
    return NULL;
}

static void cache_path(char *out, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(out, cap, "%s/openxpu/file-hashes", xdg);
    else snprintf(out, cap, "%s/.cache/openxpu/file-hashes", home && *home ? home : "/tmp");
}

/* The identity a cached hash is kept under. */
static void identity(const struct stat *st, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%llu %lld.%09ld %llu %llu %s", (unsigned long long)st->st_size,
             (long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec,
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino, path);
}

static bool cache_lookup(const char *id, uint64_t *hash)
{
    char file[1024], line[4096 + 64];
    cache_path(file, sizeof file);
    FILE *f = fopen(file, "r");
    if (!f) return false;
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *space = strchr(line, ' ');
        if (space && strcmp(space + 1, id) == 0) {
            *hash = strtoull(line, NULL, 16);
            found = true; /* the last line for it wins */
        }
    }
    fclose(f);
    return found;
}

static void cache_store(const char *id, uint64_t hash)
{
    char file[1024];
    cache_path(file, sizeof file);
    char *slash = strrchr(file, '/');
    if (slash) { /* the directories, as the runtime's cache makes them */
        *slash = '\0';
        char *sub = strrchr(file, '/');
        if (sub) {
            *sub = '\0';
            mkdir(file, 0755);
            *sub = '/';
        }
        mkdir(file, 0755);
        *slash = '/';
    }
    FILE *f = fopen(file, "a");
    if (!f) return;
    fprintf(f, "%016llx %s\n", (unsigned long long)hash, id);
    fclose(f);
}

int cli_file_hash(const cli_command *command, const char *path, uint64_t *hash, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return cli_error(command, "cannot read %s: %s", path, strerror(e));
    }
    *size = (uint64_t)st.st_size;
    char id[4200];
    identity(&st, path, id, sizeof id);
    if (cache_lookup(id, hash)) {
        close(fd);
        return CLI_EXIT_OK;
    }
    size_t n = (size_t)st.st_size, pieces = n ? (n + PIECE - 1) / PIECE : 0;
    void *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (n && map == MAP_FAILED) return cli_error(command, "cannot map %s: %s", path, strerror(errno));
    uint64_t *piece_hash = calloc(pieces + 1, sizeof *piece_hash);
    if (!piece_hash) {
        if (map) munmap(map, n);
        return cli_error(command, "out of memory");
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores < 1 ? 1 : cores > MAX_HASH_THREADS ? MAX_HASH_THREADS : (int)cores;
    if ((size_t)threads > pieces) threads = pieces ? (int)pieces : 1;
    hash_job jobs[MAX_HASH_THREADS];
    pthread_t tid[MAX_HASH_THREADS];
    bool started[MAX_HASH_THREADS] = {false};
    madvise(map, n, MADV_SEQUENTIAL);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (hash_job){map, n, pieces, piece_hash, t, threads};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, hash_pieces, &jobs[t]) == 0;
    }
    for (int t = 1; t < threads; t++)
        if (!started[t]) hash_pieces(&jobs[t]);
    hash_pieces(&jobs[0]);
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    piece_hash[pieces] = *size; /* the length, so that trailing zeros count */
    *hash = hash_bytes(piece_hash, (pieces + 1) * sizeof *piece_hash);
    free(piece_hash);
    if (map) munmap(map, n);
    cache_store(id, *hash);
    return CLI_EXIT_OK;
}
