#ifndef RK_CSQLITE_SHIM_H
#define RK_CSQLITE_SHIM_H
#include <sqlite3.h>

/// SQLITE_TRANSIENT is a macro casting -1 to a function pointer; Swift cannot import it.
static inline sqlite3_destructor_type rk_sqlite_transient(void) { return SQLITE_TRANSIENT; }

/// Typed wrapper for the variadic sqlite3_file_control with an int argument.
static inline int rk_sqlite_file_control_int(sqlite3 *_Nonnull db, const char *_Nonnull schema, int op, int *_Nonnull value) {
    return sqlite3_file_control(db, schema, op, value);
}
#endif
