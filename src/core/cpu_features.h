/* Run-time detection of the host CPU: SIMD features (with the OS's support
 * for saving the wider registers), name, vendor, cores and memory. */
#ifndef OX_CORE_CPU_FEATURES_H
#define OX_CORE_CPU_FEATURES_H

#include <stdint.h>

typedef struct ox__cpu_info {
    uint64_t features;   /* OX_FEATURE_BIT(...) of the CPU feature bits */
    char name[128];      /* "AMD EPYC 9B14 96-Core Processor" */
    char vendor[64];     /* "AMD", "Intel", "ARM", ... */
    int logical_cpus;    /* CPUs this process may run on */
    uint64_t memory_bytes; /* physical memory */
    uint32_t clock_mhz;  /* 0 if unknown */
} ox__cpu_info;

/* Detect once; later calls return the same cached answer. Never fails. */
const ox__cpu_info *ox__cpu_detect(void);

#endif /* OX_CORE_CPU_FEATURES_H */
