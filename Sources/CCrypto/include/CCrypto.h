#ifndef RK_CCRYPTO_H
#define RK_CCRYPTO_H
/* OpenSSL's libcrypto, loaded at run time. The launcher does not link libcrypto (issue 15: loading it took about
   1.4 MB of RSS in every process, most of it relocated data): the libcrypto functions ReplicationKit calls are
   defined in CCrypto.c under their own names and forward to libcrypto.so.3, which the first of them opens with
   dlopen. Only S3, GCS, Azure and SFTP replicas and age encryption call them, so a launcher with file replicas
   never maps libcrypto. The headers are still needed to build (types, constants): Debian's libssl-dev. A libcrypto
   function used anywhere else must be added to the list in CCrypto.c, or the link fails naming it. */
#if defined(__has_include) && !__has_include(<openssl/evp.h>)
#error "OpenSSL headers not found: install libssl-dev (Debian/Ubuntu) or openssl-devel"
#endif
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

/* The file name the first libcrypto call opens ("libcrypto.so.3" on Linux). */
extern const char *_Nonnull const rk_crypto_library_name;
/* Opens libcrypto and resolves the forwarded functions, once per process and thread-safe; the forwarders call it.
   Returns 0 when libcrypto is usable, else -1 and, in *error, a static sentence of what failed (dlerror's text).
   A forwarder that finds libcrypto unusable prints that sentence and aborts (a launcher without libcrypto could
   not start at all before it was loaded at run time). */
int rk_crypto_load(const char *_Nullable *_Nullable error);
/* Whether libcrypto has been loaded (does not load it). */
int rk_crypto_is_loaded(void);

/* EVP_sha256/EVP_md5 return static tables. */
static inline const EVP_MD *_Nonnull rk_evp_sha256(void) { return EVP_sha256(); }
static inline const EVP_MD *_Nonnull rk_evp_md5(void) { return EVP_md5(); }
/* age encryption (Sources/ReplicationKit/Crypto): the X25519 key type and the AEAD controls are macros. */
static inline int rk_evp_pkey_x25519(void) { return EVP_PKEY_X25519; }
static inline const EVP_CIPHER *_Nonnull rk_evp_chacha20_poly1305(void) { return EVP_chacha20_poly1305(); }
static inline int rk_evp_aead_set_tag(EVP_CIPHER_CTX *_Nonnull ctx, int len, void *_Nullable tag) {
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, len, tag);
}
static inline int rk_evp_aead_get_tag(EVP_CIPHER_CTX *_Nonnull ctx, int len, void *_Nonnull tag) {
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, len, tag);
}
#endif
