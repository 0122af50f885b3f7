#ifndef RK_CCRYPTO_SHIM_H
#define RK_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#include <openssl/rand.h>
/* EVP_MD_CTX_new/free are functions in OpenSSL 3; EVP_sha256/EVP_md5 return static tables. */
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
