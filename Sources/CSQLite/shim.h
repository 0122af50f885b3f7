#ifndef RK_CSQLITE_SHIM_H
#define RK_CSQLITE_SHIM_H
#include <sqlite3.h>
#include <stdint.h>
#include <unistd.h>

/// SQLITE_TRANSIENT is a macro casting -1 to a function pointer; Swift cannot import it.
static inline sqlite3_destructor_type rk_sqlite_transient(void) { return SQLITE_TRANSIENT; }

/// Typed wrapper for the variadic sqlite3_file_control with an int argument.
static inline int rk_sqlite_file_control_int(sqlite3 *_Nonnull db, const char *_Nonnull schema, int op, int *_Nonnull value) {
    return sqlite3_file_control(db, schema, op, value);
}
/* A busy handler that retries often: SQLite's own (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25 ms...
   between attempts, so a lock held for 2 ms can cost 100 ms. This one sleeps 100 us for the first 2 ms,
   then 1 ms, and gives up after about `arg` milliseconds. */
static int rk_sqlite_fine_busy(void *_Nullable arg, int count) {
    long limit_ms = (long)(intptr_t)arg;
    long waited_us = count < 20 ? (long)count * 100 : 2000 + (long)(count - 20) * 1000;
    if (waited_us >= limit_ms * 1000) return 0;
    usleep(count < 20 ? 100 : 1000);
    return 1;
}
static inline int rk_sqlite_set_busy_timeout(sqlite3 *_Nonnull db, int millis) {
    return sqlite3_busy_handler(db, millis > 0 ? rk_sqlite_fine_busy : 0, (void *)(intptr_t)millis);
}
/* No page cache allocated up front: by default every connection takes 20 pages (about 90 KB) on its first read,
   which for our three mostly idle connections per database was most of an idle database's memory. Must run before
   SQLite initializes (the first connection); returns SQLITE_MISUSE after. */
static inline int rk_sqlite_no_initial_page_cache(void) {
    return sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
}
/* A full memory barrier, for writers of memory shared with other processes (the streaming replica's wal-index). */
static inline void rk_memory_barrier(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/* Typed wrapper for the variadic sqlite3_db_config with an int setting (e.g. SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE). */
static inline int rk_sqlite_db_config_int(sqlite3 *_Nonnull db, int op, int value) {
    int out = 0;
    return sqlite3_db_config(db, op, value, &out);
}
#endif
