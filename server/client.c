/*
 * client.c -- one control connection: the handshake, leases and the
 * protocol's rules (docs/PROTOCOL.md), on nonblocking sockets.
 *
 * A connection reads one message at a time and answers it before it reads
 * the next (a reply waiting in c->out stops reading), so a client that does
 * not read its replies only stalls itself.  A malformed or out-of-order
 * message, a failed authentication or a handshake that takes more than 5 s
 * gets an ERROR, after which the connection lingers briefly (write side
 * shut, input discarded) so the ERROR is not lost to a reset, then closes.
 * Leases die with the connection: their MR is closed and their memory
 * scrubbed before anyone else may lease it.
 *
 * Draining (DRAIN_REQ, tieredd --drain): no new leases; every welcomed
 * client gets a DRAIN notice when draining starts or stops, and one right
 * after WELCOME while it lasts.  A notice is the only message the server
 * sends unasked; it goes behind whatever reply is waiting in c->out, so
 * reading still waits until all of it is sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sha256.h"
#include "tieredd.h"

#define LINGER_NS 1000000000LL /* how long a failed connection waits for the peer to close */
#define MSGS_PER_EVENT 16      /* fairness: messages handled per readiness event */

static void who(const struct client *c, char *buf, size_t len)
{
	if (c->id)
		snprintf(buf, len, "client %llu (%.64s pid %u, %s)", (unsigned long long)c->id,
			 c->name[0] ? c->name : "?", c->pid, c->peer);
	else
		snprintf(buf, len, "connection from %s", c->peer);
}

/* ---- output -------------------------------------------------------------- */

static void flush(struct client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->outoff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		c->outlen = c->outoff = 0; /* the peer is gone: reading will say so */
		return;
	}
	c->outlen = c->outoff = 0;
	if (c->state == C_CLOSING)
		shutdown(c->fd, SHUT_WR);
}

static void queue(struct client *c, const struct tdp_msg *m)
{
	ssize_t n = tdp_encode(m, c->out + c->outlen, sizeof c->out - c->outlen);
	if (n < 0) {
		slog(SLOG_ERROR, "cannot encode %s: %s", tdp_type_name(m->type), strerror((int)-n));
		return;
	}
	c->outlen += (size_t)n;
	flush(c);
}

/*
 * notify -- queue a DRAIN notice of the server's state now to c (welcomed).
 * When c->out has no room for it (a client that does not read), c owes one
 * and notify_owed sends it once out is empty: owed notices collapse into
 * one, since only the latest state matters, and none is lost.
 */
static void notify(struct server *s, struct client *c)
{
	struct tdp_msg m = {.type = TDP_DRAIN};
	m.u.drain.mode = s->draining ? TDP_DRAIN_ON : TDP_DRAIN_OFF;
	if (sizeof c->out - c->outlen < TDP_HDR_LEN + 4) {
		if (!c->drain_pending) {
			char name[160];
			who(c, name, sizeof name);
			slog(SLOG_DEBUG, "%s: its output is full: the DRAIN notice waits", name);
		}
		c->drain_pending = true;
		return;
	}
	c->drain_pending = false;
	queue(c, &m);
}

static void notify_owed(struct server *s, struct client *c)
{
	if (c->drain_pending && c->state == C_READY)
		notify(s, c);
}

static void reply_error(struct client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* reply_error -- an ERROR reply; the connection stays */
static void reply_error(struct client *c, int code, const char *fmt, ...)
{
	struct tdp_msg m = {.type = TDP_ERROR};
	m.u.error.code = (uint32_t)code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.u.error.msg, sizeof m.u.error.msg, fmt, ap);
	va_end(ap);
	queue(c, &m);
}

/* ---- leases -------------------------------------------------------------- */

static void lease_drop(struct server *s, struct client *c, size_t i)
{
	struct lease *l = &c->leases[i];
	s->dp->ops->dereg(s->dp, l->mr); /* first: no RMA may reach the range once it is scrubbed */
	pool_release(&s->pool, l->off, l->len);
	s->leased -= l->len;
	s->leases--;
	c->leased -= l->len;
	c->leases[i] = c->leases[--c->nleases];
	if (s->draining && s->leases == 0)
		slog(SLOG_INFO, "drained: no lease is held any more; the server can be stopped");
}

static void release_all(struct server *s, struct client *c, const char *why)
{
	if (c->nleases == 0)
		return;
	char size[32], name[160];
	tdp_size_text(c->leased, size, sizeof size);
	who(c, name, sizeof name);
	slog(SLOG_INFO, "%s: %s: released %zu lease(s), %s", name, why, c->nleases, size);
	while (c->nleases > 0)
		lease_drop(s, c, c->nleases - 1);
}

/* data_path_end -- after release_all: the data path's own state of c (verbs: QPs, PD) */
static void data_path_end(struct server *s, struct client *c)
{
	if (c->dp_priv)
		s->dp->ops->client_remove(s->dp, c);
	c->dp_priv = NULL;
}

/* ---- ending a connection ------------------------------------------------- */

/* client_end -- close now: leases released, counted out */
static void client_end(struct server *s, struct client *c, const char *why)
{
	if (c->gone)
		return;
	char name[160];
	who(c, name, sizeof name);
	release_all(s, c, why);
	data_path_end(s, c);
	if (c->state == C_READY) {
		s->authed--;
		if (c->owner)
			s->owners--;
		slog(SLOG_INFO, "%s: %s", name, why);
	} else if (c->state != C_CLOSING) {
		slog(SLOG_DEBUG, "%s: %s", name, why);
	}
	close(c->fd);
	c->fd = -1;
	c->gone = true;
}

static void client_fail(struct server *s, struct client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * client_fail -- ERROR code, then close after a short linger.  The
 * connection has ended for every other purpose: leases go at once.
 */
static void client_fail(struct server *s, struct client *c, int code, const char *fmt, ...)
{
	struct tdp_msg m = {.type = TDP_ERROR};
	char name[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.u.error.msg, sizeof m.u.error.msg, fmt, ap);
	va_end(ap);
	m.u.error.code = (uint32_t)code;
	who(c, name, sizeof name);
	slog(SLOG_WARN, "%s: %s: disconnecting", name, m.u.error.msg);
	release_all(s, c, "disconnected");
	data_path_end(s, c);
	if (c->state == C_READY) {
		s->authed--;
		if (c->owner)
			s->owners--;
	}
	c->state = C_CLOSING;
	c->deadline = mono_ns() + LINGER_NS;
	c->outlen = c->outoff = 0; /* a pending reply would only delay the ERROR */
	queue(c, &m);
}

/* A message that breaks the protocol: counted as an error. */
#define protocol_error(s, c, ...)                                                                  \
	do {                                                                                       \
		(s)->errors++;                                                                     \
		client_fail((s), (c), EPROTO, __VA_ARGS__);                                        \
	} while (0)

/* ---- the messages -------------------------------------------------------- */

static void on_hello(struct server *s, struct client *c, const struct tdp_msg *m)
{
	if (m->u.hello.min_version > TDP_VERSION || m->u.hello.max_version < TDP_VERSION) {
		protocol_error(s, c, "client speaks protocol versions %u..%u; this server speaks %u",
			       m->u.hello.min_version, m->u.hello.max_version, TDP_VERSION);
		return;
	}
	size_t i = 0;
	for (; m->u.hello.name[i]; i++) {
		unsigned char ch = (unsigned char)m->u.hello.name[i];
		c->name[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch; /* printable in logs */
	}
	c->name[i] = 0;
	c->pid = m->u.hello.pid;
	memcpy(c->cnonce, m->u.hello.nonce, TDP_NONCE_LEN);
	struct tdp_msg r = {.type = TDP_CHALLENGE};
	r.u.challenge.version = TDP_VERSION;
	if (tdp_random(c->snonce, TDP_NONCE_LEN) < 0) {
		client_fail(s, c, EIO, "the server cannot get random bytes");
		return;
	}
	memcpy(r.u.challenge.nonce, c->snonce, TDP_NONCE_LEN);
	c->state = C_AUTH;
	queue(c, &r);
}

static void on_auth(struct server *s, struct client *c, const struct tdp_msg *m)
{
	uint8_t want[TDP_MAC_LEN];
	tdp_mac_client(s->secret, s->secret_len, c->snonce, c->cnonce, want);
	if (!ct_equal(want, m->u.auth.mac, TDP_MAC_LEN)) {
		s->errors++;
		client_fail(s, c, EACCES, "authentication failed: the client's secret is wrong");
		return;
	}
	struct tdp_msg r = {.type = TDP_WELCOME};
	tdp_mac_server(s->secret, s->secret_len, c->cnonce, c->snonce, r.u.welcome.mac);
	c->id = ++s->next_client_id;
	snprintf(r.u.welcome.provider, sizeof r.u.welcome.provider, "%s",
		 s->dp->ops->prov_name(s->dp));
	struct sockaddr_in local;
	socklen_t sl = sizeof local;
	bool have_local = getsockname(c->fd, (struct sockaddr *)&local, &sl) == 0 &&
			  local.sin_family == AF_INET;
	char why[256];
	if (s->dp->ops->client_add(s->dp, c, have_local ? &local : NULL, r.u.welcome.addr,
				   sizeof r.u.welcome.addr, &r.u.welcome.addr_len, why,
				   sizeof why) < 0) {
		slog(SLOG_ERROR, "client %llu: %s", (unsigned long long)c->id, why);
		client_fail(s, c, ENOMEM, "the server cannot serve this client: %s", why);
		return;
	}
	c->state = C_READY;
	c->deadline = 0;
	c->owner = strcmp(c->name, STATUS_NAME) != 0 && strcmp(c->name, DRAIN_NAME) != 0;
	s->authed++;
	if (c->owner) {
		s->owners++;
		s->had_owner = true;
	}
	r.u.welcome.client_id = c->id;
	r.u.welcome.capacity = s->pool.size;
	r.u.welcome.client_limit = s->o.client_limit;
	char name[160];
	who(c, name, sizeof name);
	slog(SLOG_INFO, "%s: welcomed", name);
	queue(c, &r);
	if (s->draining)
		notify(s, c); /* right behind WELCOME: lease nothing here */
}

static void on_lease_req(struct server *s, struct client *c, uint64_t bytes)
{
	char asked[32], have[32], lim[32];
	if (bytes == 0) {
		reply_error(c, EINVAL, "a lease of 0 bytes: ask for 1 byte or more");
		return;
	}
	if (s->draining) {
		s->refusals++;
		reply_error(c, ESHUTDOWN,
			    "the server is draining (tieredd --drain): no new leases; release the "
			    "ones you hold");
		return;
	}
	tdp_size_text(bytes, asked, sizeof asked);
	if (bytes > s->pool.size) {
		s->refusals++;
		tdp_size_text(s->pool.size, lim, sizeof lim);
		reply_error(c, ENOSPC, "asked %s, more than the server's capacity of %s", asked, lim);
		return;
	}
	uint64_t len = (bytes + TDP_GRANULE - 1) / TDP_GRANULE * TDP_GRANULE;
	if (c->nleases >= s->o.max_leases) {
		s->refusals++;
		reply_error(c, ENOSPC, "lease limit reached: the client holds %zu leases, the most "
				       "allowed (--max-leases)",
			    c->nleases);
		return;
	}
	if (c->leased + len > s->o.client_limit) {
		s->refusals++;
		tdp_size_text(c->leased, have, sizeof have);
		tdp_size_text(s->o.client_limit, lim, sizeof lim);
		reply_error(c, ENOSPC, "client limit reached: %s leased of %s, asked %s", have, lim,
			    asked);
		return;
	}
	uint64_t off;
	if (pool_alloc(&s->pool, len, &off) < 0) {
		s->refusals++;
		tdp_size_text(s->pool.size - s->pool.used, have, sizeof have);
		tdp_size_text(s->pool.size, lim, sizeof lim);
		reply_error(c, ENOSPC, "server full: %s free of %s (largest free range %llu MiB), "
				       "asked %s",
			    have, lim, (unsigned long long)(pool_largest_free(&s->pool) >> 20),
			    asked);
		return;
	}
	if (c->nleases == c->cap) {
		size_t ncap = c->cap ? 2 * c->cap : 8;
		struct lease *n = realloc(c->leases, ncap * sizeof *n);
		if (!n) {
			pool_release(&s->pool, off, len);
			reply_error(c, ENOMEM, "the server is out of memory");
			return;
		}
		c->leases = n;
		c->cap = ncap;
	}
	struct lease *l = &c->leases[c->nleases];
	char why[200];
	l->id = ++s->next_lease_id;
	l->off = off;
	l->len = len;
	if (s->dp->ops->reg(s->dp, c, s->pool.base + off, len, &l->mr, &l->key, &l->raddr, why,
			    sizeof why) < 0) {
		pool_release(&s->pool, off, len);
		slog(SLOG_ERROR, "%s", why);
		reply_error(c, ENOMEM, "%s", why);
		return;
	}
	c->nleases++;
	c->leased += len;
	s->leased += len;
	s->leases++;
	struct tdp_msg r = {.type = TDP_LEASE};
	r.u.lease.id = l->id;
	r.u.lease.raddr = l->raddr;
	r.u.lease.key = l->key;
	r.u.lease.len = len;
	slog(SLOG_DEBUG, "client %llu: lease %llu of %s at offset %llu",
	     (unsigned long long)c->id, (unsigned long long)l->id, asked,
	     (unsigned long long)off);
	queue(c, &r);
}

static void on_release(struct server *s, struct client *c, uint64_t id)
{
	for (size_t i = 0; i < c->nleases; i++) {
		if (c->leases[i].id == id) {
			lease_drop(s, c, i);
			struct tdp_msg r = {.type = TDP_OK};
			queue(c, &r);
			return;
		}
	}
	reply_error(c, ENOENT, "no lease %llu is held by this client", (unsigned long long)id);
}

static void on_report(struct server *s, struct client *c, uint64_t w, uint64_t r)
{
	if (w < c->rep_written || r < c->rep_read) {
		/* REPORT has no reply: an ERROR here would answer the next request */
		slog(SLOG_WARN, "client %llu: REPORT counts went down (%llu < %llu or %llu < %llu): "
				"taking them as a new base",
		     (unsigned long long)c->id, (unsigned long long)w,
		     (unsigned long long)c->rep_written, (unsigned long long)r,
		     (unsigned long long)c->rep_read);
	} else {
		s->bytes_written += w - c->rep_written;
		s->bytes_read += r - c->rep_read;
	}
	c->rep_written = w;
	c->rep_read = r;
}

/*
 * on_drain_req -- start (mode 1) or stop (0) draining.  The requester gets
 * its OK first; then, when the state changed, every welcomed client (the
 * requester too) gets a DRAIN notice of the new state.
 */
static void on_drain_req(struct server *s, struct client *c, uint32_t mode)
{
	bool on = mode == TDP_DRAIN_ON;
	struct tdp_msg r = {.type = TDP_OK};
	char name[160], size[32];
	who(c, name, sizeof name);
	queue(c, &r);
	if (on == s->draining) {
		slog(SLOG_INFO, "%s: %s", name,
		     on ? "asks to drain: draining already"
			: "asks to stop draining: not draining");
		return;
	}
	s->draining = on;
	size_t holders = 0;
	for (size_t i = 0; i < s->nclients; i++)
		if (!s->clients[i]->gone && s->clients[i]->nleases > 0)
			holders++;
	tdp_size_text(s->leased, size, sizeof size);
	slog(SLOG_INFO, "%s (asked by %s): %zu client(s) hold %llu lease(s), %s",
	     on ? "draining" : "draining cancelled", name, holders, (unsigned long long)s->leases,
	     size);
	for (size_t i = 0; i < s->nclients; i++)
		if (!s->clients[i]->gone && s->clients[i]->state == C_READY)
			notify(s, s->clients[i]);
}

void server_stats(const struct server *s, struct tdp_stats *st)
{
	st->capacity = s->pool.size;
	st->leased = s->leased;
	st->clients = s->authed;
	st->leases = s->leases;
	st->bytes_written = s->bytes_written;
	st->bytes_read = s->bytes_read;
	st->errors = s->errors;
	st->refusals = s->refusals;
	st->draining = s->draining;
}

/* handle -- one decoded message, by the connection's state */
static void handle(struct server *s, struct client *c, const struct tdp_msg *m)
{
	const char *t = tdp_type_name(m->type);
	switch (c->state) {
	case C_HELLO:
		if (m->type != TDP_HELLO)
			protocol_error(s, c, "%s before HELLO: a connection starts with HELLO", t);
		else
			on_hello(s, c, m);
		return;
	case C_AUTH:
		if (m->type != TDP_AUTH)
			protocol_error(s, c, "%s where AUTH was expected", t);
		else
			on_auth(s, c, m);
		return;
	case C_CLOSING:
		return;
	case C_READY:
		break;
	}
	switch (m->type) {
	case TDP_LEASE_REQ: on_lease_req(s, c, m->u.lease_req.bytes); return;
	case TDP_RELEASE: on_release(s, c, m->u.release.id); return;
	case TDP_REPORT: on_report(s, c, m->u.report.bytes_written, m->u.report.bytes_read); return;
	case TDP_DRAIN_REQ: on_drain_req(s, c, m->u.drain.mode); return;
	case TDP_STATS_REQ: {
		struct tdp_msg r = {.type = TDP_STATS};
		server_stats(s, &r.u.stats);
		queue(c, &r);
		return;
	}
	case TDP_HELLO:
	case TDP_AUTH: protocol_error(s, c, "%s after the handshake", t); return;
	default:
		protocol_error(s, c, "%s is a server's message: clients send LEASE_REQ, RELEASE, "
				     "STATS_REQ, REPORT or DRAIN_REQ",
			       t);
		return;
	}
}

/* ---- events -------------------------------------------------------------- */

void client_accept(struct server *s, int fd)
{
	struct sockaddr_in peer;
	socklen_t sl = sizeof peer;
	char addr[INET_ADDRSTRLEN] = "?";
	if (s->nclients == s->cap) {
		size_t ncap = s->cap ? 2 * s->cap : 16;
		struct client **n = realloc(s->clients, ncap * sizeof *n);
		if (!n) {
			slog(SLOG_ERROR, "out of memory: dropping a new connection");
			close(fd);
			return;
		}
		s->clients = n;
		s->cap = ncap;
	}
	struct client *c = calloc(1, sizeof *c);
	if (!c) {
		slog(SLOG_ERROR, "out of memory: dropping a new connection");
		close(fd);
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&peer, &sl) == 0 && peer.sin_family == AF_INET)
		inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr);
	else
		peer.sin_port = 0; /* a peer already reset (ENOTCONN): "?:0", not stack garbage */
	snprintf(c->peer, sizeof c->peer, "%s:%u", addr, ntohs(peer.sin_port));
	c->fd = fd;
	c->state = C_HELLO;
	c->deadline = mono_ns() + (int64_t)TDP_HANDSHAKE_MS * 1000000;
	size_t live = client_live(s);
	s->clients[s->nclients++] = c;
	if (live >= s->o.max_clients) {
		s->refusals++;
		client_fail(s, c, ENOSPC, "server full: it serves at most %u connections "
					  "(--max-clients)",
			    s->o.max_clients);
		return;
	}
	slog(SLOG_DEBUG, "connection from %s", c->peer);
}

short client_events(const struct client *c)
{
	if (c->outlen > 0 || c->drain_pending)
		return POLLOUT; /* one reply at a time; an owed notice before the next */
	return POLLIN;
}

/* Read what the peer sends after an ERROR, until it closes. */
static void discard_input(struct server *s, struct client *c)
{
	uint8_t junk[4096];
	for (;;) {
		ssize_t n = recv(c->fd, junk, sizeof junk, MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		client_end(s, c, "closed");
		return;
	}
}

void client_event(struct server *s, struct client *c, short revents)
{
	char why[300];
	if (c->gone)
		return;
	if (c->outlen > 0 && (revents & (POLLOUT | POLLERR | POLLHUP)))
		flush(c);
	if (c->state == C_CLOSING) {
		if (c->outlen == 0)
			discard_input(s, c);
		return;
	}
	notify_owed(s, c);
	for (int msgs = 0; msgs < MSGS_PER_EVENT && c->outlen == 0 && c->state != C_CLOSING;) {
		size_t need = TDP_HDR_LEN + (c->inlen >= TDP_HDR_LEN ? c->hdr.len : 0);
		if (c->inlen < need) {
			ssize_t n = recv(c->fd, c->in + c->inlen, need - c->inlen, MSG_DONTWAIT);
			if (n == 0) {
				client_end(s, c,
					   c->inlen ? "closed the connection inside a message"
						    : "disconnected");
				return;
			}
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					client_end(s, c, strerror(errno));
				return;
			}
			c->inlen += (size_t)n;
			if (c->inlen == TDP_HDR_LEN && tdp_check_hdr(c->in, &c->hdr, why, sizeof why)) {
				protocol_error(s, c, "malformed message: %s", why);
				return;
			}
			continue;
		}
		struct tdp_msg m;
		if (tdp_decode(c->hdr.type, c->in + TDP_HDR_LEN, c->hdr.len, &m, why, sizeof why)) {
			protocol_error(s, c, "malformed message: %s", why);
			return;
		}
		c->inlen = 0;
		msgs++;
		handle(s, c, &m);
	}
}

void client_reap(struct server *s)
{
	size_t j = 0;
	for (size_t i = 0; i < s->nclients; i++) {
		struct client *c = s->clients[i];
		if (c->gone) {
			free(c->leases);
			free(c);
		} else {
			s->clients[j++] = c;
		}
	}
	s->nclients = j;
}

int64_t client_timers(struct server *s, int64_t now)
{
	int64_t next = 0;
	for (size_t i = 0; i < s->nclients; i++) {
		struct client *c = s->clients[i];
		if (c->gone || c->deadline == 0)
			continue;
		if (now >= c->deadline) {
			if (c->state == C_CLOSING) {
				client_end(s, c, "closed (linger over)");
				continue;
			}
			s->errors++;
			client_fail(s, c, ETIMEDOUT, "handshake not finished within %d s",
				    TDP_HANDSHAKE_MS / 1000);
		}
		if (!next || c->deadline < next)
			next = c->deadline;
	}
	return next;
}

size_t client_live(const struct server *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->nclients; i++)
		if (!s->clients[i]->gone && s->clients[i]->state != C_CLOSING)
			n++;
	return n;
}

void client_close_all(struct server *s)
{
	for (size_t i = 0; i < s->nclients; i++)
		client_end(s, s->clients[i], "server shutting down");
	client_reap(s);
	free(s->clients);
	s->clients = NULL;
	s->cap = 0;
}
