/*
 * fuzz_server.c -- tieredd's per-connection state machine (server/client.c)
 * under a coverage-guided fuzzer.
 *
 * The harness is tieredd's main loop in miniature: a struct server with a
 * small pool (pool.c), a known secret and small limits, a stub data path
 * that only keeps books, and a fake clock.  Up to six connections are
 * socketpairs; the server's ends go through client_accept, client_event
 * (with what poll() reports for client_events()), client_timers and
 * client_reap as tieredd.c drives them.  The harness plays the clients: it
 * writes what the input says into its ends and reads, decodes and checks
 * every reply.
 *
 * Input: byte 0 chooses the number of connections (1 + b % 6, more than
 * max_clients); then steps of two bytes, b0 (bits 0-2: the connection,
 * bits 3-7: the action) and b1 (the action's argument), and the action's
 * bytes.  The actions:
 *   DATA    b1 bytes follow, written as they are (any stream at all)
 *   HELLO   a well-formed HELLO; b1 picks the name and the versions
 *   AUTH    the right proof for the CHALLENGE received (b1 bit 0: a wrong one)
 *   REQ     a message of type b1 % 16, its fields from the next 8 bytes
 *           (16 for REPORT); types 0 and 15 as a bare header
 *   TIME    the clock moves b1 * 50 ms (handshake deadline, linger)
 *   HANGUP  the client closes (b1 bit 0: shuts its sending side only);
 *           the connection's next step opens a new connection
 *   STALL   the client stops (b1 bit 0) or resumes reading its replies
 *   FAIL    the data path's next reg (bit 0) or client_add (bit 1) fails
 *   REPEAT  the last 1 + (b1 & 3) steps again, (b1 >> 2) * 16 times, the
 *           server's loop run every 8 times only (pipelined requests; a
 *           client that fills its output takes hundreds of DRAIN notices)
 * A connection is opened by the first step that names it, and again after
 * HANGUP or once the server closed it.  An input runs 1024 steps at most.
 *
 * After every event the books must balance: s->leased and s->leases are
 * the sums over the clients, the pool's used bytes are s->leased and its
 * free ranges and the leases cover it exactly once, no client is over
 * max_leases or client_limit, every lease has one live registration and
 * the stub holds no other, authed and owners count the READY clients,
 * deadlines are set where the state needs one and none is left past
 * (client_timers), no lease is made while draining.  Every reply must
 * decode and be a server's message in its place (WELCOME with the right
 * proof, nothing but CHALLENGE or ERROR before it); a welcomed client that
 * has read all its output must have seen the last DRAIN state; a released
 * range must be deregistered before it is scrubbed, and scrubbed when it
 * is leased again; no reply may be dropped ("cannot encode"), and the loop
 * must come to rest (a connection that polls ready for ever makes tieredd
 * spin).  After client_close_all the pool is empty and the stub holds
 * nothing.  A violation aborts.
 *
 * Not reached: the data path itself (RMA, fabric.c, verbs.c), TCP (the
 * peer's IPv4 address, keepalive), and the failures of malloc, getrandom,
 * madvise and EINTR.  FUZZ_SERVER_LOG=1 shows the server's log.
 *
 * Two builds, as fuzz_proto.c: with libFuzzer (`make fuzz`), and with
 * -DFUZZ_REPLAY a program that replays files and directories (make check:
 * tests/fuzz/corpus-server and tests/fuzz/regressions-server).
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tieredd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define POOL_SIZE (64ULL << 20)
#define POOL_GRANULES (POOL_SIZE / TDP_GRANULE)
#define MAX_CLIENTS 4
#define MAX_LEASES 8
#define CLIENT_LIMIT (32ULL << 20)
#define MAX_CONNS 6
#define MAX_REGS (2 * MAX_CLIENTS * MAX_LEASES)
#define MAX_STEPS 1024 /* repeats included: bounds an input's time */
#define MAX_ROUNDS 256 /* poll rounds without quiescence: the server spins */
#define SERVER_SNDBUF 4096
#define STUB_PROVIDER "fuzz-stub"
#define STUB_ADDR_LEN 16

static const uint8_t secret[32] = "fuzz_server's secret, 32 bytes!";

enum action { A_DATA, A_HELLO, A_AUTH, A_REQ, A_TIME, A_HANGUP, A_STALL, A_FAIL, A_REPEAT, A_N };

/* ---- what client.c needs of tieredd.c: the log and the clock ------------- */

int g_slog_level = SLOG_DEBUG; /* every line is formatted, for the sanitizers to see */
static int64_t g_now;
static int g_log = -1; /* FUZZ_SERVER_LOG set: the server's log to stderr */

void slog(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (g_log < 0)
		g_log = getenv("FUZZ_SERVER_LOG") != NULL;
	if (g_log)
		fprintf(stderr, "tieredd: %d: %s\n", level, line);
	/* queue() could not encode a reply: it is dropped and the client waits for ever */
	if (strncmp(line, "cannot encode", 13) == 0) {
		fprintf(stderr, "fuzz_server: tieredd: %s\n", line);
		abort();
	}
}

int64_t mono_ns(void)
{
	return g_now;
}

static void finding(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void finding(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz_server: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

/* ---- the stub data path: bookkeeping only -------------------------------- */

struct reg {
	bool live;
	struct client *c;
	uint8_t *addr;
	uint64_t len, key;
};

struct stub_client {
	struct client *c; /* what c->dp_priv points back to */
};

struct stub {
	struct dpath dp; /* first, as every data path */
	struct server *s;
	struct reg regs[MAX_REGS];
	size_t live_regs, live_clients;
	uint64_t next_key;
	bool fail_reg, fail_add; /* one-shot fault injection */
};

static const char *stub_prov_name(const struct dpath *d)
{
	return STUB_PROVIDER;
}

static const uint8_t stub_addr[STUB_ADDR_LEN] = "stub-address-15";

static int stub_client_add(struct dpath *d, struct client *c, const struct sockaddr_in *local,
			   uint8_t *addr, size_t cap, uint16_t *len, char *err, size_t errlen)
{
	struct stub *st = (struct stub *)d;
	if (c->id == 0 || c->gone || c->state != C_AUTH || c->dp_priv)
		finding("client_add of a client that is not being welcomed");
	if (st->fail_add) {
		st->fail_add = false;
		snprintf(err, errlen, "stub: injected client_add failure");
		return -ENOMEM;
	}
	struct stub_client *sc = malloc(sizeof *sc);
	if (!sc) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	sc->c = c;
	c->dp_priv = sc;
	st->live_clients++;
	if (cap < STUB_ADDR_LEN)
		finding("client_add: an address buffer of %zu bytes", cap);
	memcpy(addr, stub_addr, STUB_ADDR_LEN);
	*len = STUB_ADDR_LEN;
	return 0;
}

static void stub_client_remove(struct dpath *d, struct client *c)
{
	struct stub *st = (struct stub *)d;
	struct stub_client *sc = c->dp_priv;
	if (!sc || sc->c != c)
		finding("client_remove of a client the data path does not know");
	if (c->nleases)
		finding("client_remove while the client holds %zu leases", c->nleases);
	free(sc);
	st->live_clients--;
}

/*
 * stub_reg -- register a lease: it must be a fresh, scrubbed range of the
 * pool for a welcomed client; then mark each granule's first byte as a
 * client's RMA would, for the next lease of the range to prove it scrubbed.
 */
static int stub_reg(struct dpath *d, struct client *c, void *addr, uint64_t len, void **mr,
		    uint64_t *key, uint64_t *raddr, char *err, size_t errlen)
{
	struct stub *st = (struct stub *)d;
	struct server *s = st->s;
	uint8_t *p = addr;
	if (c->gone || c->state != C_READY || !c->dp_priv)
		finding("reg for a client that is not welcomed");
	if (s->draining)
		finding("a new lease while the server drains");
	if (p < s->pool.base || len == 0 || len % TDP_GRANULE ||
	    (uint64_t)(p - s->pool.base) % TDP_GRANULE || len > s->pool.size ||
	    (uint64_t)(p - s->pool.base) > s->pool.size - len)
		finding("reg of [%p, +%llu) outside the pool's granules", addr,
			(unsigned long long)len);
	for (uint64_t o = 0; o < len; o += TDP_GRANULE)
		if (p[o] != 0)
			finding("a lease shows a former client's bytes at offset %llu",
				(unsigned long long)(p - s->pool.base + o));
	if (st->fail_reg) {
		st->fail_reg = false;
		snprintf(err, errlen, "stub: injected registration failure");
		return -ENOMEM;
	}
	struct reg *r = NULL;
	for (size_t i = 0; i < MAX_REGS && !r; i++)
		if (!st->regs[i].live)
			r = &st->regs[i];
	if (!r)
		finding("more than %d live registrations", MAX_REGS);
	*r = (struct reg){.live = true, .c = c, .addr = p, .len = len, .key = ++st->next_key};
	st->live_regs++;
	for (uint64_t o = 0; o < len; o += TDP_GRANULE)
		p[o] = 0xa5; /* one byte a granule: one page to fault in */
	*mr = r;
	*key = r->key;
	*raddr = (uint64_t)(p - s->pool.base);
	return 0;
}

static void stub_dereg(struct dpath *d, void *mr)
{
	struct stub *st = (struct stub *)d;
	struct reg *r = mr;
	if (r < st->regs || r >= st->regs + MAX_REGS || !r->live)
		finding("dereg of a registration that is not live");
	if (r->addr[0] != 0xa5) /* stub_reg's mark: gone if scrubbed while reachable */
		finding("a lease scrubbed before its registration was closed");
	r->live = false;
	st->live_regs--;
}

/* open, close and the progress calls are tieredd.c's, never client.c's: left NULL. */
static const struct dpath_ops stub_ops = {
	.prov_name = stub_prov_name,
	.client_add = stub_client_add,
	.client_remove = stub_client_remove,
	.reg = stub_reg,
	.dereg = stub_dereg,
};

/* ---- the clients' side --------------------------------------------------- */

struct conn {
	int peer;	  /* the client's end, -1 when none */
	struct client *c; /* the server's, NULL once gone or left to itself */
	bool stalled, eof;
	bool challenged, authed, welcomed, errored;
	int drain_seen; /* the last DRAIN mode read (0 until one came) */
	uint8_t cnonce[TDP_NONCE_LEN], snonce[TDP_NONCE_LEN];
	uint8_t in[2 * TDP_MAX_MSG];
	size_t inlen;
};

static struct server g_s;
static struct stub g_stub;
static struct conn g_conns[MAX_CONNS];
static size_t g_nconns;

/* ---- the invariants ------------------------------------------------------ */

static void check_pool(const struct server *s)
{
	const struct pool *p = &s->pool;
	uint8_t cover[POOL_GRANULES];
	memset(cover, 0, sizeof cover);
	uint64_t free_bytes = 0;
	if (p->nfree > p->cap)
		finding("pool: %zu free ranges in an array of %zu", p->nfree, p->cap);
	for (size_t i = 0; i < p->nfree; i++) {
		const struct pool_range *r = &p->free[i];
		if (r->len == 0 || r->off % TDP_GRANULE || r->len % TDP_GRANULE ||
		    r->off > p->size || r->len > p->size - r->off)
			finding("pool: free range %zu [%llu, +%llu) is not granules inside", i,
				(unsigned long long)r->off, (unsigned long long)r->len);
		if (i > 0 && p->free[i - 1].off + p->free[i - 1].len >= r->off)
			finding("pool: free ranges %zu and %zu overlap, touch or are unsorted",
				i - 1, i);
		for (uint64_t g = r->off / TDP_GRANULE; g < (r->off + r->len) / TDP_GRANULE; g++)
			cover[g]++;
		free_bytes += r->len;
	}
	if (free_bytes + p->used != p->size)
		finding("pool: %llu free + %llu used != %llu", (unsigned long long)free_bytes,
			(unsigned long long)p->used, (unsigned long long)p->size);
	for (size_t i = 0; i < s->nclients; i++) {
		const struct client *c = s->clients[i];
		for (size_t j = 0; j < c->nleases; j++) {
			const struct lease *l = &c->leases[j];
			for (uint64_t g = l->off / TDP_GRANULE; g < (l->off + l->len) / TDP_GRANULE;
			     g++)
				cover[g]++;
		}
	}
	for (size_t g = 0; g < POOL_GRANULES; g++)
		if (cover[g] != 1)
			finding("pool: granule %zu is free or leased %u times", g, cover[g]);
}

static void check_client(const struct server *s, const struct client *c)
{
	if (c->gone) {
		if (c->fd != -1 || c->nleases || c->leased || c->dp_priv)
			finding("a closed client keeps its fd, leases or data path state");
		return;
	}
	if (c->nleases > s->o.max_leases || c->leased > s->o.client_limit)
		finding("client %llu holds %zu leases, %llu bytes: over its limits",
			(unsigned long long)c->id, c->nleases, (unsigned long long)c->leased);
	if (c->nleases && c->state != C_READY)
		finding("a client that is not READY holds leases");
	if ((c->dp_priv != NULL) != (c->state == C_READY))
		finding("data path state of a client in state %d", c->state);
	if ((c->deadline == 0) != (c->state == C_READY))
		finding("deadline %lld in state %d", (long long)c->deadline, c->state);
	if (c->state == C_READY &&
	    c->owner != (strcmp(c->name, STATUS_NAME) != 0 && strcmp(c->name, DRAIN_NAME) != 0))
		finding("client \"%s\" counts as an owner: %d", c->name, c->owner);
	if (c->outoff > c->outlen || c->outlen > sizeof c->out || c->inlen > TDP_MAX_MSG ||
	    (c->inlen > TDP_HDR_LEN && c->inlen > TDP_HDR_LEN + c->hdr.len))
		finding("buffer books: out %zu/%zu, in %zu", c->outoff, c->outlen, c->inlen);
	uint64_t sum = 0;
	for (size_t j = 0; j < c->nleases; j++) {
		const struct lease *l = &c->leases[j];
		const struct reg *r = l->mr;
		if (r < g_stub.regs || r >= g_stub.regs + MAX_REGS || !r->live || r->c != c ||
		    r->addr != s->pool.base + l->off || r->len != l->len || r->key != l->key)
			finding("lease %llu has no live registration of its own",
				(unsigned long long)l->id);
		if (l->id == 0 || l->id > s->next_lease_id)
			finding("lease id %llu never given", (unsigned long long)l->id);
		for (size_t k = 0; k < j; k++)
			if (c->leases[k].id == l->id)
				finding("lease id %llu twice", (unsigned long long)l->id);
		sum += l->len;
	}
	if (sum != c->leased)
		finding("client %llu: leased %llu, its leases sum to %llu",
			(unsigned long long)c->id, (unsigned long long)c->leased,
			(unsigned long long)sum);
}

/* check -- every book of the server balances (where: the step, for the report) */
static void check(const struct server *s, const char *where)
{
	uint64_t leased = 0, leases = 0, ready = 0, owners = 0, priv = 0;
	for (size_t i = 0; i < s->nclients; i++) {
		const struct client *c = s->clients[i];
		check_client(s, c);
		leased += c->leased;
		leases += c->nleases;
		if (!c->gone && c->state == C_READY) {
			ready++;
			owners += c->owner;
		}
		priv += c->dp_priv != NULL;
	}
	if (s->leased != leased || s->leases != leases)
		finding("%s: server books %llu bytes in %llu leases, clients hold %llu in %llu",
			where, (unsigned long long)s->leased, (unsigned long long)s->leases,
			(unsigned long long)leased, (unsigned long long)leases);
	if (s->pool.used != s->leased)
		finding("%s: pool used %llu, leased %llu", where, (unsigned long long)s->pool.used,
			(unsigned long long)s->leased);
	if (g_stub.live_regs != s->leases)
		finding("%s: %zu live registrations for %llu leases", where, g_stub.live_regs,
			(unsigned long long)s->leases);
	if (g_stub.live_clients != priv)
		finding("%s: the data path knows %zu clients, %llu have its state", where,
			g_stub.live_clients, (unsigned long long)priv);
	if (s->authed != ready || s->owners != owners)
		finding("%s: authed %llu owners %llu, READY clients %llu owners %llu", where,
			(unsigned long long)s->authed, (unsigned long long)s->owners,
			(unsigned long long)ready, (unsigned long long)owners);
	if (client_live(s) > s->o.max_clients)
		finding("%s: %zu live connections, max_clients %u", where, client_live(s),
			s->o.max_clients);
	if (s->nclients > s->cap)
		finding("%s: %zu clients in an array of %zu", where, s->nclients, s->cap);
	check_pool(s);
}

/* ---- replies ------------------------------------------------------------- */

/* check_reply -- one decoded message from the server, in its place on k */
static void check_reply(struct conn *k, const struct tdp_msg *m)
{
	const struct server *s = &g_s;
	const char *t = tdp_type_name(m->type);
	if (k->errored)
		finding("%s after an ERROR that closed the handshake", t);
	switch (m->type) {
	case TDP_CHALLENGE:
		if (k->challenged || k->welcomed || m->u.challenge.version != TDP_VERSION)
			finding("CHALLENGE out of place or of version %u", m->u.challenge.version);
		if (k->c && !k->c->gone && k->c->state == C_HELLO)
			finding("CHALLENGE sent, and the server still waits for HELLO");
		k->challenged = true;
		memcpy(k->snonce, m->u.challenge.nonce, TDP_NONCE_LEN);
		return;
	case TDP_WELCOME: {
		uint8_t want[TDP_MAC_LEN];
		if (!k->authed || k->welcomed)
			finding("WELCOME without AUTH, or twice");
		tdp_mac_server(secret, sizeof secret, k->cnonce, k->snonce, want);
		if (memcmp(want, m->u.welcome.mac, TDP_MAC_LEN) != 0)
			finding("WELCOME's proof is wrong");
		if (m->u.welcome.capacity != s->pool.size ||
		    m->u.welcome.client_limit != s->o.client_limit ||
		    strcmp(m->u.welcome.provider, STUB_PROVIDER) != 0 ||
		    m->u.welcome.addr_len != STUB_ADDR_LEN ||
		    memcmp(m->u.welcome.addr, stub_addr, STUB_ADDR_LEN) != 0 ||
		    m->u.welcome.client_id == 0 || m->u.welcome.client_id > s->next_client_id)
			finding("WELCOME's fields are not the server's");
		if (k->c && !k->c->gone && k->c->state != C_READY && k->c->state != C_CLOSING)
			finding("WELCOME sent, and the server's client is in state %d",
				k->c->state);
		k->welcomed = true;
		k->drain_seen = 0;
		return;
	}
	case TDP_ERROR:
		if (m->u.error.code == 0 || m->u.error.code > 4095 || !m->u.error.msg[0])
			finding("ERROR code %u, message \"%s\"", m->u.error.code, m->u.error.msg);
		if (!k->welcomed)
			k->errored = true; /* the handshake failed: the server closes */
		return;
	case TDP_LEASE:
	case TDP_OK:
	case TDP_STATS:
	case TDP_DRAIN:
		break;
	default: finding("the server sent a client's message, %s", t);
	}
	if (!k->welcomed)
		finding("%s before WELCOME", t);
	if (m->type == TDP_LEASE &&
	    (m->u.lease.len == 0 || m->u.lease.len % TDP_GRANULE ||
	     m->u.lease.len > s->o.client_limit || m->u.lease.id == 0 ||
	     m->u.lease.id > s->next_lease_id || m->u.lease.raddr % TDP_GRANULE))
		finding("LEASE %llu of %llu bytes at %llu", (unsigned long long)m->u.lease.id,
			(unsigned long long)m->u.lease.len, (unsigned long long)m->u.lease.raddr);
	if (m->type == TDP_STATS &&
	    (m->u.stats.capacity != s->pool.size || m->u.stats.leased > s->pool.size ||
	     m->u.stats.leased % TDP_GRANULE || m->u.stats.draining > 1 ||
	     m->u.stats.clients > s->o.max_clients ||
	     m->u.stats.leases > (uint64_t)s->o.max_clients * s->o.max_leases))
		finding("STATS figures out of range");
	if (m->type == TDP_DRAIN) {
		if (m->u.drain.mode > TDP_DRAIN_ON)
			finding("DRAIN mode %u", m->u.drain.mode);
		k->drain_seen = (int)m->u.drain.mode;
	}
}

/* peer_read -- read what the server sent k; every whole message must decode */
static bool peer_read(struct conn *k)
{
	bool got = false;
	char err[256];
	while (k->peer >= 0 && !k->eof) {
		ssize_t n = recv(k->peer, k->in + k->inlen, sizeof k->in - k->inlen, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			k->eof = true; /* a message cut short here is a linger that ran out */
			break;
		}
		got = true;
		k->inlen += (size_t)n;
		size_t off = 0;
		while (k->inlen - off >= TDP_HDR_LEN) {
			struct tdp_hdr h;
			struct tdp_msg m;
			if (tdp_check_hdr(k->in + off, &h, err, sizeof err) != 0)
				finding("the server sent a bad header: %s", err);
			if (h.len > k->inlen - off - TDP_HDR_LEN)
				break;
			if (tdp_decode(h.type, k->in + off + TDP_HDR_LEN, h.len, &m, err,
				       sizeof err) != 0)
				finding("the server sent a malformed %s: %s", tdp_type_name(h.type),
					err);
			check_reply(k, &m);
			off += TDP_HDR_LEN + h.len;
		}
		memmove(k->in, k->in + off, k->inlen - off);
		k->inlen -= off;
	}
	return got;
}

static void put(struct conn *k, const void *buf, size_t len)
{
	if (k->peer >= 0 && len > 0)
		(void)send(k->peer, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL); /* full: dropped */
}

/* ---- the loop ------------------------------------------------------------ */

/* forget -- the server freed or will free what k->c points to */
static void forget_gone(void)
{
	for (size_t i = 0; i < g_nconns; i++)
		if (g_conns[i].c && g_conns[i].c->gone)
			g_conns[i].c = NULL;
}

/*
 * pump -- tieredd's loop until nothing moves: timers, reap, one poll of
 * every client, then the clients read their replies.
 */
static void pump(struct server *s)
{
	for (int round = 0;; round++) {
		if (round == MAX_ROUNDS)
			finding("the server spins: %d poll rounds and still events", MAX_ROUNDS);
		bool moved = false;
		int64_t next = client_timers(s, g_now);
		for (size_t i = 0; i < s->nclients; i++)
			if (!s->clients[i]->gone && s->clients[i]->deadline &&
			    (s->clients[i]->deadline <= g_now || !next ||
			     s->clients[i]->deadline < next))
				finding("client_timers left deadline %lld (now %lld, next %lld)",
					(long long)s->clients[i]->deadline, (long long)g_now,
					(long long)next);
		check(s, "client_timers");
		forget_gone();
		client_reap(s);
		check(s, "client_reap");
		for (size_t i = 0; i < s->nclients; i++) {
			struct client *c = s->clients[i];
			if (c->gone)
				continue;
			struct pollfd pfd = {.fd = c->fd, .events = client_events(c)};
			if (poll(&pfd, 1, 0) <= 0 || !pfd.revents)
				continue;
			if (pfd.revents & POLLNVAL)
				finding("a client's fd is not open");
			client_event(s, c, pfd.revents);
			check(s, "client_event");
			moved = true;
		}
		for (size_t i = 0; i < g_nconns; i++)
			if (!g_conns[i].stalled && peer_read(&g_conns[i]))
				moved = true;
		if (!moved)
			break;
	}
	/* quiet: a welcomed client that read all its output knows the last DRAIN state */
	for (size_t i = 0; i < g_nconns; i++) {
		const struct conn *k = &g_conns[i];
		if (k->c && !k->c->gone && k->c->state == C_READY && k->welcomed && !k->stalled &&
		    !k->eof && k->c->outlen == 0 && !k->c->drain_pending &&
		    k->drain_seen != (int)s->draining)
			finding("connection %zu last saw DRAIN %d; the server is %sdraining", i,
				k->drain_seen, s->draining ? "" : "not ");
	}
}

static void conn_close(struct conn *k)
{
	if (k->peer >= 0)
		close(k->peer);
	memset(k, 0, sizeof *k);
	k->peer = -1;
}

/* conn_open -- k's client connects: a socketpair, the server's end accepted */
static void conn_open(struct server *s, struct conn *k)
{
	int sv[2];
	bool stalled = k->stalled;
	conn_close(k);
	k->stalled = stalled;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		finding("socketpair: %s (does the server leak fds?)", strerror(errno));
	int sndbuf = SERVER_SNDBUF; /* a client that does not read fills it soon */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	size_t n = s->nclients;
	client_accept(s, sv[0]);
	k->peer = sv[1];
	k->c = s->nclients == n + 1 ? s->clients[n] : NULL;
	check(s, "client_accept");
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void send_hello(struct conn *k, size_t idx, uint8_t arg)
{
	struct tdp_msg m = {.type = TDP_HELLO};
	static const char *const names[] = {"fuzz-client", STATUS_NAME, DRAIN_NAME, NULL};
	m.u.hello.min_version = arg & 4 ? TDP_VERSION + 1 : arg & 8 ? 0 : TDP_VERSION;
	m.u.hello.max_version = arg & 4 ? TDP_VERSION + 2 : arg & 8 ? 5 : TDP_VERSION;
	m.u.hello.pid = 1000 + (uint32_t)idx;
	memset(m.u.hello.nonce, (int)(idx * 16 + arg), TDP_NONCE_LEN);
	if (names[arg & 3]) {
		snprintf(m.u.hello.name, sizeof m.u.hello.name, "%s", names[arg & 3]);
	} else { /* the longest name, not printable */
		for (int i = 0; i < TDP_STR_MAX; i++)
			m.u.hello.name[i] = (char)(1 + i);
	}
	uint8_t buf[TDP_MAX_MSG];
	ssize_t n = tdp_encode(&m, buf, sizeof buf);
	if (n < 0)
		finding("cannot encode HELLO");
	put(k, buf, (size_t)n);
}

/* send_auth -- AUTH for the CHALLENGE k read (the client's nonce is the one HELLO gave) */
static void send_auth(struct conn *k, uint8_t arg)
{
	struct tdp_msg m = {.type = TDP_AUTH};
	if (k->c)
		memcpy(k->cnonce, k->c->cnonce, TDP_NONCE_LEN);
	tdp_mac_client(secret, sizeof secret, k->snonce, k->cnonce, m.u.auth.mac);
	if (arg & 1)
		m.u.auth.mac[arg % TDP_MAC_LEN] ^= 1;
	else
		k->authed = k->challenged;
	uint8_t buf[TDP_MAX_MSG];
	ssize_t n = tdp_encode(&m, buf, sizeof buf);
	if (n < 0)
		finding("cannot encode AUTH");
	put(k, buf, (size_t)n);
}

/* send_req -- a message of any type; the fields that matter from a[] */
static void send_req(struct conn *k, unsigned type, const uint8_t a[16])
{
	struct tdp_msg m = {.type = (uint16_t)type};
	uint8_t buf[TDP_MAX_MSG];
	switch (type) {
	case TDP_LEASE_REQ: m.u.lease_req.bytes = get64(a); break;
	case TDP_RELEASE: m.u.release.id = get64(a); break;
	case TDP_REPORT:
		m.u.report.bytes_written = get64(a);
		m.u.report.bytes_read = get64(a + 8);
		break;
	case TDP_DRAIN_REQ:
	case TDP_DRAIN: m.u.drain.mode = (uint32_t)get64(a); break;
	case TDP_WELCOME:
		m.u.welcome.addr_len = 1;
		snprintf(m.u.welcome.provider, sizeof m.u.welcome.provider, "x");
		break;
	case TDP_ERROR:
		m.u.error.code = 1;
		snprintf(m.u.error.msg, sizeof m.u.error.msg, "x");
		break;
	}
	ssize_t n = tdp_encode(&m, buf, sizeof buf);
	if (n < 0) { /* types 0 and 15: a header alone */
		tdp_put_hdr(buf, (uint16_t)type, 0);
		n = TDP_HDR_LEN;
	}
	put(k, buf, (size_t)n);
}

struct input {
	const uint8_t *p;
	size_t size;
	unsigned steps;
	size_t hist[5]; /* offsets of the last steps, newest first, for REPEAT */
	size_t nhist;
};

static size_t step(struct input *in, size_t off, bool top);

/*
 * repeat -- REPEAT: the 1 + (arg & 3) steps before it (in->hist[1..]),
 * oldest first, (arg >> 2) * 16 times; the repeated steps are not recorded,
 * a REPEAT among them does nothing, and the loop runs every 8 rounds only.
 */
static void repeat(struct input *in, uint8_t arg)
{
	size_t n = 1 + (size_t)(arg & 3);
	size_t hist[5];
	memcpy(hist, in->hist, sizeof hist);
	if (n > in->nhist - 1)
		n = in->nhist - 1;
	for (unsigned r = 0; r < (unsigned)(arg >> 2) * 16u && in->steps < MAX_STEPS; r++) {
		for (size_t j = n; j >= 1; j--)
			if (in->steps < MAX_STEPS)
				step(in, hist[j], false);
		if (r % 8 == 7)
			pump(&g_s); /* in between, the requests pile up: pipelined */
	}
}

/* step -- run the step at offset off (top: not a repeat); returns the offset after it */
static size_t step(struct input *in, size_t off, bool top)
{
	struct server *s = &g_s;
	const uint8_t *p = in->p;
	uint8_t a[16] = {0};
	if (off + 2 > in->size)
		return in->size;
	size_t idx = (p[off] & 7) % g_nconns;
	enum action act = (enum action)((p[off] >> 3) % A_N);
	uint8_t arg = p[off + 1];
	size_t next = off + 2;
	struct conn *k = &g_conns[idx];
	in->steps++;
	if (top) {
		memmove(in->hist + 1, in->hist, sizeof in->hist - sizeof *in->hist);
		in->hist[0] = off;
		if (in->nhist < 5)
			in->nhist++;
	}
	bool needs_conn = act == A_DATA || act == A_HELLO || act == A_AUTH || act == A_REQ;
	if (needs_conn && (k->peer < 0 || !k->c)) {
		if (k->peer >= 0 && !k->stalled)
			peer_read(k); /* the last of the old connection's replies */
		conn_open(s, k);
	}
	switch (act) {
	case A_DATA: {
		size_t len = arg < in->size - next ? arg : in->size - next;
		put(k, p + next, len);
		next += len;
		break;
	}
	case A_HELLO: send_hello(k, idx, arg); break;
	case A_AUTH: send_auth(k, arg); break;
	case A_REQ: {
		size_t want = arg % 16 == TDP_REPORT ? 16 : 8;
		size_t len = want < in->size - next ? want : in->size - next;
		memcpy(a, p + next, len);
		next += len;
		send_req(k, arg % 16, a);
		break;
	}
	case A_TIME: g_now += (int64_t)arg * 50000000LL; break;
	case A_HANGUP:
		if (k->peer >= 0 && (arg & 1)) {
			shutdown(k->peer, SHUT_WR);
		} else if (k->peer >= 0) {
			close(k->peer);
			k->peer = -1;
			k->c = NULL; /* the server finds out by itself */
		}
		break;
	case A_STALL: k->stalled = arg & 1; break;
	case A_FAIL:
		g_stub.fail_reg = arg & 1;
		g_stub.fail_add = arg & 2;
		break;
	case A_REPEAT:
		if (top)
			repeat(in, arg);
		break;
	case A_N: break;
	}
	if (top)
		pump(s);
	return next;
}

static void server_init(struct server *s)
{
	char err[256];
	memset(s, 0, sizeof *s);
	s->o.capacity = POOL_SIZE;
	s->o.client_limit = CLIENT_LIMIT;
	s->o.max_clients = MAX_CLIENTS;
	s->o.max_leases = MAX_LEASES;
	s->lfd = -1;
	memcpy(s->secret, secret, sizeof secret);
	s->secret_len = sizeof secret;
	if (pool_init(&s->pool, POOL_SIZE, err, sizeof err) != 0)
		finding("pool_init: %s", err);
	/* stub_reg touches a byte per granule: a page to fault in, not a huge page */
	madvise(s->pool.base, s->pool.size, MADV_NOHUGEPAGE);
	memset(&g_stub, 0, sizeof g_stub);
	g_stub.dp.ops = &stub_ops;
	g_stub.s = s;
	s->dp = &g_stub.dp;
	g_now = 1000000000000LL; /* a deadline of 0 means none: start well after 0 */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct server *s = &g_s;
	if (size < 1)
		return 0;
	server_init(s);
	g_nconns = 1 + data[0] % MAX_CONNS;
	for (size_t i = 0; i < MAX_CONNS; i++) {
		memset(&g_conns[i], 0, sizeof g_conns[i]);
		g_conns[i].peer = -1;
	}
	struct input in = {.p = data, .size = size};
	for (size_t off = 1; off < size && in.steps < MAX_STEPS;)
		off = step(&in, off, true);
	pump(s);
	forget_gone();
	for (size_t i = 0; i < g_nconns; i++)
		g_conns[i].c = NULL;
	client_close_all(s);
	if (s->nclients || s->leased || s->leases || s->authed || s->owners || s->pool.used ||
	    s->pool.nfree != 1 || g_stub.live_regs || g_stub.live_clients)
		finding("after client_close_all: %zu clients, %llu bytes in %llu leases, pool used "
			"%llu in %zu free ranges, %zu registrations, %zu data path clients",
			s->nclients, (unsigned long long)s->leased, (unsigned long long)s->leases,
			(unsigned long long)s->pool.used, s->pool.nfree, g_stub.live_regs,
			g_stub.live_clients);
	for (size_t i = 0; i < g_nconns; i++)
		conn_close(&g_conns[i]);
	pool_fini(&s->pool);
	return 0;
}

#ifdef FUZZ_REPLAY
static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

static int replay(const char *path, unsigned *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		++*count;
		return replay_file(path);
	}
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		return 1;
	}
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", path, e->d_name);
		rc |= replay(p, count);
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int rc = 0;
	for (int i = 1; i < argc; i++)
		rc |= replay(argv[i], &count);
#ifdef FUZZ_DIRS
	if (argc == 1) { /* make check: the corpus and every past finding */
		static const char *dirs[] = {FUZZ_DIRS};
		for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
			rc |= replay(dirs[i], &count);
	}
#endif
	printf("fuzz_server: replayed %u inputs\n", count);
	return rc || count == 0;
}
#endif
