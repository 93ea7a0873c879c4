/*
 * sha256.c -- SHA-256 as FIPS 180-4 section 6.2 describes it, HMAC over it
 * as RFC 2104 describes it, and a constant-time compare for MACs.
 *
 * Written for clarity over speed: it hashes a few hundred bytes per
 * connection.  All state lives in the caller's structs; nothing allocates.
 */
#include <string.h>

#include "sha256.h"

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

/* compress -- process one 64-byte block (FIPS 180-4 6.2.2) */
static void compress(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64];
	for (int t = 0; t < 16; t++)
		w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
		       (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
	for (int t = 16; t < 64; t++) {
		uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
		uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
		w[t] = w[t - 16] + s0 + w[t - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int t = 0; t < 64; t++) {
		uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
		uint32_t ch = (e & f) ^ (~e & g);
		uint32_t t1 = hh + S1 + ch + K[t] + w[t];
		uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
		uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
		uint32_t t2 = S0 + maj;
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += hh;
}

/* sha256_init -- the initial hash value of FIPS 180-4 5.3.3 */
void sha256_init(struct sha256 *s)
{
	static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, h0, sizeof h0);
	s->bytes = 0;
	s->n = 0;
}

/* sha256_update -- hash n more bytes */
void sha256_update(struct sha256 *s, const void *p, size_t n)
{
	const uint8_t *q = p;
	s->bytes += n;
	if (s->n > 0) {
		size_t take = SHA256_BLOCK - s->n < n ? SHA256_BLOCK - s->n : n;
		memcpy(s->buf + s->n, q, take);
		s->n += take;
		q += take;
		n -= take;
		if (s->n < SHA256_BLOCK)
			return;
		compress(s->h, s->buf);
		s->n = 0;
	}
	for (; n >= SHA256_BLOCK; q += SHA256_BLOCK, n -= SHA256_BLOCK)
		compress(s->h, q);
	if (n > 0) {
		memcpy(s->buf, q, n);
		s->n = n;
	}
}

/* sha256_final -- pad (FIPS 180-4 5.1.1), finish and write the digest big-endian */
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN])
{
	uint64_t bits = s->bytes * 8;
	s->buf[s->n++] = 0x80;
	if (s->n > SHA256_BLOCK - 8) {
		memset(s->buf + s->n, 0, SHA256_BLOCK - s->n);
		compress(s->h, s->buf);
		s->n = 0;
	}
	memset(s->buf + s->n, 0, SHA256_BLOCK - 8 - s->n);
	for (int i = 0; i < 8; i++)
		s->buf[SHA256_BLOCK - 1 - i] = (uint8_t)(bits >> (8 * i));
	compress(s->h, s->buf);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
	secure_zero(s, sizeof *s);
}

/* sha256 -- one-shot digest */
void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN])
{
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, p, n);
	sha256_final(&s, out);
}

/* hmac_sha256_init -- key the inner and outer hashes (RFC 2104 section 2) */
void hmac_sha256_init(struct hmac_sha256 *h, const void *key, size_t klen)
{
	uint8_t k[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK];
	if (klen > SHA256_BLOCK)
		sha256(key, klen, k); /* long keys are hashed first */
	else if (klen > 0)
		memcpy(k, key, klen);
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	sha256_init(&h->inner);
	sha256_update(&h->inner, pad, sizeof pad);
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	sha256_init(&h->outer);
	sha256_update(&h->outer, pad, sizeof pad);
	secure_zero(k, sizeof k);
	secure_zero(pad, sizeof pad);
}

void hmac_sha256_update(struct hmac_sha256 *h, const void *p, size_t n)
{
	sha256_update(&h->inner, p, n);
}

/* hmac_sha256_final -- H(K ^ opad || H(K ^ ipad || msg)) */
void hmac_sha256_final(struct hmac_sha256 *h, uint8_t out[SHA256_LEN])
{
	uint8_t inner[SHA256_LEN];
	sha256_final(&h->inner, inner);
	sha256_update(&h->outer, inner, sizeof inner);
	sha256_final(&h->outer, out);
	secure_zero(inner, sizeof inner);
}

void hmac_sha256(const void *key, size_t klen, const void *msg, size_t n, uint8_t out[SHA256_LEN])
{
	struct hmac_sha256 h;
	hmac_sha256_init(&h, key, klen);
	hmac_sha256_update(&h, msg, n);
	hmac_sha256_final(&h, out);
}

/* ct_equal -- OR of all byte differences, read through volatile so it is not cut short */
int ct_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= (uint8_t)(x[i] ^ y[i]);
	return d == 0;
}

/* secure_zero -- memset through a volatile pointer so dead-store elimination keeps it */
void secure_zero(void *p, size_t n)
{
	volatile uint8_t *q = p;
	while (n--)
		*q++ = 0;
}
