/*
 * tieredd.h -- the memory server's modules and the state they share.
 *
 * tieredd is one thread: a poll() loop (tieredd.c) over the listening
 * socket, the clients' control sockets (client.c) and the data path: fabric
 * progress (fabric.c, libfabric) or rdma_cm events (verbs.c, librdmacm and
 * libibverbs); leases are carved from one memory area (pool.c).  Nothing
 * needs a lock.
 */
#ifndef TIEREDD_H
#define TIEREDD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct server;
struct client;
struct sockaddr_in;

/* ==== tieredd.c ============================================================ */
enum slog_level { SLOG_ERROR, SLOG_WARN, SLOG_INFO, SLOG_DEBUG };
extern int g_slog_level;
/* One line to stderr: "tieredd: <level>: text". */
void slog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int64_t mono_ns(void);

/* ==== pool.c =============================================================== */
/* The served memory: one MAP_NORESERVE area cut into TDP_GRANULE units. */
struct pool_range {
	uint64_t off, len;
};
struct pool {
	uint8_t *base;
	uint64_t size, used;
	struct pool_range *free; /* sorted by off, never adjacent (coalesced) */
	size_t nfree, cap;
};
int pool_init(struct pool *p, uint64_t size, char *err, size_t errlen);
void pool_fini(struct pool *p);
/* First fit of len (a multiple of the granule); 0 or -ENOSPC (-ENOMEM: no room to track). */
int pool_alloc(struct pool *p, uint64_t len, uint64_t *off);
/* Zero the range (MADV_DONTNEED, else memset) and return it to the free list. */
void pool_release(struct pool *p, uint64_t off, uint64_t len);
uint64_t pool_largest_free(const struct pool *p);

/* ==== the data path: fabric.c or verbs.c ================================== */
/*
 * What clients' one-sided RMA reaches: a libfabric endpoint (tcp, shm,
 * fi-verbs) or an rdma_cm listener with a protection domain per client
 * (verbs).  Each implementation embeds struct dpath first in its own state.
 */
struct dpath {
	const struct dpath_ops *ops;
};

struct dpath_ops {
	/*
	 * Open the data path of s->o.provider on s->o.listen (s->port is the
	 * control port, already bound).  0, or a negative errno with err.
	 */
	int (*open)(struct server *s, struct dpath **out, char *err, size_t errlen);
	void (*close)(struct dpath *d);
	/* The WELCOME's provider string ("tcp;ofi_rxm", "rdma-rc", ...). */
	const char *(*prov_name)(const struct dpath *d);
	/*
	 * Client c (c->id set) passed AUTH: set up what it needs (verbs: its own
	 * protection domain) and write its WELCOME address to addr.  local is
	 * the address c reached the control port on, or NULL.  0, or a negative
	 * errno with err (the client then gets ERROR instead of WELCOME).
	 */
	int (*client_add)(struct dpath *d, struct client *c, const struct sockaddr_in *local,
			  uint8_t *addr, size_t cap, uint16_t *len, char *err, size_t errlen);
	/* c's connection ended and its leases are deregistered: drop the rest. */
	void (*client_remove)(struct dpath *d, struct client *c);
	/*
	 * Register [addr, addr+len) for c's remote read and write: its own key,
	 * reachable by c alone where the data path can tell clients apart.
	 */
	int (*reg)(struct dpath *d, struct client *c, void *addr, uint64_t len, void **mr,
		   uint64_t *key, uint64_t *raddr, char *err, size_t errlen);
	void (*dereg)(struct dpath *d, void *mr);
	/* Drive progress once; true when it saw traffic. */
	bool (*progress)(struct dpath *d);
	/* The fd that turns readable when progress() has work, or -1. */
	int (*wait_fd)(const struct dpath *d);
	/* May the loop block on the wait fd now?  false: do not block. */
	bool (*trywait)(struct dpath *d);
	/* Progress is manual (libfabric tcp, shm): spin after traffic (--progress). */
	bool manual_progress;
};

/* fabric.c: libfabric RDM endpoint, providers tcp;ofi_rxm, shm and verbs;ofi_rxm. */
extern const struct dpath_ops dpath_fabric_ops;
/*
 * verbs.c: rdma_cm listener and RC queue pairs in per-client protection
 * domains (provider "rdma-rc"); verbs_none.c when built without
 * librdmacm/libibverbs, whose open fails and says so.
 */
extern const struct dpath_ops dpath_verbs_ops;

/* ==== client.c ============================================================= */
/* HELLO names of tieredd's own queries: they do not count as owners for --private. */
#define STATUS_NAME "tieredd-status"
#define DRAIN_NAME "tieredd-drain"

enum progress_mode { PROGRESS_ADAPTIVE, PROGRESS_SPIN, PROGRESS_WAIT };

struct server_opts {
	char listen[64];
	uint16_t port;
	char provider[16];
	uint64_t capacity, client_limit;
	unsigned max_clients, max_leases;
	int log_level;
	int ready_fd;
	bool detach, private_mode, status;
	bool drain, undrain;	/* --drain, --undrain: ask a running server, then exit */
	unsigned drain_timeout; /* --drain-timeout, seconds; 0: wait for ever */
	long parent;
	unsigned stats_interval;
	enum progress_mode progress;
	unsigned spin_us;
};

struct lease {
	uint64_t id, off, len, key, raddr;
	void *mr; /* the data path's registration */
};

enum client_state { C_HELLO, C_AUTH, C_READY, C_CLOSING };

struct client {
	int fd;
	enum client_state state;
	uint64_t id; /* 0 until welcomed */
	char peer[32];		       /* "127.0.0.1:40000" */
	char name[TDP_STR_MAX + 1];    /* from HELLO, printable */
	uint32_t pid;
	bool owner;		       /* counts for --private */
	uint8_t cnonce[TDP_NONCE_LEN], snonce[TDP_NONCE_LEN];
	bool gone; /* closed: freed by client_reap() */
	struct tdp_hdr hdr; /* of the message being read, once inlen >= TDP_HDR_LEN */
	uint8_t in[TDP_MAX_MSG];
	size_t inlen;
	uint8_t out[2 * TDP_MAX_MSG];
	size_t outlen, outoff;
	bool drain_pending; /* a DRAIN notice did not fit in out: queue it once out is sent */
	int64_t deadline; /* handshake or linger end, ns; 0 = none */
	struct lease *leases;
	size_t nleases, cap;
	uint64_t leased;
	uint64_t rep_written, rep_read; /* the last REPORT */
	void *dp_priv; /* the data path's per-client state (verbs: PD, queue pairs), or NULL */
};

struct server {
	struct server_opts o;
	uint8_t secret[TDP_SECRET_MAX];
	size_t secret_len;
	int lfd;
	uint16_t port;
	struct pool pool;
	struct dpath *dp;
	struct client **clients;
	size_t nclients, cap;
	uint64_t next_client_id, next_lease_id;
	/* figures of STATS */
	uint64_t leased, leases, authed, bytes_written, bytes_read, errors, refusals;
	uint64_t owners;
	bool had_owner;
	bool draining; /* DRAIN_REQ 1 (tieredd --drain): no new leases until DRAIN_REQ 0 */
	int64_t accept_pause; /* out of fds: do not poll the listening socket until then */
};

/* A new connection on the listening socket (accepted, nonblocking). */
void client_accept(struct server *s, int fd);
/* Poll events of c: read and answer its messages, flush its replies. */
void client_event(struct server *s, struct client *c, short revents);
/* The events c waits for (POLLIN and/or POLLOUT). */
short client_events(const struct client *c);
/* Free the clients that were closed. */
void client_reap(struct server *s);
/* Expire deadlines (handshake, linger); returns the next one (ns), or 0. */
int64_t client_timers(struct server *s, int64_t now);
/* Connections that count against --max-clients (not closing). */
size_t client_live(const struct server *s);
/* Close every client, releasing its leases. */
void client_close_all(struct server *s);
void server_stats(const struct server *s, struct tdp_stats *st);

#endif /* TIEREDD_H */
