/*
 * proto.c -- the tieredd control protocol (docs/PROTOCOL.md): framing, encoders and
 * decoders, blocking I/O with a deadline, the client's handshake, and
 * remote_parse_target() of lib/remote.h.
 *
 * Integers are little-endian and are written and read byte by byte, never
 * by casting a struct over the buffer.  A decoder checks every length
 * against the bytes that are there and refuses bytes left over; its error
 * says which message and field were wrong.  Nothing here allocates, keeps
 * state or logs: callers decide what to say and to whom.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "remote.h"
#include "sha256.h"

/* Payload length bounds per type, and who sends it. */
static const struct {
	const char *name;
	uint16_t min, max;
} types[TDP_TYPE_MAX + 1] = {
	[TDP_HELLO] = {"HELLO", 42, 42 + TDP_STR_MAX},
	[TDP_CHALLENGE] = {"CHALLENGE", 34, 34},
	[TDP_AUTH] = {"AUTH", 32, 32},
	[TDP_WELCOME] = {"WELCOME", 60, 60 + TDP_STR_MAX + TDP_ADDR_MAX},
	[TDP_LEASE_REQ] = {"LEASE_REQ", 8, 8},
	[TDP_LEASE] = {"LEASE", 32, 32},
	[TDP_RELEASE] = {"RELEASE", 8, 8},
	[TDP_OK] = {"OK", 0, 0},
	[TDP_STATS_REQ] = {"STATS_REQ", 0, 0},
	[TDP_STATS] = {"STATS", 72, 72},
	[TDP_REPORT] = {"REPORT", 16, 16},
	[TDP_ERROR] = {"ERROR", 6, 6 + TDP_STR_MAX},
	[TDP_DRAIN_REQ] = {"DRAIN_REQ", 4, 4},
	[TDP_DRAIN] = {"DRAIN", 4, 4},
};

const char *tdp_type_name(unsigned type)
{
	return type >= 1 && type <= TDP_TYPE_MAX ? types[type].name : "unknown";
}

/* ---- byte order ---------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* ---- header -------------------------------------------------------------- */

void tdp_put_hdr(uint8_t *p, uint16_t type, uint32_t len)
{
	put32(p, TDP_MAGIC);
	put16(p + 4, TDP_FRAME_VERSION);
	put16(p + 6, type);
	put32(p + 8, len);
}

/* tdp_check_hdr -- decode a header and refuse anything the protocol does not allow */
int tdp_check_hdr(const uint8_t *p, struct tdp_hdr *h, char *err, size_t errlen)
{
	h->magic = get32(p);
	h->version = get16(p + 4);
	h->type = get16(p + 6);
	h->len = get32(p + 8);
	if (h->magic != TDP_MAGIC) {
		snprintf(err, errlen,
			 "bad magic 0x%08x: a message starts with 0x%08x (the bytes \"TDP1\")",
			 h->magic, TDP_MAGIC);
		return -EPROTO;
	}
	if (h->version != TDP_FRAME_VERSION) {
		snprintf(err, errlen, "bad header version %u: the header's version is %u",
			 h->version, TDP_FRAME_VERSION);
		return -EPROTO;
	}
	if (h->type < 1 || h->type > TDP_TYPE_MAX) {
		snprintf(err, errlen, "unknown message type %u: types are 1..%u", h->type,
			 TDP_TYPE_MAX);
		return -EPROTO;
	}
	if (h->len > TDP_MAX_PAYLOAD) {
		snprintf(err, errlen, "%s payload of %u bytes is over the limit of %u",
			 types[h->type].name, h->len, TDP_MAX_PAYLOAD);
		return -EPROTO;
	}
	if (h->len < types[h->type].min || h->len > types[h->type].max) {
		if (types[h->type].min == types[h->type].max)
			snprintf(err, errlen, "%s payload of %u bytes: it must be %u bytes",
				 types[h->type].name, h->len, types[h->type].min);
		else
			snprintf(err, errlen, "%s payload of %u bytes: it must be %u to %u bytes",
				 types[h->type].name, h->len, types[h->type].min,
				 types[h->type].max);
		return -EPROTO;
	}
	return 0;
}

/* ---- encoding ------------------------------------------------------------ */

struct wbuf {
	uint8_t *p;
	size_t cap, off;
	bool over;
};

static uint8_t *wtake(struct wbuf *w, size_t n)
{
	if (w->over || w->cap - w->off < n) {
		w->over = true;
		return NULL;
	}
	uint8_t *q = w->p + w->off;
	w->off += n;
	return q;
}

static void w16(struct wbuf *w, uint16_t v)
{
	uint8_t *q = wtake(w, 2);
	if (q)
		put16(q, v);
}

static void w32(struct wbuf *w, uint32_t v)
{
	uint8_t *q = wtake(w, 4);
	if (q)
		put32(q, v);
}

static void w64(struct wbuf *w, uint64_t v)
{
	uint8_t *q = wtake(w, 8);
	if (q)
		put64(q, v);
}

static void wbytes(struct wbuf *w, const void *b, size_t n)
{
	uint8_t *q = wtake(w, n);
	if (q && n)
		memcpy(q, b, n);
}

/* A string field: u16 length and the bytes; -EINVAL when longer than 255. */
static int wstr(struct wbuf *w, const char *s, size_t bufsize)
{
	size_t n = strnlen(s, bufsize);
	if (n > TDP_STR_MAX)
		return -EINVAL;
	w16(w, (uint16_t)n);
	wbytes(w, s, n);
	return 0;
}

/* tdp_encode -- header and payload of m into buf */
ssize_t tdp_encode(const struct tdp_msg *m, uint8_t *buf, size_t cap)
{
	struct wbuf w = {buf, cap, 0, false};
	if (m->type < 1 || m->type > TDP_TYPE_MAX)
		return -EINVAL;
	if (!wtake(&w, TDP_HDR_LEN))
		return -EMSGSIZE;
	int rc = 0;
	switch (m->type) {
	case TDP_HELLO:
		w16(&w, m->u.hello.min_version);
		w16(&w, m->u.hello.max_version);
		wbytes(&w, m->u.hello.nonce, TDP_NONCE_LEN);
		w32(&w, m->u.hello.pid);
		rc = wstr(&w, m->u.hello.name, sizeof m->u.hello.name);
		break;
	case TDP_CHALLENGE:
		w16(&w, m->u.challenge.version);
		wbytes(&w, m->u.challenge.nonce, TDP_NONCE_LEN);
		break;
	case TDP_AUTH:
		wbytes(&w, m->u.auth.mac, TDP_MAC_LEN);
		break;
	case TDP_WELCOME:
		if (m->u.welcome.addr_len == 0 || m->u.welcome.addr_len > TDP_ADDR_MAX)
			return -EINVAL;
		wbytes(&w, m->u.welcome.mac, TDP_MAC_LEN);
		w64(&w, m->u.welcome.client_id);
		w64(&w, m->u.welcome.capacity);
		w64(&w, m->u.welcome.client_limit);
		rc = wstr(&w, m->u.welcome.provider, sizeof m->u.welcome.provider);
		w16(&w, m->u.welcome.addr_len);
		wbytes(&w, m->u.welcome.addr, m->u.welcome.addr_len);
		break;
	case TDP_LEASE_REQ:
		w64(&w, m->u.lease_req.bytes);
		break;
	case TDP_LEASE:
		w64(&w, m->u.lease.id);
		w64(&w, m->u.lease.raddr);
		w64(&w, m->u.lease.key);
		w64(&w, m->u.lease.len);
		break;
	case TDP_RELEASE:
		w64(&w, m->u.release.id);
		break;
	case TDP_OK:
	case TDP_STATS_REQ:
		break;
	case TDP_STATS: {
		const struct tdp_stats *s = &m->u.stats;
		const uint64_t v[9] = {s->capacity, s->leased,	      s->clients,
				       s->leases,   s->bytes_written, s->bytes_read,
				       s->errors,   s->refusals,      s->draining};
		if (s->draining > 1)
			return -EINVAL;
		for (int i = 0; i < 9; i++)
			w64(&w, v[i]);
		break;
	}
	case TDP_REPORT:
		w64(&w, m->u.report.bytes_written);
		w64(&w, m->u.report.bytes_read);
		break;
	case TDP_ERROR:
		if (m->u.error.code == 0)
			return -EINVAL;
		w32(&w, m->u.error.code);
		rc = wstr(&w, m->u.error.msg, sizeof m->u.error.msg);
		break;
	case TDP_DRAIN_REQ:
	case TDP_DRAIN:
		if (m->u.drain.mode > TDP_DRAIN_ON)
			return -EINVAL;
		w32(&w, m->u.drain.mode);
		break;
	}
	if (rc < 0)
		return rc;
	if (w.over)
		return -EMSGSIZE;
	tdp_put_hdr(buf, m->type, (uint32_t)(w.off - TDP_HDR_LEN));
	return (ssize_t)w.off;
}

/* ---- decoding ------------------------------------------------------------ */

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	const char *msg; /* message name, for errors */
	char *err;
	size_t errlen;
	bool bad;
};

static const uint8_t *rtake(struct rbuf *r, size_t n, const char *field)
{
	if (r->bad)
		return NULL;
	if (r->len - r->off < n) {
		snprintf(r->err, r->errlen, "%s: field %s needs %zu bytes but %zu remain", r->msg,
			 field, n, r->len - r->off);
		r->bad = true;
		return NULL;
	}
	const uint8_t *q = r->p + r->off;
	r->off += n;
	return q;
}

static uint16_t r16(struct rbuf *r, const char *field)
{
	const uint8_t *q = rtake(r, 2, field);
	return q ? get16(q) : 0;
}

static uint32_t r32(struct rbuf *r, const char *field)
{
	const uint8_t *q = rtake(r, 4, field);
	return q ? get32(q) : 0;
}

static uint64_t r64(struct rbuf *r, const char *field)
{
	const uint8_t *q = rtake(r, 8, field);
	return q ? get64(q) : 0;
}

static void rbytes(struct rbuf *r, void *out, size_t n, const char *field)
{
	const uint8_t *q = rtake(r, n, field);
	if (q && n)
		memcpy(out, q, n);
}

/* A string field into out[TDP_STR_MAX + 1]: at most 255 bytes, no NUL inside. */
static void rstr(struct rbuf *r, char *out, const char *field)
{
	out[0] = 0;
	uint16_t n = r16(r, field);
	if (r->bad)
		return;
	if (n > TDP_STR_MAX) {
		snprintf(r->err, r->errlen, "%s: string %s of %u bytes is over the limit of %u",
			 r->msg, field, n, TDP_STR_MAX);
		r->bad = true;
		return;
	}
	const uint8_t *q = rtake(r, n, field);
	if (!q)
		return;
	if (memchr(q, 0, n)) {
		snprintf(r->err, r->errlen, "%s: string %s holds a NUL byte", r->msg, field);
		r->bad = true;
		return;
	}
	memcpy(out, q, n);
	out[n] = 0;
}

static void rfail(struct rbuf *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rfail -- record the first decoding error, prefixed with the message's name */
static void rfail(struct rbuf *r, const char *fmt, ...)
{
	if (r->bad)
		return;
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	snprintf(r->err, r->errlen, "%s: %s", r->msg, what);
	r->bad = true;
}

/* tdp_decode -- payload of a message of type into m, consuming every byte */
int tdp_decode(uint16_t type, const uint8_t *p, size_t len, struct tdp_msg *m, char *err,
	       size_t errlen)
{
	struct rbuf r = {p, len, 0, tdp_type_name(type), err, errlen, false};
	memset(m, 0, sizeof *m);
	m->type = type;
	if (type < 1 || type > TDP_TYPE_MAX) {
		snprintf(err, errlen, "unknown message type %u: types are 1..%u", type,
			 TDP_TYPE_MAX);
		return -EPROTO;
	}
	if (len < types[type].min || len > types[type].max) {
		snprintf(err, errlen, "%s payload of %zu bytes: it must be %u to %u bytes",
			 types[type].name, len, types[type].min, types[type].max);
		return -EPROTO;
	}
	switch (type) {
	case TDP_HELLO:
		m->u.hello.min_version = r16(&r, "min_version");
		m->u.hello.max_version = r16(&r, "max_version");
		rbytes(&r, m->u.hello.nonce, TDP_NONCE_LEN, "nonce");
		m->u.hello.pid = r32(&r, "pid");
		rstr(&r, m->u.hello.name, "name");
		if (m->u.hello.min_version == 0 || m->u.hello.min_version > m->u.hello.max_version)
			rfail(&r, "version range %u..%u is empty or starts at 0",
			      m->u.hello.min_version, m->u.hello.max_version);
		break;
	case TDP_CHALLENGE:
		m->u.challenge.version = r16(&r, "version");
		rbytes(&r, m->u.challenge.nonce, TDP_NONCE_LEN, "nonce");
		break;
	case TDP_AUTH:
		rbytes(&r, m->u.auth.mac, TDP_MAC_LEN, "mac");
		break;
	case TDP_WELCOME:
		rbytes(&r, m->u.welcome.mac, TDP_MAC_LEN, "mac");
		m->u.welcome.client_id = r64(&r, "client_id");
		m->u.welcome.capacity = r64(&r, "capacity");
		m->u.welcome.client_limit = r64(&r, "client_limit");
		rstr(&r, m->u.welcome.provider, "provider");
		m->u.welcome.addr_len = r16(&r, "address length");
		if (!r.bad && (m->u.welcome.addr_len == 0 || m->u.welcome.addr_len > TDP_ADDR_MAX))
			rfail(&r, "fabric address of %u bytes: it must be 1 to %u bytes",
			      m->u.welcome.addr_len, TDP_ADDR_MAX);
		rbytes(&r, m->u.welcome.addr, m->u.welcome.addr_len, "address");
		if (!r.bad && m->u.welcome.provider[0] == 0)
			rfail(&r, "empty provider name");
		break;
	case TDP_LEASE_REQ:
		m->u.lease_req.bytes = r64(&r, "bytes");
		break;
	case TDP_LEASE:
		m->u.lease.id = r64(&r, "id");
		m->u.lease.raddr = r64(&r, "raddr");
		m->u.lease.key = r64(&r, "key");
		m->u.lease.len = r64(&r, "len");
		break;
	case TDP_RELEASE:
		m->u.release.id = r64(&r, "id");
		break;
	case TDP_OK:
	case TDP_STATS_REQ:
		break;
	case TDP_STATS:
		m->u.stats.capacity = r64(&r, "capacity");
		m->u.stats.leased = r64(&r, "leased");
		m->u.stats.clients = r64(&r, "clients");
		m->u.stats.leases = r64(&r, "leases");
		m->u.stats.bytes_written = r64(&r, "bytes_written");
		m->u.stats.bytes_read = r64(&r, "bytes_read");
		m->u.stats.errors = r64(&r, "errors");
		m->u.stats.refusals = r64(&r, "refusals");
		m->u.stats.draining = r64(&r, "draining");
		if (!r.bad && m->u.stats.draining > 1)
			rfail(&r, "draining %llu: it must be 0 (serving) or 1 (draining)",
			      (unsigned long long)m->u.stats.draining);
		break;
	case TDP_REPORT:
		m->u.report.bytes_written = r64(&r, "bytes_written");
		m->u.report.bytes_read = r64(&r, "bytes_read");
		break;
	case TDP_ERROR:
		m->u.error.code = r32(&r, "code");
		rstr(&r, m->u.error.msg, "message");
		if (!r.bad && (m->u.error.code == 0 || m->u.error.code > 4095))
			rfail(&r, "error code %u: it must be an errno, 1 to 4095", m->u.error.code);
		break;
	case TDP_DRAIN_REQ:
	case TDP_DRAIN:
		m->u.drain.mode = r32(&r, "mode");
		if (!r.bad && m->u.drain.mode > TDP_DRAIN_ON)
			rfail(&r, "mode %u: it must be 0 (%s) or 1 (%s)", m->u.drain.mode,
			      type == TDP_DRAIN ? "draining cancelled" : "stop draining",
			      type == TDP_DRAIN ? "draining" : "start draining");
		break;
	}
	if (!r.bad && r.off != len)
		rfail(&r, "%zu bytes left over after the last field (payload of %zu bytes)",
		      len - r.off, len);
	return r.bad ? -EPROTO : 0;
}

/* ---- blocking I/O with a deadline ---------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline (-1: none) passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int t = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			t = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd pfd = {.fd = fd, .events = events};
		int n = poll(&pfd, 1, t);
		if (n > 0)
			return 0; /* errors and hang-ups show in the next send/recv */
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int tdp_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return errno == EPIPE ? -ECONNRESET : -errno;
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Receive exactly len bytes; -ECONNRESET on end of stream. */
static int recv_all(int fd, void *buf, size_t len, int64_t deadline)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int tdp_send_msg(int fd, const struct tdp_msg *m, int timeout_ms)
{
	uint8_t buf[TDP_MAX_MSG];
	ssize_t n = tdp_encode(m, buf, sizeof buf);
	if (n < 0)
		return (int)n;
	return tdp_send_all(fd, buf, (size_t)n, timeout_ms);
}

int tdp_recv_msg(int fd, struct tdp_msg *m, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	uint8_t buf[TDP_MAX_MSG];
	struct tdp_hdr h;
	int rc = recv_all(fd, buf, TDP_HDR_LEN, deadline);
	if (rc < 0)
		goto io;
	rc = tdp_check_hdr(buf, &h, err, errlen);
	if (rc < 0)
		return rc;
	rc = recv_all(fd, buf + TDP_HDR_LEN, h.len, deadline);
	if (rc < 0)
		goto io;
	return tdp_decode(h.type, buf + TDP_HDR_LEN, h.len, m, err, errlen);
io:
	if (rc == -ECONNRESET)
		snprintf(err, errlen, "the server closed the connection");
	else if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "no reply within %d ms", timeout_ms);
	else
		snprintf(err, errlen, "receive failed: %s", strerror(-rc));
	return rc;
}

/* ---- authentication ------------------------------------------------------ */

static void mac(const void *secret, size_t slen, const char *label, const uint8_t *a,
		const uint8_t *b, uint8_t out[TDP_MAC_LEN])
{
	struct hmac_sha256 h;
	hmac_sha256_init(&h, secret, slen);
	hmac_sha256_update(&h, label, strlen(label));
	hmac_sha256_update(&h, a, TDP_NONCE_LEN);
	hmac_sha256_update(&h, b, TDP_NONCE_LEN);
	hmac_sha256_final(&h, out);
	secure_zero(&h, sizeof h);
}

void tdp_mac_client(const void *secret, size_t slen, const uint8_t snonce[TDP_NONCE_LEN],
		    const uint8_t cnonce[TDP_NONCE_LEN], uint8_t out[TDP_MAC_LEN])
{
	mac(secret, slen, "tdp1-client", snonce, cnonce, out);
}

void tdp_mac_server(const void *secret, size_t slen, const uint8_t cnonce[TDP_NONCE_LEN],
		    const uint8_t snonce[TDP_NONCE_LEN], uint8_t out[TDP_MAC_LEN])
{
	mac(secret, slen, "tdp1-server", cnonce, snonce, out);
}

/* ---- the verbs data path (rdma-rc) --------------------------------------- */

void tdp_mac_qp(const void *secret, size_t slen, uint64_t client_id,
		const uint8_t nonce[TDP_NONCE_LEN], uint8_t out[TDP_MAC_LEN])
{
	static const char label[] = "tdp1-qp";
	uint8_t id[8];
	struct hmac_sha256 h;
	put64(id, client_id);
	hmac_sha256_init(&h, secret, slen);
	hmac_sha256_update(&h, label, sizeof label - 1);
	hmac_sha256_update(&h, id, sizeof id);
	hmac_sha256_update(&h, nonce, TDP_NONCE_LEN);
	hmac_sha256_final(&h, out);
	secure_zero(&h, sizeof h);
}

void tdp_rc_addr_put(uint8_t *buf, const struct tdp_rc_addr *a)
{
	buf[0] = TDP_RC_KIND_IPV4;
	memcpy(buf + 1, a->ipv4, 4);
	put16(buf + 5, a->port);
	memcpy(buf + 7, a->nonce, TDP_NONCE_LEN);
}

int tdp_rc_addr_get(const uint8_t *buf, size_t len, struct tdp_rc_addr *a, char *err,
		    size_t errlen)
{
	if (len != TDP_RC_ADDR_LEN) {
		snprintf(err, errlen, "an rdma-rc address of %zu bytes: it has %d", len,
			 TDP_RC_ADDR_LEN);
		return -EPROTO;
	}
	if (buf[0] != TDP_RC_KIND_IPV4) {
		snprintf(err, errlen, "an rdma-rc address of kind %u: only %d (IPv4) is known",
			 buf[0], TDP_RC_KIND_IPV4);
		return -EPROTO;
	}
	memcpy(a->ipv4, buf + 1, 4);
	a->port = get16(buf + 5);
	memcpy(a->nonce, buf + 7, TDP_NONCE_LEN);
	if (a->port == 0) {
		snprintf(err, errlen, "an rdma-rc address with port 0");
		return -EPROTO;
	}
	return 0;
}

void tdp_qp_pdata_put(uint8_t *buf, uint64_t client_id, const uint8_t proof[TDP_MAC_LEN])
{
	put32(buf, TDP_QP_MAGIC);
	put64(buf + 4, client_id);
	memcpy(buf + 12, proof, TDP_MAC_LEN);
}

int tdp_qp_pdata_get(const void *buf, size_t len, uint64_t *client_id,
		     uint8_t proof[TDP_MAC_LEN], char *err, size_t errlen)
{
	const uint8_t *p = buf;
	if (!p || len < TDP_QP_PDATA_LEN) {
		snprintf(err, errlen, "%zu bytes of private data: a queue pair's connect carries "
				      "%d (magic, client id, proof)",
			 p ? len : 0, TDP_QP_PDATA_LEN);
		return -EPROTO;
	}
	uint32_t magic = get32(p);
	if (magic != TDP_QP_MAGIC) {
		snprintf(err, errlen, "private data with magic 0x%08x: expected 0x%08x (\"TQP1\")",
			 magic, TDP_QP_MAGIC);
		return -EPROTO;
	}
	*client_id = get64(p + 4);
	memcpy(proof, p + 12, TDP_MAC_LEN);
	return 0;
}

void tdp_qp_reject_put(uint8_t *buf, int code)
{
	put32(buf, TDP_QP_MAGIC);
	put32(buf + 4, (uint32_t)(code < 0 ? -code : code));
}

int tdp_qp_reject_get(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (!p || len < TDP_QP_REJECT_LEN || get32(p) != TDP_QP_MAGIC)
		return 0;
	uint32_t code = get32(p + 4);
	return code > 0 && code < 4096 ? (int)code : 0;
}

void tdp_keepalive(int fd, int idle_s, int intvl_s, int cnt)
{
	int one = 1;
	unsigned ms = (unsigned)(idle_s + intvl_s * cnt) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s, sizeof intvl_s);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

int tdp_random(void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

void tdp_size_text(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	int u = -1;
	for (int i = 0; i < 5 && v >= (1ULL << (10 * (i + 1))); i++)
		u = i;
	if (u < 0) {
		snprintf(buf, len, "%llu bytes", (unsigned long long)v);
		return;
	}
	uint64_t unit = 1ULL << (10 * (u + 1));
	if (v % unit == 0)
		snprintf(buf, len, "%llu %s", (unsigned long long)(v / unit), units[u]);
	else
		snprintf(buf, len, "%.1f %s", (double)v / (double)unit, units[u]);
}

/* ---- the client side ----------------------------------------------------- */

int tdp_connect(const char *host, uint16_t port, int timeout_ms, int *out, char *err,
		size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char serv[8];
	snprintf(serv, sizeof serv, "%u", port);
	int rc = getaddrinfo(host, serv, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int last = -ECONNREFUSED;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			last = -errno;
			close(fd);
			continue;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			tdp_keepalive(fd, 10, 2, 3);
			freeaddrinfo(res);
			*out = fd;
			return 0;
		}
		last = rc < 0 ? rc : -(soerr ? soerr : errno);
		close(fd);
	}
	freeaddrinfo(res);
	snprintf(err, errlen, "cannot connect to %s:%u: %s", host, port, strerror(-last));
	return last;
}

/* An ERROR reply: its code as a negative errno, its text in err. */
static int server_error(const struct tdp_msg *m, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "the server refused the %s: %s", what, m->u.error.msg);
	return -(int)m->u.error.code;
}

int tdp_handshake(int fd, const void *secret, size_t slen, const char *name,
		  struct tdp_msg *welcome, int timeout_ms, char *err, size_t errlen)
{
	struct tdp_msg m = {.type = TDP_HELLO};
	uint8_t cnonce[TDP_NONCE_LEN], snonce[TDP_NONCE_LEN], want[TDP_MAC_LEN];
	char why[300];
	int rc = tdp_random(cnonce, sizeof cnonce);
	if (rc < 0) {
		snprintf(err, errlen, "getrandom failed: %s", strerror(-rc));
		return rc;
	}
	m.u.hello.min_version = TDP_VERSION;
	m.u.hello.max_version = TDP_VERSION;
	memcpy(m.u.hello.nonce, cnonce, sizeof cnonce);
	m.u.hello.pid = (uint32_t)getpid();
	snprintf(m.u.hello.name, sizeof m.u.hello.name, "%s", name ? name : "");
	rc = tdp_send_msg(fd, &m, timeout_ms);
	if (rc < 0)
		goto io;
	rc = tdp_recv_msg(fd, &m, timeout_ms, why, sizeof why);
	if (rc < 0)
		goto recv;
	if (m.type == TDP_ERROR)
		return server_error(&m, "connection", err, errlen);
	if (m.type != TDP_CHALLENGE || m.u.challenge.version != TDP_VERSION) {
		snprintf(err, errlen, "protocol error: expected CHALLENGE for version %u, got %s",
			 TDP_VERSION, tdp_type_name(m.type));
		return -EPROTO;
	}
	memcpy(snonce, m.u.challenge.nonce, sizeof snonce);
	m.type = TDP_AUTH;
	tdp_mac_client(secret, slen, snonce, cnonce, m.u.auth.mac);
	rc = tdp_send_msg(fd, &m, timeout_ms);
	if (rc < 0)
		goto io;
	rc = tdp_recv_msg(fd, welcome, timeout_ms, why, sizeof why);
	if (rc < 0)
		goto recv;
	if (welcome->type == TDP_ERROR)
		return server_error(welcome, "authentication", err, errlen);
	if (welcome->type != TDP_WELCOME) {
		snprintf(err, errlen, "protocol error: expected WELCOME, got %s",
			 tdp_type_name(welcome->type));
		return -EPROTO;
	}
	tdp_mac_server(secret, slen, cnonce, snonce, want);
	if (!ct_equal(want, welcome->u.welcome.mac, TDP_MAC_LEN)) {
		snprintf(err, errlen,
			 "the server's proof of the secret is wrong: it does not hold our secret");
		return -EACCES;
	}
	return 0;
io:
	snprintf(err, errlen, "send failed: %s", strerror(-rc));
	return rc;
recv:
	snprintf(err, errlen, "%s%s", rc == -EPROTO ? "protocol error: " : "", why);
	return rc;
}

int tdp_request(int fd, const struct tdp_msg *req, uint16_t want, struct tdp_msg *reply,
		int timeout_ms, char *err, size_t errlen, int *drain_notice)
{
	char why[300];
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	reply->type = 0;
	int rc = tdp_send_msg(fd, req, timeout_ms);
	if (rc < 0) {
		snprintf(err, errlen, "%s: send failed: %s", tdp_type_name(req->type),
			 strerror(-rc));
		return rc;
	}
	for (;;) {
		int left = -1;
		if (deadline >= 0) {
			int64_t ms = deadline - now_ms();
			left = ms > 0 ? (int)ms : 0;
		}
		reply->type = 0;
		rc = tdp_recv_msg(fd, reply, left, why, sizeof why);
		if (rc == -ETIMEDOUT)
			snprintf(why, sizeof why, "no reply within %d ms", timeout_ms);
		if (rc < 0) {
			snprintf(err, errlen, "%s: %s%s", tdp_type_name(req->type),
				 rc == -EPROTO ? "protocol error: " : "", why);
			return rc;
		}
		if (reply->type != TDP_DRAIN || want == TDP_DRAIN)
			break;
		/* an unsolicited notice, not the reply: note it and wait on */
		if (drain_notice)
			*drain_notice = (int)reply->u.drain.mode;
	}
	if (reply->type == TDP_ERROR) {
		snprintf(err, errlen, "%s", reply->u.error.msg);
		return -(int)reply->u.error.code;
	}
	if (reply->type != want) {
		snprintf(err, errlen, "%s: protocol error: expected %s, got %s",
			 tdp_type_name(req->type), tdp_type_name(want), tdp_type_name(reply->type));
		return -EPROTO;
	}
	return 0;
}

/* ---- remote_parse_target ------------------------------------------------- */

/* remote_parse_target -- "provider://host:port" into t (see lib/remote.h) */
int remote_parse_target(const char *s, size_t len, struct remote_target *t, char *err,
			size_t errlen)
{
	static const char *const provs[] = {"tcp", "shm", "verbs", "fi-verbs"};
	const int show = len > 80 ? 80 : (int)len;
	const char *sep = NULL;
	memset(t, 0, sizeof *t);
	for (size_t i = 0; i + 3 <= len; i++) {
		if (memcmp(s + i, "://", 3) == 0) {
			sep = s + i;
			break;
		}
	}
	if (!sep) {
		snprintf(err, errlen,
			 "remote: \"%.*s\" is not a server address: use provider://host:port, "
			 "e.g. tcp://127.0.0.1:7411",
			 show, s);
		return -EINVAL;
	}
	size_t plen = (size_t)(sep - s);
	bool known = false;
	for (size_t i = 0; i < sizeof provs / sizeof provs[0]; i++)
		if (plen == strlen(provs[i]) && memcmp(s, provs[i], plen) == 0)
			known = true;
	if (!known) {
		snprintf(err, errlen,
			 "remote: \"%.*s\" has an unknown provider \"%.*s\": use tcp, shm, verbs "
			 "(libibverbs) or fi-verbs (libfabric's verbs;ofi_rxm)",
			 show, s, plen > 32 ? 32 : (int)plen, s);
		return -EINVAL;
	}
	memcpy(t->provider, s, plen);
	const char *h = sep + 3, *end = s + len;
	const char *colon = NULL;
	for (const char *q = h; q < end; q++)
		if (*q == ':')
			colon = q; /* the last one: the port follows it */
	size_t hlen = (size_t)((colon ? colon : end) - h);
	if (hlen == 0) {
		snprintf(err, errlen,
			 "remote: \"%.*s\" has no host: use provider://host:port, e.g. "
			 "%s://127.0.0.1:7411",
			 show, s, t->provider);
		return -EINVAL;
	}
	bool host_ok = hlen < REMOTE_HOST_MAX && h[0] != '-' && h[0] != '.';
	for (size_t i = 0; host_ok && i < hlen; i++) {
		char c = h[i];
		host_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
	}
	if (!host_ok) {
		snprintf(err, errlen,
			 "remote: \"%.*s\" has an invalid host \"%.*s\": use a host name or an "
			 "IPv4 address of at most %d characters (letters, digits, '.', '-', '_')",
			 show, s, hlen > 64 ? 64 : (int)hlen, h, REMOTE_HOST_MAX - 1);
		return -EINVAL;
	}
	if (!colon) {
		snprintf(err, errlen,
			 "remote: \"%.*s\" has no port: use provider://host:port with a port "
			 "from 1 to 65535",
			 show, s);
		return -EINVAL;
	}
	const char *p = colon + 1;
	size_t portlen = (size_t)(end - p);
	unsigned long port = 0;
	bool port_ok = portlen > 0 && portlen <= 5;
	for (size_t i = 0; port_ok && i < portlen; i++) {
		port_ok = p[i] >= '0' && p[i] <= '9';
		port = port * 10 + (unsigned long)(p[i] - '0');
	}
	if (!port_ok || port < 1 || port > 65535) {
		snprintf(err, errlen,
			 "remote: \"%.*s\" has an invalid port \"%.*s\": use a number from 1 to "
			 "65535",
			 show, s, portlen > 16 ? 16 : (int)portlen, p);
		return -EINVAL;
	}
	memcpy(t->host, h, hlen);
	t->host[hlen] = 0;
	t->port = (uint16_t)port;
	return 0;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_line(const char *prog, int level, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "%s: %s: ", prog, level_names[level & 3]);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof buf - 2)
		len = sizeof buf - 2;
	buf[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, len);
	(void)w;
}
