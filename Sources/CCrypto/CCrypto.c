/* The libcrypto functions ReplicationKit calls, defined here under their own names and forwarded to libcrypto.so.3
   through a table that dlopen/dlsym fill on the first call (see include/CCrypto.h). Hidden: never exported, so
   libraries that link libcrypto themselves (libssl, under libcurl) keep binding to libcrypto's own definitions. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#pragma GCC visibility push(hidden)
#include "CCrypto.h"
#pragma GCC visibility pop

#ifdef __APPLE__
const char *const rk_crypto_library_name = "libcrypto.3.dylib";
#else
const char *const rk_crypto_library_name = "libcrypto.so.3";
#endif

/* X(return type, name, parameters, arguments): every function forwarded. */
#define RK_CRYPTO_FUNCTIONS(X)                                                                                       \
    X(EVP_MD_CTX *, EVP_MD_CTX_new, (void), ())                                                                      \
    X(void, EVP_MD_CTX_free, (EVP_MD_CTX *ctx), (ctx))                                                               \
    X(int, EVP_DigestInit_ex, (EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl), (ctx, type, impl))                 \
    X(int, EVP_DigestUpdate, (EVP_MD_CTX *ctx, const void *d, size_t cnt), (ctx, d, cnt))                             \
    X(int, EVP_DigestFinal_ex, (EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s), (ctx, md, s))                   \
    X(unsigned char *, HMAC, (const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *data,          \
                              size_t data_len, unsigned char *md, unsigned int *md_len),                             \
      (evp_md, key, key_len, data, data_len, md, md_len))                                                            \
    X(const EVP_MD *, EVP_sha256, (void), ())                                                                        \
    X(const EVP_MD *, EVP_sha1, (void), ())                                                                          \
    X(const EVP_MD *, EVP_md5, (void), ())                                                                           \
    X(const EVP_CIPHER *, EVP_chacha20_poly1305, (void), ())                                                         \
    X(int, EVP_CIPHER_CTX_ctrl, (EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr), (ctx, type, arg, ptr))           \
    X(EVP_PKEY *, d2i_AutoPrivateKey, (EVP_PKEY **a, const unsigned char **pp, long length), (a, pp, length))         \
    X(EVP_PKEY *, d2i_PublicKey, (int type, EVP_PKEY **a, const unsigned char **pp, long length), (type, a, pp, length)) \
    X(void, ERR_clear_error, (void), ())                                                                             \
    X(unsigned long, ERR_get_error, (void), ())                                                                      \
    X(void, EVP_PKEY_free, (EVP_PKEY *pkey), (pkey))                                                                 \
    X(int, EVP_DigestSignInit, (EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e, EVP_PKEY *pkey), \
      (ctx, pctx, type, e, pkey))                                                                                    \
    X(int, EVP_DigestSign, (EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen, const unsigned char *tbs,          \
                            size_t tbslen), (ctx, sigret, siglen, tbs, tbslen))                                      \
    X(int, EVP_DigestVerifyInit, (EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e,               \
                                  EVP_PKEY *pkey), (ctx, pctx, type, e, pkey))                                       \
    X(int, EVP_DigestVerify, (EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen, const unsigned char *tbs,  \
                              size_t tbslen), (ctx, sigret, siglen, tbs, tbslen))                                    \
    X(int, RAND_bytes, (unsigned char *buf, int num), (buf, num))                                                    \
    X(EVP_PKEY *, EVP_PKEY_new_raw_private_key, (int type, ENGINE *e, const unsigned char *priv, size_t len),         \
      (type, e, priv, len))                                                                                          \
    X(EVP_PKEY *, EVP_PKEY_new_raw_public_key, (int type, ENGINE *e, const unsigned char *pub, size_t len),           \
      (type, e, pub, len))                                                                                           \
    X(int, EVP_PKEY_get_raw_public_key, (const EVP_PKEY *pkey, unsigned char *pub, size_t *len), (pkey, pub, len))    \
    X(EVP_PKEY_CTX *, EVP_PKEY_CTX_new, (EVP_PKEY *pkey, ENGINE *e), (pkey, e))                                      \
    X(void, EVP_PKEY_CTX_free, (EVP_PKEY_CTX *ctx), (ctx))                                                           \
    X(int, EVP_PKEY_derive_init, (EVP_PKEY_CTX *ctx), (ctx))                                                         \
    X(int, EVP_PKEY_derive_set_peer, (EVP_PKEY_CTX *ctx, EVP_PKEY *peer), (ctx, peer))                               \
    X(int, EVP_PKEY_derive, (EVP_PKEY_CTX *ctx, unsigned char *key, size_t *keylen), (ctx, key, keylen))              \
    X(EVP_CIPHER_CTX *, EVP_CIPHER_CTX_new, (void), ())                                                              \
    X(void, EVP_CIPHER_CTX_free, (EVP_CIPHER_CTX *c), (c))                                                           \
    X(int, EVP_CipherInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key, \
                               const unsigned char *iv, int enc), (ctx, cipher, impl, key, iv, enc))                 \
    X(int, EVP_EncryptUpdate, (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl), \
      (ctx, out, outl, in, inl))                                                                                     \
    X(int, EVP_EncryptFinal_ex, (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl), (ctx, out, outl))               \
    X(int, EVP_DecryptUpdate, (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl), \
      (ctx, out, outl, in, inl))                                                                                     \
    X(int, EVP_DecryptFinal_ex, (EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl), (ctx, outm, outl))

/* Written only inside pthread_once's initialiser, before `loaded` is released; read after pthread_once returned. */
static struct {
#define FIELD(ret, name, params, args) ret(*name) params;
    RK_CRYPTO_FUNCTIONS(FIELD)
#undef FIELD
} api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];
static atomic_int loaded;

static void load(void) {
    void *lib = dlopen(rk_crypto_library_name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "%s", e ? e : "dlopen failed");
        return;
    }
#define RESOLVE(ret, name, params, args)                                                                      \
    *(void **)&api.name = dlsym(lib, #name);                                                                  \
    if (!api.name) {                                                                                          \
        snprintf(load_error, sizeof load_error, "%s has no symbol %s", rk_crypto_library_name, #name);        \
        return;                                                                                               \
    }
    RK_CRYPTO_FUNCTIONS(RESOLVE)
#undef RESOLVE
    /* The library stays open for the life of the process. */
    atomic_store_explicit(&loaded, 1, memory_order_release);
}

int rk_crypto_load(const char **error) {
    pthread_once(&load_once, load);
    int ok = atomic_load_explicit(&loaded, memory_order_acquire);
    if (error) *error = ok ? NULL : load_error;
    return ok ? 0 : -1;
}

int rk_crypto_is_loaded(void) { return atomic_load_explicit(&loaded, memory_order_acquire); }

/* Loads libcrypto on the first call; a launcher that cannot load it stops with the reason. */
static void need(void) {
    if (atomic_load_explicit(&loaded, memory_order_acquire)) return;
    const char *error = NULL;
    if (rk_crypto_load(&error) != 0) {
        fprintf(stderr, "launcher: cannot load %s (needed for S3, GCS, Azure and SFTP replicas and age encryption): "
                        "%s; install OpenSSL 3's libcrypto (Debian: libssl3)\n", rk_crypto_library_name, error);
        abort();
    }
}

#define FORWARD(ret, name, params, args) \
    ret name params {                    \
        need();                          \
        return api.name args;            \
    }
RK_CRYPTO_FUNCTIONS(FORWARD)
#undef FORWARD
