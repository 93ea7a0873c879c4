/*
 * check_proto.c -- the control protocol (lib/proto.c) and its crypto
 * (lib/sha256.c), without a server: SHA-256 and HMAC-SHA256 against their
 * published vectors, every message through encode and decode, every kind
 * of malformed input refused with a message, the blocking I/O helpers, the
 * client handshake and tdp_request (DRAIN notices skipped) over a
 * socketpair, and remote_parse_target().
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"
#include "remote.h"
#include "sha256.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------------ */

static void unhex(const char *h, uint8_t *out, size_t *len)
{
	size_t n = 0;
	for (; h[0] && h[1]; h += 2) {
		unsigned v;
		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	*len = n;
}

static void tohex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = 0;
}

/* Encode m; the whole message length. */
static size_t enc(const struct tdp_msg *m, uint8_t *buf, size_t cap)
{
	ssize_t n = tdp_encode(m, buf, cap);
	ck_assert_msg(n >= TDP_HDR_LEN, "tdp_encode(%s) returned %zd", tdp_type_name(m->type), n);
	return (size_t)n;
}

/* Decode a whole message (header checked first); 0 or -EPROTO, err filled. */
static int dec(const uint8_t *buf, size_t len, struct tdp_msg *m, char *err, size_t errlen)
{
	struct tdp_hdr h;
	err[0] = 0;
	if (len < TDP_HDR_LEN) {
		snprintf(err, errlen, "short");
		return -EPROTO;
	}
	int rc = tdp_check_hdr(buf, &h, err, errlen);
	if (rc < 0)
		return rc;
	if (h.len != len - TDP_HDR_LEN) {
		snprintf(err, errlen, "length lies");
		return -EPROTO;
	}
	return tdp_decode(h.type, buf + TDP_HDR_LEN, h.len, m, err, errlen);
}

/* One sample of every message type, with non-trivial values. */
static int samples(struct tdp_msg *out)
{
	int n = 0;
	struct tdp_msg m;
	memset(&m, 0, sizeof m);
	m.type = TDP_HELLO;
	m.u.hello.min_version = 1;
	m.u.hello.max_version = 3;
	for (int i = 0; i < TDP_NONCE_LEN; i++)
		m.u.hello.nonce[i] = (uint8_t)(i * 7 + 1);
	m.u.hello.pid = 0xdeadbeef;
	strcpy(m.u.hello.name, "unit-test client");
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_CHALLENGE;
	m.u.challenge.version = 1;
	memset(m.u.challenge.nonce, 0xab, TDP_NONCE_LEN);
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_AUTH;
	for (int i = 0; i < TDP_MAC_LEN; i++)
		m.u.auth.mac[i] = (uint8_t)(255 - i);
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_WELCOME;
	memset(m.u.welcome.mac, 0x5a, TDP_MAC_LEN);
	m.u.welcome.client_id = 0x0102030405060708ULL;
	m.u.welcome.capacity = 1ULL << 40;
	m.u.welcome.client_limit = 3ULL << 30;
	strcpy(m.u.welcome.provider, "tcp;ofi_rxm");
	m.u.welcome.addr_len = 16;
	for (int i = 0; i < 16; i++)
		m.u.welcome.addr[i] = (uint8_t)i;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_LEASE_REQ;
	m.u.lease_req.bytes = 0xffffffffffffffffULL;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_LEASE;
	m.u.lease.id = 42;
	m.u.lease.raddr = 0x7f0000000000ULL;
	m.u.lease.key = 0x8000000000000001ULL;
	m.u.lease.len = 2 << 20;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_RELEASE;
	m.u.release.id = 99;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_OK;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_STATS_REQ;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_STATS;
	m.u.stats = (struct tdp_stats){1, 2, 3, 4, 5, 6, 7, 0x8000000000000000ULL, 1};
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_REPORT;
	m.u.report.bytes_written = 123456789;
	m.u.report.bytes_read = 987654321;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_ERROR;
	m.u.error.code = ENOSPC;
	strcpy(m.u.error.msg, "client limit reached: 1 GiB leased of 1 GiB, asked 64 MiB");
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_DRAIN_REQ;
	m.u.drain.mode = TDP_DRAIN_ON;
	out[n++] = m;
	memset(&m, 0, sizeof m);
	m.type = TDP_DRAIN;
	m.u.drain.mode = TDP_DRAIN_ON;
	out[n++] = m;
	return n;
}

/* ---- SHA-256 and HMAC ---------------------------------------------------- */

START_TEST(sha256_vectors)
{
	/* FIPS 180-4 examples (NIST CSRC) and the empty string. */
	static const struct {
		const char *msg, *hex;
	} v[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
		 "klmnopqrlmnopqrsmnopqrstnopqrstu",
		 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	uint8_t d[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		sha256(v[i].msg, strlen(v[i].msg), d);
		tohex(d, sizeof d, hex);
		ck_assert_msg(strcmp(hex, v[i].hex) == 0, "sha256(\"%s\") = %s, expected %s",
			      v[i].msg, hex, v[i].hex);
	}
}
END_TEST

START_TEST(sha256_million_a_incremental)
{
	/* One million 'a', fed in uneven pieces across block boundaries. */
	static char a[1000];
	memset(a, 'a', sizeof a);
	struct sha256 s;
	sha256_init(&s);
	size_t left = 1000000, step = 1;
	while (left > 0) {
		size_t n = step < left ? step : left;
		n = n > sizeof a ? sizeof a : n;
		sha256_update(&s, a, n);
		left -= n;
		step = step * 3 % 997 + 1;
	}
	uint8_t d[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	sha256_final(&s, d);
	tohex(d, sizeof d, hex);
	ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

	/* Every length 0..200 hashes the same in one piece and byte by byte. */
	uint8_t buf[200], one[SHA256_LEN], many[SHA256_LEN];
	for (int i = 0; i < 200; i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	for (size_t len = 0; len <= sizeof buf; len++) {
		sha256(buf, len, one);
		sha256_init(&s);
		for (size_t i = 0; i < len; i++)
			sha256_update(&s, buf + i, 1);
		sha256_final(&s, many);
		ck_require(memcmp(one, many, SHA256_LEN) == 0, "length %zu: pieces differ", len);
	}
}
END_TEST

START_TEST(hmac_rfc4231)
{
	/* RFC 4231 section 4: test cases 1 to 7 (case 5 is truncated to 128 bits). */
	static const struct {
		const char *key, *data, *mac;
	} v[] = {
		{"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
		 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
		 "dddddddddddddddddddddd",
		 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
		{"0102030405060708090a0b0c0d0e0f10111213141516171819",
		 "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
		 "cdcdcdcdcdcdcdcdcdcdcd",
		 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
		{"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", "546573742057697468205472756e636174696f6e",
		 "a3b6167473100ee06e0c796c2955552b"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaa", /* 131 bytes of 0xaa */
		 "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d20"
		 "48617368204b6579204669727374",
		 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaa", /* 131 bytes of 0xaa */
		 "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b"
		 "2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a652064"
		 "6174612e20546865206b6579206e6565647320746f20626520686173686564206265666f72652062"
		 "65696e6720757365642062792074686520484d414320616c676f726974686d2e",
		 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		uint8_t key[200], data[200], mac[SHA256_LEN];
		size_t klen, dlen;
		char hex[2 * SHA256_LEN + 1];
		unhex(v[i].key, key, &klen);
		unhex(v[i].data, data, &dlen);
		hmac_sha256(key, klen, data, dlen, mac);
		tohex(mac, sizeof mac, hex);
		size_t cmp = strlen(v[i].mac);
		ck_assert_msg(strncmp(hex, v[i].mac, cmp) == 0, "RFC 4231 case %zu: %s, expected %s",
			      i + 1, hex, v[i].mac);
	}
}
END_TEST

START_TEST(ct_equal_and_macs)
{
	uint8_t a[32], b[32];
	memset(a, 1, sizeof a);
	memcpy(b, a, sizeof b);
	ck_assert_int_eq(ct_equal(a, b, 32), 1);
	ck_assert_int_eq(ct_equal(a, b, 0), 1);
	b[31] ^= 0x80;
	ck_assert_int_eq(ct_equal(a, b, 32), 0);
	b[31] ^= 0x80;
	b[0] ^= 1;
	ck_assert_int_eq(ct_equal(a, b, 32), 0);

	/* The two proofs differ (labels), and depend on every input. */
	uint8_t sn[32], cn[32], m1[32], m2[32], m3[32];
	memset(sn, 3, 32);
	memset(cn, 4, 32);
	tdp_mac_client("0123456789abcdef", 16, sn, cn, m1);
	tdp_mac_server("0123456789abcdef", 16, cn, sn, m2);
	ck_assert(memcmp(m1, m2, 32) != 0);
	tdp_mac_client("0123456789abcdeg", 16, sn, cn, m3);
	ck_assert(memcmp(m1, m3, 32) != 0);
	/* By definition: HMAC(secret, "tdp1-client" || snonce || cnonce). */
	uint8_t msg[11 + 64];
	memcpy(msg, "tdp1-client", 11);
	memcpy(msg + 11, sn, 32);
	memcpy(msg + 43, cn, 32);
	hmac_sha256("0123456789abcdef", 16, msg, sizeof msg, m3);
	ck_assert(memcmp(m1, m3, 32) == 0);
}
END_TEST

/* ---- encoding and decoding ----------------------------------------------- */

START_TEST(roundtrip_every_type)
{
	struct tdp_msg in[16], out;
	uint8_t buf[TDP_MAX_MSG];
	char err[256];
	int n = samples(in);
	ck_assert_int_eq(n, TDP_TYPE_MAX);
	for (int i = 0; i < n; i++) {
		size_t len = enc(&in[i], buf, sizeof buf);
		/* The header, byte by byte: "TDP1", version 1 LE, type LE, length LE. */
		ck_assert(memcmp(buf, "TDP1", 4) == 0);
		ck_assert_int_eq(buf[4], 1);
		ck_assert_int_eq(buf[5], 0);
		ck_assert_int_eq(buf[6], in[i].type);
		ck_assert_int_eq(buf[7], 0);
		uint32_t plen = buf[8] | buf[9] << 8 | (uint32_t)buf[10] << 16 | (uint32_t)buf[11] << 24;
		ck_assert_uint_eq(plen, len - TDP_HDR_LEN);
		int rc = dec(buf, len, &out, err, sizeof err);
		ck_assert_msg(rc == 0, "%s: decode failed: %s", tdp_type_name(in[i].type), err);
		ck_assert_msg(memcmp(&in[i], &out, sizeof out) == 0, "%s: round trip differs",
			      tdp_type_name(in[i].type));
	}
}
END_TEST

START_TEST(wire_layout)
{
	/* A LEASE_REQ of 0x0102030405060708 bytes, spelled out. */
	struct tdp_msg m = {.type = TDP_LEASE_REQ};
	m.u.lease_req.bytes = 0x0102030405060708ULL;
	uint8_t buf[64];
	size_t len = enc(&m, buf, sizeof buf);
	static const uint8_t want[] = {0x54, 0x44, 0x50, 0x31, 1, 0, 5, 0, 8, 0, 0, 0,
				       8,    7,    6,    5,    4, 3, 2, 1};
	ck_assert_uint_eq(len, sizeof want);
	ck_assert(memcmp(buf, want, sizeof want) == 0);

	/* An ERROR: u32 code, u16 length, bytes without a NUL. */
	m.type = TDP_ERROR;
	m.u.error.code = 71;
	strcpy(m.u.error.msg, "bad");
	len = enc(&m, buf, sizeof buf);
	static const uint8_t want2[] = {0x54, 0x44, 0x50, 0x31, 1, 0, 12, 0, 9, 0, 0, 0,
					71,   0,    0,    0,    3, 0, 'b', 'a', 'd'};
	ck_assert_uint_eq(len, sizeof want2);
	ck_assert(memcmp(buf, want2, sizeof want2) == 0);
}
END_TEST

START_TEST(roundtrip_limits)
{
	struct tdp_msg m, out;
	uint8_t buf[TDP_MAX_MSG];
	char err[256];
	/* The longest strings and address. */
	memset(&m, 0, sizeof m);
	m.type = TDP_WELCOME;
	memset(m.u.welcome.provider, 'p', TDP_STR_MAX);
	m.u.welcome.addr_len = TDP_ADDR_MAX;
	memset(m.u.welcome.addr, 0xee, TDP_ADDR_MAX);
	size_t len = enc(&m, buf, sizeof buf);
	ck_assert_uint_eq(len, TDP_HDR_LEN + 60 + TDP_STR_MAX + TDP_ADDR_MAX);
	ck_assert_int_eq(dec(buf, len, &out, err, sizeof err), 0);
	ck_assert(memcmp(&m, &out, sizeof m) == 0);
	memset(&m, 0, sizeof m);
	m.type = TDP_HELLO;
	m.u.hello.min_version = m.u.hello.max_version = 1;
	memset(m.u.hello.name, 'n', TDP_STR_MAX);
	len = enc(&m, buf, sizeof buf);
	ck_assert_int_eq(dec(buf, len, &out, err, sizeof err), 0);
	ck_assert_uint_eq(strlen(out.u.hello.name), TDP_STR_MAX);
	/* An empty name and message are fine. */
	m.u.hello.name[0] = 0;
	len = enc(&m, buf, sizeof buf);
	ck_assert_int_eq(dec(buf, len, &out, err, sizeof err), 0);
	ck_assert_str_eq(out.u.hello.name, "");
}
END_TEST

START_TEST(encode_refuses)
{
	struct tdp_msg m;
	uint8_t buf[TDP_MAX_MSG];
	memset(&m, 0, sizeof m);
	m.type = 0;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	m.type = TDP_TYPE_MAX + 1;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	/* A string of 256 bytes (no NUL in the buffer). */
	m.type = TDP_ERROR;
	m.u.error.code = 5;
	memset(m.u.error.msg, 'x', sizeof m.u.error.msg);
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	m.u.error.msg[0] = 0;
	m.u.error.code = 0;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	memset(&m, 0, sizeof m);
	m.type = TDP_WELCOME;
	strcpy(m.u.welcome.provider, "shm");
	m.u.welcome.addr_len = 0;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	m.u.welcome.addr_len = TDP_ADDR_MAX + 1;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	/* Too small a buffer, at every length short of the message. */
	struct tdp_msg s[16];
	int n = samples(s);
	for (int i = 0; i < n; i++) {
		size_t len = enc(&s[i], buf, sizeof buf);
		for (size_t cap = 0; cap < len; cap++)
			ck_require(tdp_encode(&s[i], buf, cap) == -EMSGSIZE, "%s: cap %zu accepted",
				   tdp_type_name(s[i].type), cap);
	}
}
END_TEST

/* Put a header with these fields in front of payload p. */
static size_t raw(uint8_t *buf, uint32_t magic, uint16_t version, uint16_t type, uint32_t len,
		  const void *p, size_t plen)
{
	for (int i = 0; i < 4; i++)
		buf[i] = (uint8_t)(magic >> (8 * i));
	buf[4] = (uint8_t)version;
	buf[5] = (uint8_t)(version >> 8);
	buf[6] = (uint8_t)type;
	buf[7] = (uint8_t)(type >> 8);
	for (int i = 0; i < 4; i++)
		buf[8 + i] = (uint8_t)(len >> (8 * i));
	if (plen)
		memcpy(buf + TDP_HDR_LEN, p, plen);
	return TDP_HDR_LEN + plen;
}

/* Expect the header to be refused with a message containing what. */
static void bad_hdr(uint32_t magic, uint16_t version, uint16_t type, uint32_t len, const char *what)
{
	uint8_t buf[TDP_HDR_LEN];
	struct tdp_hdr h;
	char err[256] = "";
	raw(buf, magic, version, type, len, NULL, 0);
	int rc = tdp_check_hdr(buf, &h, err, sizeof err);
	ck_assert_msg(rc == -EPROTO, "header magic %x version %u type %u len %u accepted", magic,
		      version, type, len);
	ck_assert_str_has(err, what);
}

START_TEST(header_refused)
{
	bad_hdr(0x31504455, 1, TDP_OK, 0, "bad magic");
	bad_hdr(0x54445031, 1, TDP_OK, 0, "bad magic"); /* big-endian "TDP1" */
	bad_hdr(TDP_MAGIC, 0, TDP_OK, 0, "version 0");
	bad_hdr(TDP_MAGIC, 2, TDP_OK, 0, "version 2");
	bad_hdr(TDP_MAGIC, 1, 0, 0, "unknown message type 0");
	bad_hdr(TDP_MAGIC, 1, 15, 0, "unknown message type 15: types are 1..14");
	bad_hdr(TDP_MAGIC, 1, 0xffff, 0, "unknown message type 65535");
	bad_hdr(TDP_MAGIC, 1, TDP_HELLO, 4097, "over the limit of 4096");
	bad_hdr(TDP_MAGIC, 1, TDP_ERROR, 0xffffffff, "over the limit");
	bad_hdr(TDP_MAGIC, 1, TDP_OK, 1, "OK payload of 1 bytes: it must be 0 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_STATS_REQ, 8, "must be 0 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_LEASE_REQ, 7, "LEASE_REQ payload of 7 bytes: it must be 8");
	bad_hdr(TDP_MAGIC, 1, TDP_LEASE_REQ, 9, "must be 8 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_LEASE, 24, "must be 32 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_RELEASE, 0, "must be 8 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_STATS, 64, "STATS payload of 64 bytes: it must be 72 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_STATS, 80, "must be 72 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_DRAIN_REQ, 0, "DRAIN_REQ payload of 0 bytes: it must be 4 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_DRAIN_REQ, 8, "must be 4 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_DRAIN, 3, "DRAIN payload of 3 bytes: it must be 4 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_REPORT, 8, "must be 16 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_AUTH, 31, "must be 32 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_CHALLENGE, 35, "must be 34 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_HELLO, 41, "it must be 42 to 297 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_HELLO, 298, "it must be 42 to 297 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_WELCOME, 59, "it must be 60 to 827 bytes");
	bad_hdr(TDP_MAGIC, 1, TDP_ERROR, 5, "it must be 6 to 261 bytes");
	/* And the good ones pass. */
	uint8_t buf[TDP_HDR_LEN];
	struct tdp_hdr h;
	char err[128];
	raw(buf, TDP_MAGIC, 1, TDP_LEASE, 32, NULL, 0);
	ck_assert_int_eq(tdp_check_hdr(buf, &h, err, sizeof err), 0);
	ck_assert_uint_eq(h.type, TDP_LEASE);
	ck_assert_uint_eq(h.len, 32);
}
END_TEST

START_TEST(short_and_long_payloads)
{
	/* Every message, one byte short and one byte long, is refused. */
	struct tdp_msg s[16], out;
	uint8_t buf[TDP_MAX_MSG + 1];
	char err[256];
	int n = samples(s);
	for (int i = 0; i < n; i++) {
		size_t len = enc(&s[i], buf, sizeof buf) - TDP_HDR_LEN;
		const uint8_t *p = buf + TDP_HDR_LEN;
		for (size_t cut = 0; cut < len; cut++)
			ck_require(tdp_decode(s[i].type, p, cut, &out, err, sizeof err) == -EPROTO,
				   "%s: %zu of %zu bytes accepted", tdp_type_name(s[i].type), cut,
				   len);
		buf[TDP_HDR_LEN + len] = 0;
		ck_require(tdp_decode(s[i].type, p, len + 1, &out, err, sizeof err) == -EPROTO,
			   "%s: one byte too many accepted", tdp_type_name(s[i].type));
	}
}
END_TEST

/* Expect payload p of type to be refused with a message containing what. */
static void bad_payload(uint16_t type, const uint8_t *p, size_t len, const char *what)
{
	struct tdp_msg m;
	char err[256] = "";
	int rc = tdp_decode(type, p, len, &m, err, sizeof err);
	ck_assert_msg(rc == -EPROTO, "%s payload of %zu bytes accepted (want '%s')",
		      tdp_type_name(type), len, what);
	ck_assert_str_has(err, what);
}

START_TEST(lying_lengths)
{
	uint8_t p[1024];
	/* HELLO: versions 1..1, nonce, pid, then a name length that lies. */
	memset(p, 0, sizeof p);
	p[0] = 1;
	p[2] = 1;
	p[40] = 10; /* says 10 bytes, 4 follow */
	memcpy(p + 42, "abcd", 4);
	bad_payload(TDP_HELLO, p, 46, "name needs 10 bytes but 4 remain");
	p[40] = 2; /* says 2, 4 follow: 2 left over */
	bad_payload(TDP_HELLO, p, 46, "2 bytes left over");
	p[40] = 0;
	p[41] = 1; /* 256 */
	bad_payload(TDP_HELLO, p, 46, "over the limit of 255");
	p[40] = 4;
	p[41] = 0;
	p[43] = 0; /* a NUL inside */
	bad_payload(TDP_HELLO, p, 46, "NUL");
	p[43] = 'b';
	p[0] = 2; /* min 2 > max 1 */
	bad_payload(TDP_HELLO, p, 46, "version range 2..1");
	p[0] = 0;
	bad_payload(TDP_HELLO, p, 46, "version range 0..1");

	/* WELCOME: mac, three u64, provider "shm", then the address length. */
	memset(p, 0, sizeof p);
	size_t o = 32 + 24;
	p[o] = 3;
	memcpy(p + o + 2, "shm", 3);
	o += 5;
	p[o] = 0; /* address length 0 */
	bad_payload(TDP_WELCOME, p, o + 2 + 4, "fabric address of 0 bytes");
	p[o] = 0x58; /* 600 */
	p[o + 1] = 0x02;
	bad_payload(TDP_WELCOME, p, o + 2 + 4, "fabric address of 600 bytes");
	p[o] = 20;
	p[o + 1] = 0;
	bad_payload(TDP_WELCOME, p, o + 2 + 4, "address needs 20 bytes but 4 remain");
	p[o] = 4;
	ck_assert_int_eq(tdp_decode(TDP_WELCOME, p, o + 2 + 4, &(struct tdp_msg){0}, (char[64]){0},
				    64),
			 0);
	p[32 + 24] = 0; /* empty provider: the address length field moves */
	memset(p + 32 + 24, 0, 16);
	p[32 + 24 + 2] = 4;
	bad_payload(TDP_WELCOME, p, 32 + 24 + 2 + 2 + 4, "empty provider");

	/* ERROR: code 0, and a message length past the end. */
	memset(p, 0, sizeof p);
	p[4] = 2;
	memcpy(p + 6, "hi", 2);
	bad_payload(TDP_ERROR, p, 8, "error code 0");
	p[0] = 13;
	p[4] = 3;
	bad_payload(TDP_ERROR, p, 8, "message needs 3 bytes but 2 remain");
	p[0] = 0;
	p[2] = 1; /* code 65536 */
	p[4] = 2;
	bad_payload(TDP_ERROR, p, 8, "error code 65536");
	bad_payload(TDP_OK, p, 1, "OK payload of 1 bytes");
	bad_payload(0, p, 0, "unknown message type 0");
	bad_payload(99, p, 0, "unknown message type 99");
}
END_TEST

START_TEST(drain_messages)
{
	/* DRAIN_REQ 1 and DRAIN 0, spelled out: a u32 mode. */
	struct tdp_msg m = {.type = TDP_DRAIN_REQ}, out;
	m.u.drain.mode = TDP_DRAIN_ON;
	uint8_t buf[TDP_MAX_MSG];
	char err[256];
	size_t len = enc(&m, buf, sizeof buf);
	static const uint8_t want[] = {0x54, 0x44, 0x50, 0x31, 1, 0, 13, 0, 4, 0, 0, 0,
				       1,    0,    0,    0};
	ck_assert_uint_eq(len, sizeof want);
	ck_assert(memcmp(buf, want, sizeof want) == 0);
	m.type = TDP_DRAIN;
	m.u.drain.mode = TDP_DRAIN_OFF;
	len = enc(&m, buf, sizeof buf);
	static const uint8_t want2[] = {0x54, 0x44, 0x50, 0x31, 1, 0, 14, 0, 4, 0, 0, 0,
					0,    0,    0,    0};
	ck_assert_uint_eq(len, sizeof want2);
	ck_assert(memcmp(buf, want2, sizeof want2) == 0);
	ck_assert_int_eq(dec(buf, len, &out, err, sizeof err), 0);
	ck_assert_uint_eq(out.type, TDP_DRAIN);
	ck_assert_uint_eq(out.u.drain.mode, 0);
	ck_assert_str_eq(tdp_type_name(TDP_DRAIN_REQ), "DRAIN_REQ");
	ck_assert_str_eq(tdp_type_name(TDP_DRAIN), "DRAIN");
	ck_assert_str_eq(tdp_type_name(15), "unknown");

	/* A mode other than 0 and 1: the encoder refuses it, the decoder names what is allowed. */
	m.type = TDP_DRAIN_REQ;
	m.u.drain.mode = 2;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
	uint8_t p[8] = {7, 0, 0, 0};
	bad_payload(TDP_DRAIN_REQ, p, 4, "DRAIN_REQ: mode 7: it must be 0 (stop draining) or 1 "
					 "(start draining)");
	p[0] = 0, p[3] = 0x80; /* the high byte counts too */
	bad_payload(TDP_DRAIN_REQ, p, 4, "mode 2147483648");
	p[0] = 2, p[3] = 0;
	bad_payload(TDP_DRAIN, p, 4, "DRAIN: mode 2: it must be 0 (draining cancelled) or 1 "
				     "(draining)");

	/* STATS: nine u64, draining last, at offset 64; only 0 or 1. */
	m = (struct tdp_msg){.type = TDP_STATS};
	m.u.stats.capacity = 1ULL << 30;
	m.u.stats.draining = 1;
	len = enc(&m, buf, sizeof buf);
	ck_assert_uint_eq(len, TDP_HDR_LEN + 72);
	ck_assert_uint_eq(buf[TDP_HDR_LEN + 64], 1);
	ck_assert_int_eq(dec(buf, len, &out, err, sizeof err), 0);
	ck_assert_uint_eq(out.u.stats.draining, 1);
	ck_assert_uint_eq(out.u.stats.capacity, 1ULL << 30);
	buf[TDP_HDR_LEN + 64] = 2;
	ck_assert_int_eq(dec(buf, len, &out, err, sizeof err), -EPROTO);
	ck_assert_str_has(err, "STATS: draining 2: it must be 0 (serving) or 1 (draining)");
	m.u.stats.draining = 2;
	ck_assert_int_eq(tdp_encode(&m, buf, sizeof buf), -EINVAL);
}
END_TEST

START_TEST(random_bytes_never_crash)
{
	/* Random payloads of every type and length: decode returns 0 or -EPROTO. */
	uint8_t p[TDP_MAX_PAYLOAD];
	struct tdp_msg m;
	char err[256];
	unsigned seed = 12345;
	int ok = 0;
	for (int iter = 0; iter < 20000; iter++) {
		uint16_t type = (uint16_t)(rand_r(&seed) % (TDP_TYPE_MAX + 2));
		size_t len = (size_t)rand_r(&seed) % 900;
		for (size_t i = 0; i < len; i++)
			p[i] = (uint8_t)rand_r(&seed);
		if (len >= 2 && rand_r(&seed) % 2) { /* plausible string lengths */
			p[len > 42 ? 40 : 0] = (uint8_t)(len - 42);
			p[len > 42 ? 41 : 1] = 0;
		}
		int rc = tdp_decode(type, p, len, &m, err, sizeof err);
		ck_require(rc == 0 || rc == -EPROTO, "decode returned %d", rc);
		ck_require(rc == 0 || err[0], "a refusal without a message");
		ok += rc == 0;
		uint8_t hdr[TDP_HDR_LEN];
		for (int i = 0; i < TDP_HDR_LEN; i++)
			hdr[i] = (uint8_t)rand_r(&seed);
		struct tdp_hdr h;
		rc = tdp_check_hdr(hdr, &h, err, sizeof err);
		ck_require(rc == 0 || rc == -EPROTO, "check_hdr returned %d", rc);
	}
	ck_assert_int_gt(ok, 0);
}
END_TEST

START_TEST(size_text)
{
	char b[32];
	tdp_size_text(0, b, sizeof b);
	ck_assert_str_eq(b, "0 bytes");
	tdp_size_text(1023, b, sizeof b);
	ck_assert_str_eq(b, "1023 bytes");
	tdp_size_text(1024, b, sizeof b);
	ck_assert_str_eq(b, "1 KiB");
	tdp_size_text(64ULL << 20, b, sizeof b);
	ck_assert_str_eq(b, "64 MiB");
	tdp_size_text(1ULL << 30, b, sizeof b);
	ck_assert_str_eq(b, "1 GiB");
	tdp_size_text(3ULL << 29, b, sizeof b);
	ck_assert_str_eq(b, "1.5 GiB");
}
END_TEST

/* ---- I/O helpers and the handshake over a socketpair ---------------------- */

START_TEST(send_recv_socketpair)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct tdp_msg s[16], out;
	char err[256];
	int n = samples(s);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(tdp_send_msg(sv[0], &s[i], 1000), 0);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(tdp_recv_msg(sv[1], &out, 1000, err, sizeof err), 0);
		ck_assert(memcmp(&out, &s[i], sizeof out) == 0);
	}
	/* Nothing there: a timeout. */
	ck_assert_int_eq(tdp_recv_msg(sv[1], &out, 50, err, sizeof err), -ETIMEDOUT);
	ck_assert_str_has(err, "no reply within 50 ms");
	/* Garbage: -EPROTO naming the magic. */
	ck_assert_int_eq(write(sv[0], "GET / HTTP/1.0\r\n", 16), 16);
	ck_assert_int_eq(tdp_recv_msg(sv[1], &out, 1000, err, sizeof err), -EPROTO);
	ck_assert_str_has(err, "bad magic");
	char junk[4];
	ck_assert_int_eq(read(sv[1], junk, 4), 4); /* the garbage's last bytes */
	/* A header promising more than is sent, then the end: -ECONNRESET. */
	uint8_t buf[TDP_HDR_LEN];
	tdp_put_hdr(buf, TDP_LEASE, 32);
	ck_assert_int_eq(write(sv[0], buf, sizeof buf), (ssize_t)sizeof buf);
	ck_assert_int_eq(write(sv[0], "12345678", 8), 8);
	close(sv[0]);
	ck_assert_int_eq(tdp_recv_msg(sv[1], &out, 1000, err, sizeof err), -ECONNRESET);
	ck_assert_str_has(err, "closed the connection");
	close(sv[1]);
}
END_TEST

struct fake_server {
	int fd;
	const char *secret;
	int rc;
	char err[256];
};

/* A minimal server half: CHALLENGE, check AUTH, WELCOME proven with its own secret. */
static void *fake_server(void *arg)
{
	struct fake_server *f = arg;
	struct tdp_msg m, r;
	uint8_t cn[32], sn[32], want[32];
	f->rc = tdp_recv_msg(f->fd, &m, 2000, f->err, sizeof f->err);
	if (f->rc || m.type != TDP_HELLO)
		return NULL;
	memcpy(cn, m.u.hello.nonce, 32);
	memset(sn, 0x77, 32);
	r = (struct tdp_msg){.type = TDP_CHALLENGE};
	r.u.challenge.version = TDP_VERSION;
	memcpy(r.u.challenge.nonce, sn, 32);
	tdp_send_msg(f->fd, &r, 1000);
	f->rc = tdp_recv_msg(f->fd, &m, 2000, f->err, sizeof f->err);
	if (f->rc || m.type != TDP_AUTH)
		return NULL;
	tdp_mac_client(f->secret, strlen(f->secret), sn, cn, want);
	if (!ct_equal(want, m.u.auth.mac, 32)) {
		r = (struct tdp_msg){.type = TDP_ERROR};
		r.u.error.code = EACCES;
		strcpy(r.u.error.msg, "authentication failed");
		tdp_send_msg(f->fd, &r, 1000);
		f->rc = -EACCES;
		return NULL;
	}
	r = (struct tdp_msg){.type = TDP_WELCOME};
	tdp_mac_server(f->secret, strlen(f->secret), cn, sn, r.u.welcome.mac);
	r.u.welcome.client_id = 7;
	strcpy(r.u.welcome.provider, "shm");
	r.u.welcome.addr_len = 3;
	memcpy(r.u.welcome.addr, "abc", 3);
	f->rc = tdp_send_msg(f->fd, &r, 1000);
	return NULL;
}

/* Run the client handshake with secret cs against a fake server holding ss. */
static int handshake_with(const char *cs, const char *ss, char *err, size_t errlen)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct fake_server f = {.fd = sv[1], .secret = ss};
	pthread_t t;
	pthread_create(&t, NULL, fake_server, &f);
	struct tdp_msg w;
	int rc = tdp_handshake(sv[0], cs, strlen(cs), "check_proto", &w, 2000, err, errlen);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	if (rc == 0)
		ck_assert_uint_eq(w.u.welcome.client_id, 7);
	return rc;
}

START_TEST(handshake_proofs)
{
	char err[512];
	ck_assert_int_eq(handshake_with("a good secret 123", "a good secret 123", err, sizeof err),
			 0);
	/* The server refuses a wrong secret. */
	int rc = handshake_with("a wrong secret 12", "a good secret 123", err, sizeof err);
	ck_assert_int_eq(rc, -EACCES);
	ck_assert_str_has(err, "authentication failed");
	/* A server that does not hold the secret cannot pose: its proof is wrong. */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* This impostor accepts any AUTH: it checks against the client's own MAC. */
	pid_t pid = fork();
	if (pid == 0) {
		struct tdp_msg m, r;
		char e[128];
		close(sv[0]);
		if (tdp_recv_msg(sv[1], &m, 2000, e, sizeof e))
			_exit(1);
		r = (struct tdp_msg){.type = TDP_CHALLENGE};
		r.u.challenge.version = TDP_VERSION;
		tdp_send_msg(sv[1], &r, 1000);
		if (tdp_recv_msg(sv[1], &m, 2000, e, sizeof e))
			_exit(1);
		r = (struct tdp_msg){.type = TDP_WELCOME};
		memcpy(r.u.welcome.mac, m.u.auth.mac, 32); /* replays the client's proof */
		strcpy(r.u.welcome.provider, "tcp;ofi_rxm");
		r.u.welcome.addr_len = 1;
		tdp_send_msg(sv[1], &r, 1000);
		_exit(0);
	}
	close(sv[1]);
	struct tdp_msg w;
	rc = tdp_handshake(sv[0], "a good secret 123", 17, "x", &w, 2000, err, sizeof err);
	ck_assert_int_eq(rc, -EACCES);
	ck_assert_str_has(err, "proof");
	close(sv[0]);
	waitpid(pid, NULL, 0);
}
END_TEST

/* Send a DRAIN notice of mode on fd. */
static void send_notice(int fd, uint32_t mode)
{
	struct tdp_msg n = {.type = TDP_DRAIN};
	n.u.drain.mode = mode;
	ck_assert_int_eq(tdp_send_msg(fd, &n, 1000), 0);
}

START_TEST(request_skips_drain_notices)
{
	/* Notices before the reply are skipped; the last one's mode is reported. */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct tdp_msg req = {.type = TDP_RELEASE}, rep, got, m;
	char err[256];
	req.u.release.id = 5;
	send_notice(sv[1], TDP_DRAIN_ON);
	send_notice(sv[1], TDP_DRAIN_OFF);
	send_notice(sv[1], TDP_DRAIN_ON);
	m = (struct tdp_msg){.type = TDP_OK};
	ck_assert_int_eq(tdp_send_msg(sv[1], &m, 1000), 0);
	int notice = -1;
	ck_assert_int_eq(tdp_request(sv[0], &req, TDP_OK, &rep, 1000, err, sizeof err, &notice), 0);
	ck_assert_uint_eq(rep.type, TDP_OK);
	ck_assert_int_eq(notice, TDP_DRAIN_ON);
	ck_assert_int_eq(tdp_recv_msg(sv[1], &got, 1000, err, sizeof err), 0);
	ck_assert_uint_eq(got.type, TDP_RELEASE);
	ck_assert_uint_eq(got.u.release.id, 5);

	/* Without a place for the mode: skipped all the same. */
	send_notice(sv[1], TDP_DRAIN_OFF);
	m = (struct tdp_msg){.type = TDP_STATS};
	m.u.stats.draining = 0;
	ck_assert_int_eq(tdp_send_msg(sv[1], &m, 1000), 0);
	req = (struct tdp_msg){.type = TDP_STATS_REQ};
	ck_assert_int_eq(tdp_request(sv[0], &req, TDP_STATS, &rep, 1000, err, sizeof err, NULL), 0);
	ck_assert_uint_eq(rep.type, TDP_STATS);

	/* An ERROR behind a notice is the answer. */
	send_notice(sv[1], TDP_DRAIN_OFF);
	m = (struct tdp_msg){.type = TDP_ERROR};
	m.u.error.code = ENOENT;
	strcpy(m.u.error.msg, "no lease 5 is held by this client");
	ck_assert_int_eq(tdp_send_msg(sv[1], &m, 1000), 0);
	req = (struct tdp_msg){.type = TDP_RELEASE};
	notice = -1;
	ck_assert_int_eq(tdp_request(sv[0], &req, TDP_OK, &rep, 1000, err, sizeof err, &notice),
			 -ENOENT);
	ck_assert_str_eq(err, "no lease 5 is held by this client");
	ck_assert_int_eq(notice, TDP_DRAIN_OFF);

	/* Notices and no reply: the timeout is for the whole wait, and says so. */
	send_notice(sv[1], TDP_DRAIN_ON);
	notice = -1;
	ck_assert_int_eq(tdp_request(sv[0], &req, TDP_OK, &rep, 100, err, sizeof err, &notice),
			 -ETIMEDOUT);
	ck_assert_str_has(err, "RELEASE: no reply within 100 ms");
	ck_assert_int_eq(notice, TDP_DRAIN_ON);

	/* Any other message is no notice: a protocol error. */
	m = (struct tdp_msg){.type = TDP_LEASE};
	ck_assert_int_eq(tdp_send_msg(sv[1], &m, 1000), 0);
	ck_assert_int_eq(tdp_request(sv[0], &req, TDP_OK, &rep, 1000, err, sizeof err, NULL),
			 -EPROTO);
	ck_assert_str_has(err, "protocol error: expected OK, got LEASE");
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- remote_parse_target ------------------------------------------------- */

static void good_target(const char *s, const char *prov, const char *host, unsigned port)
{
	struct remote_target t;
	char err[256] = "";
	int rc = remote_parse_target(s, strlen(s), &t, err, sizeof err);
	ck_assert_msg(rc == 0, "\"%s\" refused: %s", s, err);
	ck_assert_str_eq(t.provider, prov);
	ck_assert_str_eq(t.host, host);
	ck_assert_uint_eq(t.port, port);
}

static void bad_target(const char *s, const char *what)
{
	struct remote_target t;
	char err[256] = "";
	int rc = remote_parse_target(s, strlen(s), &t, err, sizeof err);
	ck_assert_msg(rc == -EINVAL, "\"%s\" accepted", s);
	ck_assert_str_has(err, what);
	ck_assert_str_has(err, "remote: ");
}

START_TEST(parse_target)
{
	good_target("tcp://127.0.0.1:7411", "tcp", "127.0.0.1", 7411);
	good_target("shm://localhost:1", "shm", "localhost", 1);
	good_target("verbs://node-1.example_x:65535", "verbs", "node-1.example_x", 65535);
	good_target("fi-verbs://10.0.0.1:7411", "fi-verbs", "10.0.0.1", 7411);
	/* len bounds the string: "tcp://h:1234" cut to 10 bytes is port 12. */
	struct remote_target t;
	char err[256];
	ck_assert_int_eq(remote_parse_target("tcp://h:1234", 10, &t, err, sizeof err), 0);
	ck_assert_uint_eq(t.port, 12);

	/* The message the brief shows, exactly. */
	ck_assert_int_eq(remote_parse_target("foo://x", 7, &t, err, sizeof err), -EINVAL);
	ck_assert_str_eq(err, "remote: \"foo://x\" has an unknown provider \"foo\": use tcp, shm, "
			      "verbs (libibverbs) or fi-verbs (libfabric's verbs;ofi_rxm)");
	bad_target("fi_verbs://h:1", "unknown provider \"fi_verbs\"");
	bad_target("TCP://h:1", "unknown provider \"TCP\"");
	bad_target("://h:1", "unknown provider \"\"");
	bad_target("127.0.0.1:7411", "is not a server address: use provider://host:port");
	bad_target("", "is not a server address");
	bad_target("tcp://", "has no host");
	bad_target("tcp://:7411", "has no host");
	bad_target("tcp://host", "has no port");
	bad_target("tcp://host:", "invalid port \"\"");
	bad_target("tcp://host:0", "invalid port \"0\": use a number from 1 to 65535");
	bad_target("tcp://host:65536", "invalid port \"65536\"");
	bad_target("tcp://host:123456", "invalid port");
	bad_target("tcp://host:12a", "invalid port \"12a\"");
	bad_target("tcp://host:-1", "invalid port");
	bad_target("tcp://host:7411/path", "invalid port \"7411/path\"");
	bad_target("tcp://ho st:1", "invalid host \"ho st\"");
	bad_target("tcp://[::1]:1", "invalid host");
	bad_target("tcp://-h:1", "invalid host");
	bad_target("tcp://user@h:1", "invalid host");
	char longhost[400] = "tcp://";
	memset(longhost + 6, 'a', 300);
	strcpy(longhost + 306, ":1");
	bad_target(longhost, "invalid host");
}
END_TEST

/* ---- the verbs data path's wire formats (rdma-rc) ------------------------- */

START_TEST(rc_addr_and_qp_pdata)
{
	char err[256] = "";
	/* the WELCOME address: layout and round trip */
	struct tdp_rc_addr a = {.ipv4 = {10, 0, 0, 1}, .port = 0x1cf3}, b;
	for (int i = 0; i < TDP_NONCE_LEN; i++)
		a.nonce[i] = (uint8_t)(0xa0 + i);
	uint8_t buf[TDP_RC_ADDR_LEN + 1];
	tdp_rc_addr_put(buf, &a);
	ck_assert_uint_eq(buf[0], 4);
	ck_assert_uint_eq(buf[1], 10);
	ck_assert_uint_eq(buf[4], 1);
	ck_assert_uint_eq(buf[5], 0xf3); /* little-endian port */
	ck_assert_uint_eq(buf[6], 0x1c);
	ck_assert_uint_eq(buf[7], 0xa0);
	ck_assert_int_eq(tdp_rc_addr_get(buf, TDP_RC_ADDR_LEN, &b, err, sizeof err), 0);
	ck_assert_mem_eq(&a, &b, sizeof a);
	ck_assert_int_eq(tdp_rc_addr_get(buf, TDP_RC_ADDR_LEN - 1, &b, err, sizeof err), -EPROTO);
	ck_assert_str_has(err, "an rdma-rc address of 38 bytes: it has 39");
	ck_assert_int_eq(tdp_rc_addr_get(buf, TDP_RC_ADDR_LEN + 1, &b, err, sizeof err), -EPROTO);
	buf[0] = 6;
	ck_assert_int_eq(tdp_rc_addr_get(buf, TDP_RC_ADDR_LEN, &b, err, sizeof err), -EPROTO);
	ck_assert_str_has(err, "of kind 6: only 4 (IPv4)");
	buf[0] = 4, buf[5] = buf[6] = 0;
	ck_assert_int_eq(tdp_rc_addr_get(buf, TDP_RC_ADDR_LEN, &b, err, sizeof err), -EPROTO);
	ck_assert_str_has(err, "port 0");

	/* the proof binds the secret, the client id and the nonce */
	uint8_t p1[TDP_MAC_LEN], p2[TDP_MAC_LEN];
	tdp_mac_qp("secret-0123456789", 17, 7, a.nonce, p1);
	tdp_mac_qp("secret-0123456789", 17, 7, a.nonce, p2);
	ck_assert_mem_eq(p1, p2, TDP_MAC_LEN);
	tdp_mac_qp("secret-0123456788", 17, 7, a.nonce, p2);
	ck_assert(memcmp(p1, p2, TDP_MAC_LEN) != 0);
	tdp_mac_qp("secret-0123456789", 17, 8, a.nonce, p2);
	ck_assert(memcmp(p1, p2, TDP_MAC_LEN) != 0);
	a.nonce[31] ^= 1;
	tdp_mac_qp("secret-0123456789", 17, 7, a.nonce, p2);
	ck_assert(memcmp(p1, p2, TDP_MAC_LEN) != 0);
	/* ... and is HMAC-SHA256(secret, "tdp1-qp" || client_id (u64 LE) || nonce) */
	uint8_t msg[7 + 8 + TDP_NONCE_LEN];
	memcpy(msg, "tdp1-qp", 7);
	memset(msg + 7, 0, 8);
	msg[7] = 7;
	a.nonce[31] ^= 1;
	memcpy(msg + 15, a.nonce, TDP_NONCE_LEN);
	hmac_sha256("secret-0123456789", 17, msg, sizeof msg, p2);
	ck_assert_mem_eq(p1, p2, TDP_MAC_LEN);

	/* a queue pair's private data, with the CM's padding after it */
	uint8_t pd[56] = {0}, proof[TDP_MAC_LEN];
	uint64_t id = 0;
	tdp_qp_pdata_put(pd, 0x0102030405060708ULL, p1);
	ck_assert_mem_eq(pd, "TQP1", 4);
	ck_assert_uint_eq(pd[4], 8);
	ck_assert_int_eq(tdp_qp_pdata_get(pd, sizeof pd, &id, proof, err, sizeof err), 0);
	ck_assert_uint_eq(id, 0x0102030405060708ULL);
	ck_assert_mem_eq(proof, p1, TDP_MAC_LEN);
	ck_assert_int_eq(tdp_qp_pdata_get(pd, TDP_QP_PDATA_LEN, &id, proof, err, sizeof err), 0);
	ck_assert_int_eq(tdp_qp_pdata_get(pd, TDP_QP_PDATA_LEN - 1, &id, proof, err, sizeof err),
			 -EPROTO);
	ck_assert_str_has(err, "43 bytes of private data");
	ck_assert_int_eq(tdp_qp_pdata_get(NULL, 56, &id, proof, err, sizeof err), -EPROTO);
	pd[0] ^= 0x20;
	ck_assert_int_eq(tdp_qp_pdata_get(pd, sizeof pd, &id, proof, err, sizeof err), -EPROTO);
	ck_assert_str_has(err, "expected 0x31505154");

	/* a rejection's reason */
	uint8_t rj[TDP_QP_REJECT_LEN];
	tdp_qp_reject_put(rj, EACCES);
	ck_assert_int_eq(tdp_qp_reject_get(rj, sizeof rj), EACCES);
	tdp_qp_reject_put(rj, -ENOENT);
	ck_assert_int_eq(tdp_qp_reject_get(rj, sizeof rj), ENOENT);
	ck_assert_int_eq(tdp_qp_reject_get(rj, sizeof rj - 1), 0);
	ck_assert_int_eq(tdp_qp_reject_get(NULL, 8), 0);
	rj[0] = 0;
	ck_assert_int_eq(tdp_qp_reject_get(rj, sizeof rj), 0);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("crypto");
	tcase_add_test(tc, sha256_vectors);
	tcase_add_test(tc, sha256_million_a_incremental);
	tcase_add_test(tc, hmac_rfc4231);
	tcase_add_test(tc, ct_equal_and_macs);
	suite_add_tcase(s, tc);
	tc = tcase_create("codec");
	tcase_add_test(tc, roundtrip_every_type);
	tcase_add_test(tc, wire_layout);
	tcase_add_test(tc, roundtrip_limits);
	tcase_add_test(tc, encode_refuses);
	tcase_add_test(tc, header_refused);
	tcase_add_test(tc, short_and_long_payloads);
	tcase_add_test(tc, lying_lengths);
	tcase_add_test(tc, drain_messages);
	tcase_add_test(tc, random_bytes_never_crash);
	tcase_add_test(tc, size_text);
	tcase_add_test(tc, rc_addr_and_qp_pdata);
	suite_add_tcase(s, tc);
	tc = tcase_create("io");
	tcase_add_test(tc, send_recv_socketpair);
	tcase_add_test(tc, handshake_proofs);
	tcase_add_test(tc, request_skips_drain_notices);
	suite_add_tcase(s, tc);
	tc = tcase_create("target");
	tcase_add_test(tc, parse_target);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(proto_suite());
}
