#ifndef LAUNCHER_SHIMS_H
#define LAUNCHER_SHIMS_H
#include <malloc.h>
/// Tunes glibc malloc: keep large blocks on the heap (no mmap/munmap per 4 MiB liblz4 buffer).
static inline void launcher_tune_malloc(void) {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}
#endif
