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
#endif
