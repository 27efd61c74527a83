/* Tunable kernel parameters: what each portable kernel family can vary
 * (tile sizes, work-group shape, vector width, variant), the defaults per
 * device class, and the tuned values a device's tuning file holds.
 *
 * The op layer (device_ops.c) asks ox__tune_get for the parameters of every
 * launch: the tuned entry for (device, family, class) when one exists and
 * is current, else the defaults. The tuner (tune_search.c, `ox tune`)
 * measures candidates and stores winners with ox__tune_put / ox__tune_save.
 *
 * Tuning file: <kernel cache dir>/tuning/<backend>-<device name>.txt, one
 * line per entry:
 *   ox-tune 1 FAMILY CLASS SOURCE DRIVER NAME=V,NAME=V,... SECONDS CHECK
 * SOURCE hashes the family's kernel source with its prelude, DRIVER the
 * driver version: an entry for other sources or another driver is stale.
 * CHECK hashes the rest of the line. Stale, corrupt or invalid entries are
 * ignored with a warning (the defaults run) and dropped by the next save. */
#ifndef OX_OPS_TUNE_H
#define OX_OPS_TUNE_H

#include <stdbool.h>

#include "core/core.h"

typedef enum ox__tune_family {
    OX__TUNE_MATMUL,      /* matmul.oxc matmul (float operands, M > 1): TK WG_M WG_N RM RN
                             VW STRM STRN PAD KWI MFIRST */
    OX__TUNE_MATVEC,      /* matmul.oxc matvec (float weights, M = 1): LANES ROWS CHUNK */
    OX__TUNE_QMATVEC,     /* quantized weights, one activation row: VARIANT (0 integer, 1 float) LANES ROWS DOT4 */
    OX__TUNE_QMATMUL,     /* quantized weights, M > 1: VARIANT (0 rows, 1 tiles) LANES ROWS MT DOT4 */
    OX__TUNE_ELEMENTWISE, /* contiguous elementwise, copy: VEC WG */
    OX__TUNE_ROWS,        /* contiguous rows (norms, softmax): LANES ROWS CHUNK */
    OX__TUNE_ATTENTION,   /* attention: WG SPLIT (0: by size, 1: none) LANES BQ BK */
    OX__TUNE_FAMILIES
} ox__tune_family;

#define OX__TUNE_MAX_PARAMS 12
#define OX__TUNE_MAX_CANDIDATES 8

typedef struct ox__tune_params {
    int v[OX__TUNE_MAX_PARAMS];
} ox__tune_params;

typedef struct ox__tune_family_desc {
    const char *name;        /* "qmatvec": ox tune --op NAME */
    const char *kernel_file; /* kernels/<file>.oxc, whose source keys the entries */
    int n_params;
    const char *param[OX__TUNE_MAX_PARAMS];
    int n_candidates[OX__TUNE_MAX_PARAMS];
    int candidates[OX__TUNE_MAX_PARAMS][OX__TUNE_MAX_CANDIDATES];
} ox__tune_family_desc;

const ox__tune_family_desc *ox__tune_family_get(ox__tune_family family);
/* The family called `name`, or -1. */
int ox__tune_family_find(const char *name);

/* Whether `p` can run on the device (work-group size, local memory) and
 * every value is one of the family's candidates. */
bool ox__tune_valid(const ox_device_info *info, ox__tune_family family, const ox__tune_params *p);

/* The defaults of the device's class (GPUs and accelerators; CPUs and other
 * devices), before any tuning; `cls` as for ox__tune_get (may be NULL). */
void ox__tune_defaults(const ox_device_info *info, ox__tune_family family, const char *cls,
                       ox__tune_params *out);

/* The parameters to run: the device's current tuned entry for (family,
 * cls), else the defaults. `cls` names the problem class: dtypes, "q4_k";
 * for matmul the two operands' dtypes and ".bt" when b is read along K
 * ("f32.f16.bt": weights stored as N rows of K).
 * *tuned (may be NULL) says which. Loads the tuning file on first use;
 * never fails (a file that cannot be read means defaults). */
void ox__tune_get(ox_device *device, ox__tune_family family, const char *cls,
                  ox__tune_params *out, bool *tuned);

/* The attention kernels (kernels/attention.oxc): RUN, the consecutive
 * elements a work-item takes where it takes several, for LANES lanes (16
 * elements in all: one per lane on GPUs, runs a CPU compiler vectorises);
 * the bytes of local memory attention_decode takes with head size D, WG
 * work-items, `rows` query rows and `kstep` keys per step, and
 * attention_tiled with head sizes D and Dv, BQ rows and BK keys per step. */
int ox__tune_attention_run(int lanes);
uint64_t ox__tune_attention_decode_bytes(int64_t D, int64_t lanes, int64_t wg, int64_t rows,
                                         int64_t kstep);
uint64_t ox__tune_attention_tiled_bytes(int64_t D, int64_t Dv, int64_t lanes, int64_t bq,
                                        int64_t bk);

/* "T=32,R=4,DOT4=1" into buf. */
const char *ox__tune_format(ox__tune_family family, const ox__tune_params *p, char *buf,
                            size_t cap);

/* Set the device's entry for (family, cls), in memory only (seconds: the
 * measured time, 0 if none); ox__tune_save writes every entry to the
 * tuning file. remove = true drops the entry instead. */
/* Entry i of the device's table (file order): false past the last. */
bool ox__tune_entry(ox_device *device, int i, ox__tune_family *family, char *cls, size_t cap,
                    ox__tune_params *out);
ox_status ox__tune_put(ox_device *device, ox__tune_family family, const char *cls,
                       const ox__tune_params *p, double seconds, bool remove);
ox_status ox__tune_save(ox_device *device);
/* The tuning file's path for the device (false when caching is off). */
bool ox__tune_path(ox_device *device, char *path, size_t cap);

/* One line of a tuning file. */
typedef struct ox__tune_line {
    int family;
    char cls[32];
    uint64_t source, driver; /* the hashes it was measured with */
    ox__tune_params params;  /* checked against the family's candidates */
    double seconds;
} ox__tune_line;

/* Parse one line (no newline) of a tuning file: NULL with *out filled, or
 * why the line is refused ("its checksum does not match", ...). Pure: the
 * fuzz target's entry. Whether the values suit a device is checked apart
 * (ox__tune_valid). */
const char *ox__tune_parse_line(const char *line, ox__tune_line *out);
/* The line for `e` with its checksum into buf (no newline); its length,
 * or a negative or too large value if it does not fit. */
int ox__tune_format_line(char *buf, size_t cap, const ox__tune_line *e);

/* Free a device's table (at context destruction). */
void ox__tune_free(ox_device *device);

#endif /* OX_OPS_TUNE_H */
