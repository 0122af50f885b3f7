#ifndef RK_CCURL_H
#define RK_CCURL_H
/* libcurl, loaded at run time. The launcher does not link libcurl: `rk_curl_load` opens it with dlopen the first
   time a component that talks HTTP or SFTP is created, so a launcher with only file replicas never maps libcurl
   and the ~30 libraries it pulls in (TLS, Kerberos, LDAP, HTTP/2, ...). The headers are still needed to build
   (types and constants): Debian's libcurl4-openssl-dev. Every curl function the package uses goes through the
   rk_curl_* functions below; calling a curl_* function directly fails at link time (nothing provides it). */
#if defined(__has_include) && !__has_include(<curl/curl.h>)
#error "libcurl headers not found: install libcurl4-openssl-dev (Debian/Ubuntu) or libcurl-devel"
#endif
#include <curl/curl.h>
#include <stddef.h>

/* The file name `rk_curl_load` opens ("libcurl.so.4" on Linux). */
extern const char *_Nonnull const rk_curl_library_name;

/* Opens libcurl, resolves the functions below and runs curl_global_init(CURL_GLOBAL_ALL), once per process and
   thread-safe (pthread_once: concurrent callers wait for the first). Returns 0 when libcurl is usable; otherwise a
   CURLcode-like non-zero (CURLE_FAILED_INIT for a missing library or symbol, curl_global_init's code) and, in
   *error, a static sentence of what failed (dlerror's text). The outcome is kept: later calls return it at once. */
int rk_curl_load(const char *_Nullable *_Nullable error);
/* Whether rk_curl_load has succeeded (does not load). */
int rk_curl_is_loaded(void);

/* The curl functions, through the table. Before a successful rk_curl_load they fail softly: NULL handles and
   lists, CURLE_FAILED_INIT, no-ops for the cleanups. */
CURL *_Nullable rk_curl_easy_init(void);
void rk_curl_easy_cleanup(CURL *_Nullable h);
void rk_curl_easy_reset(CURL *_Nonnull h);
CURLcode rk_curl_easy_perform(CURL *_Nonnull h);
const char *_Nonnull rk_curl_easy_strerror(CURLcode code);
struct curl_slist *_Nullable rk_curl_slist_append(struct curl_slist *_Nullable list, const char *_Nonnull s);
void rk_curl_slist_free_all(struct curl_slist *_Nullable list);

/* Typed wrappers for the variadic curl_easy_setopt / curl_easy_getinfo. */
CURLcode rk_curl_setopt_long(CURL *_Nonnull h, CURLoption o, long v);
CURLcode rk_curl_setopt_string(CURL *_Nonnull h, CURLoption o, const char *_Nullable v);
CURLcode rk_curl_setopt_pointer(CURL *_Nonnull h, CURLoption o, void *_Nullable v);
CURLcode rk_curl_setopt_off(CURL *_Nonnull h, CURLoption o, curl_off_t v);
CURLcode rk_curl_setopt_slist(CURL *_Nonnull h, CURLoption o, struct curl_slist *_Nullable v);
CURLcode rk_curl_getinfo_long(CURL *_Nonnull h, CURLINFO i, long *_Nonnull v);
CURLcode rk_curl_getinfo_off(CURL *_Nonnull h, CURLINFO i, curl_off_t *_Nonnull v);

/* Data callbacks: size_t cb(char *ptr, size_t size, size_t nmemb, void *userdata). */
typedef size_t (*rk_curl_data_callback)(char *_Nonnull ptr, size_t size, size_t nmemb, void *_Nullable userdata);
CURLcode rk_curl_setopt_write_function(CURL *_Nonnull h, rk_curl_data_callback _Nullable cb);
CURLcode rk_curl_setopt_header_function(CURL *_Nonnull h, rk_curl_data_callback _Nullable cb);
CURLcode rk_curl_setopt_read_function(CURL *_Nonnull h, rk_curl_data_callback _Nullable cb);
/* Progress callback: int cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow). */
typedef int (*rk_curl_xferinfo_callback)(void *_Nullable clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
CURLcode rk_curl_setopt_xferinfo_function(CURL *_Nonnull h, rk_curl_xferinfo_callback _Nullable cb);

/* What the strict known_hosts check of an SFTP connection saw: libcurl's match result and the server's raw host
   key blob. */
struct rk_curl_khresult {
    int called;
    int match;                          /* enum curl_khmatch */
    unsigned char *_Nullable found;     /* caller-owned buffer for the offered key blob */
    size_t found_cap;
    size_t found_len;
};
/* Installs a CURLOPT_SSH_KEYFUNCTION that accepts a host key only when known_hosts has that exact key for the host
   (CURLKHMATCH_OK); anything else (mismatch, missing entry) is rejected and recorded in `r` (CURLOPT_SSH_KEYDATA). */
CURLcode rk_curl_setopt_ssh_strict_keyfunction(CURL *_Nonnull h, struct rk_curl_khresult *_Nullable r);
#endif
