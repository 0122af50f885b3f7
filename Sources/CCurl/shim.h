#ifndef RK_CCURL_SHIM_H
#define RK_CCURL_SHIM_H
#include <curl/curl.h>
/* Typed wrappers for the variadic curl_easy_setopt / curl_easy_getinfo (used by the S3 issue). */
static inline CURLcode rk_curl_setopt_long(CURL *_Nonnull h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_setopt_string(CURL *_Nonnull h, CURLoption o, const char *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_setopt_pointer(CURL *_Nonnull h, CURLoption o, void *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode rk_curl_getinfo_long(CURL *_Nonnull h, CURLINFO i, long *_Nonnull v) { return curl_easy_getinfo(h, i, v); }
#endif
