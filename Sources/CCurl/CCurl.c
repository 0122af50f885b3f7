/* The libcurl function table, filled once by dlopen/dlsym (see include/CCurl.h). */
#define CURL_DISABLE_TYPECHECK 1
#include "CCurl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#ifdef __APPLE__
const char *const rk_curl_library_name = "libcurl.4.dylib";
#else
const char *const rk_curl_library_name = "libcurl.so.4";
#endif

/* Written only inside pthread_once's initialiser, before `loaded` is released; read only after `loaded` was
   acquired (or after pthread_once returned), so every reader sees the whole table. */
static struct {
    __typeof__(&curl_global_init) global_init;
    __typeof__(&curl_easy_init) easy_init;
    __typeof__(&curl_easy_cleanup) easy_cleanup;
    __typeof__(&curl_easy_reset) easy_reset;
    __typeof__(&curl_easy_perform) easy_perform;
    __typeof__(&curl_easy_setopt) easy_setopt;
    __typeof__(&curl_easy_getinfo) easy_getinfo;
    __typeof__(&curl_easy_strerror) easy_strerror;
    __typeof__(&curl_slist_append) slist_append;
    __typeof__(&curl_slist_free_all) slist_free_all;
} api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_status = CURLE_FAILED_INIT;
static char load_error[512];
/* Set last, after the table and curl_global_init: the wrappers check it, so none calls through an empty table. */
static atomic_int loaded;

static void load(void) {
    void *lib = dlopen(rk_curl_library_name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "%s", e ? e : "dlopen failed");
        return;
    }
#define RESOLVE(field, name)                                                                            \
    do {                                                                                                \
        *(void **)&api.field = dlsym(lib, name);                                                        \
        if (!api.field) {                                                                               \
            snprintf(load_error, sizeof load_error, "%s has no symbol %s", rk_curl_library_name, name); \
            return;                                                                                     \
        }                                                                                               \
    } while (0)
    RESOLVE(global_init, "curl_global_init");
    RESOLVE(easy_init, "curl_easy_init");
    RESOLVE(easy_cleanup, "curl_easy_cleanup");
    RESOLVE(easy_reset, "curl_easy_reset");
    RESOLVE(easy_perform, "curl_easy_perform");
    RESOLVE(easy_setopt, "curl_easy_setopt");
    RESOLVE(easy_getinfo, "curl_easy_getinfo");
    RESOLVE(easy_strerror, "curl_easy_strerror");
    RESOLVE(slist_append, "curl_slist_append");
    RESOLVE(slist_free_all, "curl_slist_free_all");
#undef RESOLVE
    /* curl_global_init is not thread-safe: it runs here, once, before any handle exists. The library stays open
       for the life of the process (handles may live until exit). */
    CURLcode rc = api.global_init(CURL_GLOBAL_ALL);
    if (rc != CURLE_OK) {
        snprintf(load_error, sizeof load_error, "curl_global_init failed: %s (curl error %d)",
                 api.easy_strerror(rc), (int)rc);
        load_status = (int)rc;
        return;
    }
    load_status = CURLE_OK;
    atomic_store_explicit(&loaded, 1, memory_order_release);
}

int rk_curl_load(const char **error) {
    pthread_once(&load_once, load);
    if (error) *error = load_status == CURLE_OK ? NULL : load_error;
    return load_status;
}

int rk_curl_is_loaded(void) { return atomic_load_explicit(&loaded, memory_order_acquire); }

#define READY (atomic_load_explicit(&loaded, memory_order_acquire))

CURL *rk_curl_easy_init(void) { return READY ? api.easy_init() : NULL; }
void rk_curl_easy_cleanup(CURL *h) { if (h && READY) api.easy_cleanup(h); }
void rk_curl_easy_reset(CURL *h) { if (READY) api.easy_reset(h); }
CURLcode rk_curl_easy_perform(CURL *h) { return READY ? api.easy_perform(h) : CURLE_FAILED_INIT; }
const char *rk_curl_easy_strerror(CURLcode code) {
    return READY ? api.easy_strerror(code) : "libcurl is not loaded";
}
struct curl_slist *rk_curl_slist_append(struct curl_slist *list, const char *s) {
    return READY ? api.slist_append(list, s) : NULL;
}
void rk_curl_slist_free_all(struct curl_slist *list) { if (list && READY) api.slist_free_all(list); }

#define SETOPT(h, o, v) (READY ? api.easy_setopt((h), (o), (v)) : CURLE_FAILED_INIT)
#define GETINFO(h, i, v) (READY ? api.easy_getinfo((h), (i), (v)) : CURLE_FAILED_INIT)

CURLcode rk_curl_setopt_long(CURL *h, CURLoption o, long v) { return SETOPT(h, o, v); }
CURLcode rk_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return SETOPT(h, o, v); }
CURLcode rk_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return SETOPT(h, o, v); }
CURLcode rk_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return SETOPT(h, o, v); }
CURLcode rk_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return SETOPT(h, o, v); }
CURLcode rk_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return GETINFO(h, i, v); }
CURLcode rk_curl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return GETINFO(h, i, v); }
CURLcode rk_curl_setopt_write_function(CURL *h, rk_curl_data_callback cb) { return SETOPT(h, CURLOPT_WRITEFUNCTION, cb); }
CURLcode rk_curl_setopt_header_function(CURL *h, rk_curl_data_callback cb) { return SETOPT(h, CURLOPT_HEADERFUNCTION, cb); }
CURLcode rk_curl_setopt_read_function(CURL *h, rk_curl_data_callback cb) { return SETOPT(h, CURLOPT_READFUNCTION, cb); }
CURLcode rk_curl_setopt_xferinfo_function(CURL *h, rk_curl_xferinfo_callback cb) {
    return SETOPT(h, CURLOPT_XFERINFOFUNCTION, cb);
}

static int khfunc_strict(CURL *easy, const struct curl_khkey *known, const struct curl_khkey *found,
                         enum curl_khmatch match, void *clientp) {
    (void)easy;
    (void)known;
    struct rk_curl_khresult *r = (struct rk_curl_khresult *)clientp;
    if (r) {
        r->called = 1;
        r->match = (int)match;
        r->found_len = 0;
        if (found && found->key && found->len > 0 && r->found && found->len <= r->found_cap) {
            memcpy(r->found, found->key, found->len);
            r->found_len = found->len;
        }
    }
    return match == CURLKHMATCH_OK ? CURLKHSTAT_FINE : CURLKHSTAT_REJECT;
}

CURLcode rk_curl_setopt_ssh_strict_keyfunction(CURL *h, struct rk_curl_khresult *r) {
    CURLcode c = SETOPT(h, CURLOPT_SSH_KEYFUNCTION, khfunc_strict);
    if (c != CURLE_OK) return c;
    return SETOPT(h, CURLOPT_SSH_KEYDATA, (void *)r);
}
