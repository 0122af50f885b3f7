#ifndef RK_CCURL_SHIM_H
#define RK_CCURL_SHIM_H
#include <curl/curl.h>
/* Typed wrappers for the variadic curl_easy_setopt / curl_easy_getinfo (used by the S3 issue). */
static inline CURLcode rk_curl_setopt_long(CURL *_Nonnull h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_setopt_string(CURL *_Nonnull h, CURLoption o, const char *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_setopt_pointer(CURL *_Nonnull h, CURLoption o, void *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_getinfo_long(CURL *_Nonnull h, CURLINFO i, long *_Nonnull v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode rk_curl_setopt_off(CURL *_Nonnull h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_setopt_slist(CURL *_Nonnull h, CURLoption o, struct curl_slist *_Nullable v) { return curl_easy_setopt(h, o, v); }
/* Data callbacks: size_t cb(char *ptr, size_t size, size_t nmemb, void *userdata). */
typedef size_t (*rk_curl_data_callback)(char *_Nonnull ptr, size_t size, size_t nmemb, void *_Nullable userdata);
static inline CURLcode rk_curl_setopt_write_function(CURL *_Nonnull h, rk_curl_data_callback _Nullable cb) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb); }
static inline CURLcode rk_curl_setopt_header_function(CURL *_Nonnull h, rk_curl_data_callback _Nullable cb) { return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb); }
static inline CURLcode rk_curl_setopt_read_function(CURL *_Nonnull h, rk_curl_data_callback _Nullable cb) { return curl_easy_setopt(h, CURLOPT_READFUNCTION, cb); }
/* Progress callback: int cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow). */
typedef int (*rk_curl_xferinfo_callback)(void *_Nullable clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static inline CURLcode rk_curl_setopt_xferinfo_function(CURL *_Nonnull h, rk_curl_xferinfo_callback _Nullable cb) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb); }
/* SFTP (used by the SFTP issue). */
#include <string.h>
static inline CURLcode rk_curl_getinfo_off(CURL *_Nonnull h, CURLINFO i, curl_off_t *_Nonnull v) { return curl_easy_getinfo(h, i, v); }
/* What the strict known_hosts check saw: libcurl's match result and the server's raw host key blob. */
struct rk_curl_khresult {
    int called;
    int match;                          /* enum curl_khmatch */
    unsigned char *_Nullable found;     /* caller-owned buffer for the offered key blob */
    size_t found_cap;
    size_t found_len;
};
/* Accepts a host key only when known_hosts has that exact key for the host (CURLKHMATCH_OK); anything else
   (mismatch, missing entry) is rejected and recorded in the rk_curl_khresult passed as CURLOPT_SSH_KEYDATA. */
static inline int rk_curl_khfunc_strict(CURL *_Nullable easy, const struct curl_khkey *_Nullable known,
                                        const struct curl_khkey *_Nullable found, enum curl_khmatch match,
                                        void *_Nullable clientp) {
    (void)easy; (void)known;
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
static inline CURLcode rk_curl_setopt_ssh_strict_keyfunction(CURL *_Nonnull h, struct rk_curl_khresult *_Nullable r) {
    CURLcode c = curl_easy_setopt(h, CURLOPT_SSH_KEYFUNCTION, rk_curl_khfunc_strict);
    if (c != CURLE_OK) return c;
    return curl_easy_setopt(h, CURLOPT_SSH_KEYDATA, (void *)r);
}
#endif
