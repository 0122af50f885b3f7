#ifndef LAUNCHER_SHIMS_H
#define LAUNCHER_SHIMS_H
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>

/// Tunes glibc malloc: keep large blocks on the heap (no mmap/munmap per 4 MiB liblz4 buffer).
static inline void launcher_tune_malloc(void) {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}

/// Caps glibc's malloc arenas at `n` unless the environment sets their number (`MALLOC_ARENA_MAX`, or `arena_max`
/// in `GLIBC_TUNABLES`). Takes effect for arenas created afterwards: call it before the threads start.
static inline void launcher_cap_malloc_arenas(int n) {
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (getenv("MALLOC_ARENA_MAX") == NULL && (tunables == NULL || strstr(tunables, "arena_max") == NULL)) {
        mallopt(M_ARENA_MAX, n);
    }
}

// ---- Supervision (Sources/Launcher/Supervision): macros and variadics Swift cannot import. ----

/// WIFEXITED.
static inline int launcher_wifexited(int status) { return WIFEXITED(status); }
/// WEXITSTATUS.
static inline int launcher_wexitstatus(int status) { return WEXITSTATUS(status); }
/// WIFSIGNALED.
static inline int launcher_wifsignaled(int status) { return WIFSIGNALED(status); }
/// WTERMSIG.
static inline int launcher_wtermsig(int status) { return WTERMSIG(status); }

/// SIGRTMIN (a function call in glibc, not a constant).
static inline int launcher_sigrtmin(void) { return SIGRTMIN; }
/// SIGRTMAX.
static inline int launcher_sigrtmax(void) { return SIGRTMAX; }

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of our descendants are re-parented to us, not to init.
static inline int launcher_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL);
}

/// glibc >= 2.34: the child closes every descriptor >= `from` before exec.
static inline int launcher_spawn_addclosefrom(posix_spawn_file_actions_t *_Nonnull actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

/// glibc >= 2.35: the child makes its (new) process group the foreground group of terminal `fd`.
static inline int launcher_spawn_addtcsetpgrp(posix_spawn_file_actions_t *_Nonnull actions, int fd) {
    return posix_spawn_file_actions_addtcsetpgrp_np(actions, fd);
}
#endif
