#ifndef RK_CCRYPTO_SHIM_H
#define RK_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/err.h>
/* EVP_MD_CTX_new/free are functions in OpenSSL 3; EVP_sha256/EVP_md5 return static tables. */
static inline const EVP_MD *_Nonnull rk_evp_sha256(void) { return EVP_sha256(); }
static inline const EVP_MD *_Nonnull rk_evp_md5(void) { return EVP_md5(); }
#endif
