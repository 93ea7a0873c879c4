/*
 * sha256.h -- SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and a
 * constant-time compare, for the control protocol's challenge-response
 * (docs/PROTOCOL.md).  Shared by the library and tieredd; no allocation,
 * no global state.
 */
#ifndef TIERED_SHA256_H
#define TIERED_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_BLOCK 64

#define SHA256_HIDDEN __attribute__((visibility("hidden")))

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;		   /* message length so far */
	uint8_t buf[SHA256_BLOCK]; /* partial block */
	size_t n;		   /* bytes in buf */
};

struct hmac_sha256 {
	struct sha256 inner, outer;
};

SHA256_HIDDEN void sha256_init(struct sha256 *s);
SHA256_HIDDEN void sha256_update(struct sha256 *s, const void *p, size_t n);
SHA256_HIDDEN void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
/* One-shot digest of p[0..n). */
SHA256_HIDDEN void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN]);

SHA256_HIDDEN void hmac_sha256_init(struct hmac_sha256 *h, const void *key, size_t klen);
SHA256_HIDDEN void hmac_sha256_update(struct hmac_sha256 *h, const void *p, size_t n);
SHA256_HIDDEN void hmac_sha256_final(struct hmac_sha256 *h, uint8_t out[SHA256_LEN]);
/* One-shot HMAC-SHA256 of msg under key. */
SHA256_HIDDEN void hmac_sha256(const void *key, size_t klen, const void *msg, size_t n,
			       uint8_t out[SHA256_LEN]);

/* 1 when a[0..n) equals b[0..n), else 0; the time taken does not depend on the bytes. */
SHA256_HIDDEN int ct_equal(const void *a, const void *b, size_t n);

/* Overwrite n bytes at p with zeros in a way the compiler may not drop. */
SHA256_HIDDEN void secure_zero(void *p, size_t n);

#endif /* TIERED_SHA256_H */
