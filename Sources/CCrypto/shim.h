#ifndef RK_CCRYPTO_SHIM_H
#define RK_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#endif
