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
/* ---- Read-ahead VFS for one read-only pass over a database (the restore's PRAGMA quick_check) ----
   SQLite reads a database page by page: quick_check of a 300 MB database made about 147,000 pread(2)s of 4 KiB,
   a third of a restore's CPU. Opened through "rk-readahead", the main database file is read in 64 KiB windows
   kept in a small LRU (16 windows, 1 MiB per connection), so the same pass makes about 12 times fewer calls;
   every other file, and every read that is not inside the known file size, goes straight to the default VFS.
   Writes, truncations, dropping the last file lock and every wal-index lock (a transaction's start and end in WAL
   mode) drop the windows, so they never outlive the transaction that read them. Memory stays bounded (no memory map: its pages would count in RSS). */
#include <string.h>
#define RK_RA_WINDOW (64 * 1024)
#define RK_RA_SLOTS 16
typedef struct rk_ra_file {
    sqlite3_file base;
    sqlite3_file *_Nullable real;
    unsigned char *_Nullable buf;        /* RK_RA_SLOTS windows; NULL: no read-ahead for this file */
    sqlite3_int64 size;                  /* file size, -1 while unknown */
    sqlite3_int64 tag[RK_RA_SLOTS];      /* window number held by each slot, -1 for none */
    unsigned long use[RK_RA_SLOTS];      /* last use, for LRU */
    unsigned long clock;
} rk_ra_file;
/* State in function-local statics: Swift's importer emits the functions of this header, not its globals. */
static sqlite3_vfs *_Nullable *_Nonnull rk_ra_root_slot(void) { static sqlite3_vfs *root; return &root; }
static sqlite3_vfs *_Nonnull rk_ra_vfs_slot(void) { static sqlite3_vfs vfs; return &vfs; }
#define rk_ra_root (*rk_ra_root_slot())
#define RK_RA_REAL(f) (((rk_ra_file *)(f))->real)
static void rk_ra_drop(rk_ra_file *_Nonnull p) {
    for (int i = 0; i < RK_RA_SLOTS; i++) { p->tag[i] = -1; p->use[i] = 0; }
    p->size = -1;
}
static int rk_ra_close(sqlite3_file *_Nonnull f) {
    rk_ra_file *p = (rk_ra_file *)f;
    int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
    sqlite3_free(p->real);
    sqlite3_free(p->buf);
    p->real = 0;
    p->buf = 0;
    return rc;
}
static int rk_ra_read(sqlite3_file *_Nonnull f, void *_Nonnull out, int amt, sqlite3_int64 off) {
    rk_ra_file *p = (rk_ra_file *)f;
    sqlite3_file *r = p->real;
    if (p->buf && amt > 0 && off >= 0) {
        sqlite3_int64 w = off / RK_RA_WINDOW, start = w * RK_RA_WINDOW;
        if (p->size < 0 && r->pMethods->xFileSize(r, &p->size) != SQLITE_OK) p->size = -1;
        if (off + amt <= start + RK_RA_WINDOW && p->size >= 0 && off + amt <= p->size) {
            int slot = -1, victim = 0;
            for (int i = 0; i < RK_RA_SLOTS; i++) {
                if (p->tag[i] == w) { slot = i; break; }
                if (p->use[i] < p->use[victim]) victim = i;
            }
            if (slot < 0) {
                int n = (int)(p->size - start < RK_RA_WINDOW ? p->size - start : RK_RA_WINDOW);
                p->tag[victim] = -1;
                if (r->pMethods->xRead(r, p->buf + (size_t)victim * RK_RA_WINDOW, n, start) == SQLITE_OK) {
                    p->tag[victim] = w;
                    slot = victim;
                }
            }
            if (slot >= 0) {
                p->use[slot] = ++p->clock;
                memcpy(out, p->buf + (size_t)slot * RK_RA_WINDOW + (off - start), (size_t)amt);
                return SQLITE_OK;
            }
        }
    }
    return r->pMethods->xRead(r, out, amt, off);
}
static int rk_ra_write(sqlite3_file *_Nonnull f, const void *_Nonnull data, int amt, sqlite3_int64 off) {
    rk_ra_drop((rk_ra_file *)f);
    return RK_RA_REAL(f)->pMethods->xWrite(RK_RA_REAL(f), data, amt, off);
}
static int rk_ra_truncate(sqlite3_file *_Nonnull f, sqlite3_int64 size) {
    rk_ra_drop((rk_ra_file *)f);
    return RK_RA_REAL(f)->pMethods->xTruncate(RK_RA_REAL(f), size);
}
static int rk_ra_sync(sqlite3_file *_Nonnull f, int flags) { return RK_RA_REAL(f)->pMethods->xSync(RK_RA_REAL(f), flags); }
static int rk_ra_file_size(sqlite3_file *_Nonnull f, sqlite3_int64 *_Nonnull size) {
    return RK_RA_REAL(f)->pMethods->xFileSize(RK_RA_REAL(f), size);
}
static int rk_ra_lock(sqlite3_file *_Nonnull f, int level) { return RK_RA_REAL(f)->pMethods->xLock(RK_RA_REAL(f), level); }
static int rk_ra_unlock(sqlite3_file *_Nonnull f, int level) {
    /* Another process may change the file once no lock is held. */
    if (level == SQLITE_LOCK_NONE) rk_ra_drop((rk_ra_file *)f);
    return RK_RA_REAL(f)->pMethods->xUnlock(RK_RA_REAL(f), level);
}
static int rk_ra_check_reserved(sqlite3_file *_Nonnull f, int *_Nonnull out) {
    return RK_RA_REAL(f)->pMethods->xCheckReservedLock(RK_RA_REAL(f), out);
}
static int rk_ra_file_control(sqlite3_file *_Nonnull f, int op, void *_Nullable arg) {
    return RK_RA_REAL(f)->pMethods->xFileControl(RK_RA_REAL(f), op, arg);
}
static int rk_ra_sector_size(sqlite3_file *_Nonnull f) { return RK_RA_REAL(f)->pMethods->xSectorSize(RK_RA_REAL(f)); }
static int rk_ra_device_characteristics(sqlite3_file *_Nonnull f) {
    return RK_RA_REAL(f)->pMethods->xDeviceCharacteristics(RK_RA_REAL(f));
}
static int rk_ra_shm_map(sqlite3_file *_Nonnull f, int region, int size, int extend, void volatile *_Nullable *_Nonnull pp) {
    return RK_RA_REAL(f)->pMethods->xShmMap(RK_RA_REAL(f), region, size, extend, pp);
}
static int rk_ra_shm_lock(sqlite3_file *_Nonnull f, int offset, int n, int flags) {
    /* In WAL mode the file lock is kept across transactions, and another connection's checkpoint may rewrite
       pages between them: a transaction starts and ends with wal-index locks, so the windows live within one. */
    rk_ra_drop((rk_ra_file *)f);
    return RK_RA_REAL(f)->pMethods->xShmLock(RK_RA_REAL(f), offset, n, flags);
}
static void rk_ra_shm_barrier(sqlite3_file *_Nonnull f) { RK_RA_REAL(f)->pMethods->xShmBarrier(RK_RA_REAL(f)); }
static int rk_ra_shm_unmap(sqlite3_file *_Nonnull f, int del) { return RK_RA_REAL(f)->pMethods->xShmUnmap(RK_RA_REAL(f), del); }
static int rk_ra_fetch(sqlite3_file *_Nonnull f, sqlite3_int64 off, int amt, void *_Nullable *_Nonnull pp) {
    *pp = 0;  /* no memory map through this VFS: SQLite falls back to xRead */
    return SQLITE_OK;
}
static int rk_ra_unfetch(sqlite3_file *_Nonnull f, sqlite3_int64 off, void *_Nullable p) { return SQLITE_OK; }
static const sqlite3_io_methods rk_ra_methods = {
    3, rk_ra_close, rk_ra_read, rk_ra_write, rk_ra_truncate, rk_ra_sync, rk_ra_file_size, rk_ra_lock, rk_ra_unlock,
    rk_ra_check_reserved, rk_ra_file_control, rk_ra_sector_size, rk_ra_device_characteristics, rk_ra_shm_map,
    rk_ra_shm_lock, rk_ra_shm_barrier, rk_ra_shm_unmap, rk_ra_fetch, rk_ra_unfetch,
};
static int rk_ra_open(sqlite3_vfs *_Nonnull vfs, const char *_Nullable name, sqlite3_file *_Nonnull f, int flags,
                      int *_Nullable outFlags) {
    rk_ra_file *p = (rk_ra_file *)f;
    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)sqlite3_malloc(rk_ra_root->szOsFile);
    if (!p->real) return SQLITE_NOMEM;
    memset(p->real, 0, (size_t)rk_ra_root->szOsFile);
    int rc = rk_ra_root->xOpen(rk_ra_root, name, p->real, flags, outFlags);
    if (rc != SQLITE_OK || !p->real->pMethods || p->real->pMethods->iVersion < 3) {
        if (p->real->pMethods) p->real->pMethods->xClose(p->real);
        sqlite3_free(p->real);
        p->real = 0;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    if (flags & SQLITE_OPEN_MAIN_DB) p->buf = (unsigned char *)sqlite3_malloc(RK_RA_SLOTS * RK_RA_WINDOW);
    rk_ra_drop(p);
    p->base.pMethods = &rk_ra_methods;
    return SQLITE_OK;
}
static int rk_ra_delete(sqlite3_vfs *_Nonnull vfs, const char *_Nonnull name, int syncDir) {
    return rk_ra_root->xDelete(rk_ra_root, name, syncDir);
}
static int rk_ra_access(sqlite3_vfs *_Nonnull vfs, const char *_Nonnull name, int flags, int *_Nonnull out) {
    return rk_ra_root->xAccess(rk_ra_root, name, flags, out);
}
static int rk_ra_full_pathname(sqlite3_vfs *_Nonnull vfs, const char *_Nonnull name, int n, char *_Nonnull out) {
    return rk_ra_root->xFullPathname(rk_ra_root, name, n, out);
}
/* Registers "rk-readahead" over the default VFS (not as the default). Call once, before opening through it. */
static inline int rk_sqlite_register_readahead_vfs(void) {
    if (rk_ra_root) return SQLITE_OK;
    sqlite3_vfs *root = sqlite3_vfs_find(0);
    if (!root) return SQLITE_ERROR;
    sqlite3_vfs *vfs = rk_ra_vfs_slot();
    *vfs = *root;
    vfs->pNext = 0;
    vfs->zName = "rk-readahead";
    vfs->szOsFile = (int)sizeof(rk_ra_file);
    vfs->xOpen = rk_ra_open;
    vfs->xDelete = rk_ra_delete;
    vfs->xAccess = rk_ra_access;
    vfs->xFullPathname = rk_ra_full_pathname;
    rk_ra_root = root;
    return sqlite3_vfs_register(vfs, 0);
}
#endif
