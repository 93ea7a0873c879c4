/*
 * remote.h -- the remote memory backend interface.
 *
 * A backend connects to one memory server (tieredd), authenticates over the
 * control protocol (docs/PROTOCOL.md), obtains leases (ranges of the
 * server's memory reachable only by this client) and moves bytes between
 * registered local buffers and leases with one-sided RMA.  lib/remote.c
 * owns the policy (which server, slot allocation, batching, failure
 * handling); a backend is only the mechanism, a small table of operations.
 *
 * Threads: a connection's control operations (lease, release, report,
 * check) are serialised by the backend.  Data moves through channels: each
 * runtime thread that moves data opens its own channel (endpoint and
 * completion queue) and is its only user.  Backend code runs on the
 * runtime's own threads only (RT_INTERNAL), so it may allocate with malloc;
 * it never touches tiered (evictable) memory.
 *
 * Errors are negative errno values; functions that take err/errlen fill
 * them with a one-line message naming the server and what went wrong.
 */
#ifndef TIERED_REMOTE_H
#define TIERED_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#define REMOTE_SECRET_MAX 256
#define REMOTE_HOST_MAX 256

/* Where a memory server is: parsed from "provider://host:port". */
struct remote_target {
	char provider[16]; /* URL scheme: "tcp", "shm", "fi-verbs" (libfabric), "verbs" (ibverbs) */
	char host[REMOTE_HOST_MAX];
	uint16_t port;
};

/* A lease: a range of a server's memory that only this client may reach. */
struct remote_lease {
	uint64_t id;	/* the server's name for it, for release */
	uint64_t raddr; /* remote address of the lease's first byte, as RMA wants it */
	uint64_t key;	/* RMA key of the lease */
	uint64_t len;	/* bytes */
};

/* One RMA transfer between a registered local buffer and a lease. */
struct remote_io {
	void *buf;	/* local: inside a buffer registered with reg() */
	void *desc;	/* from reg() */
	size_t len;
	uint64_t raddr; /* lease.raddr + offset */
	uint64_t key;	/* lease.key */
	void *ctx;	/* handed back by poll() */
};

/* A completion: the ctx of a posted transfer and its outcome. */
struct remote_cqe {
	void *ctx;
	int status; /* 0, or a negative errno (-EIO, -ECONNRESET, -ETIMEDOUT, ...) */
};

/* Server-wide figures, from the server (protocol STATS message). */
struct remote_server_stats {
	uint64_t capacity, leased, clients, leases;
	uint64_t bytes_written, bytes_read; /* as reported by clients */
	uint64_t errors, refusals;
	uint64_t draining; /* 1 while the server drains (tieredd --drain), else 0 */
};

struct remote_conn; /* one authenticated connection to one server */
struct remote_ctl;  /* its control connection (lib/remote_ctl.h) */
struct remote_chan; /* one thread's endpoint and completion queue on a connection */

struct remote_ops {
	const char *name; /* "fabric", "verbs" */
	/*
	 * Connect to t, authenticate with the shared secret (challenge-response:
	 * the secret never crosses the wire) and set up the data path.
	 */
	int (*connect)(const struct remote_target *t, const void *secret, size_t secret_len,
		       struct remote_conn **out, char *err, size_t errlen);
	/* Ask for a lease of bytes; -ENOSPC (server full, client limit) with err saying which. */
	int (*lease)(struct remote_conn *c, uint64_t bytes, struct remote_lease *out, char *err,
		     size_t errlen);
	int (*release)(struct remote_conn *c, uint64_t lease_id);
	/* Tell the server this client's cumulative byte counts (no reply). */
	int (*report)(struct remote_conn *c, uint64_t bytes_written, uint64_t bytes_read);
	int (*server_stats)(struct remote_conn *c, struct remote_server_stats *out);
	/* 0 while the control connection is up; -ECONNRESET etc. once the server is gone. */
	int (*check)(struct remote_conn *c);
	/* Register a local buffer for RMA; *desc goes into remote_io, *handle to dereg. */
	int (*reg)(struct remote_conn *c, void *buf, size_t len, void **desc, void **handle);
	void (*dereg)(void *handle);
	int (*chan_open)(struct remote_conn *c, struct remote_chan **out);
	/*
	 * Close a channel.  Transfers still pending may finish first, reads
	 * landing in their buffers (remote_fabric.c): close only where those
	 * buffers hold nothing the caller needs.
	 */
	void (*chan_close)(struct remote_chan *ch);
	/*
	 * Close a channel if the provider holds none of its transfers, letting
	 * it finish them (reads landing, as above) for up to wait_ms first:
	 * 0, or -EBUSY with the channel still open, to try again later.  NULL
	 * where chan_close never has to wait.
	 */
	int (*chan_close_try)(struct remote_chan *ch, int wait_ms);
	/*
	 * Post one transfer; -EAGAIN when the channel's queue is full (poll, then
	 * post again).  A write completes only once it is delivered at the
	 * server (FI_DELIVERY_COMPLETE or equivalent), so the local copy may be
	 * dropped when its completion arrives with status 0.
	 */
	int (*post_read)(struct remote_chan *ch, const struct remote_io *io);
	int (*post_write)(struct remote_chan *ch, const struct remote_io *io);
	/*
	 * Reap up to max completions, waiting up to timeout_ms for the first
	 * (0: do not wait, -1: forever).  Returns the number reaped (0 on
	 * timeout) or a negative errno when the channel itself failed.
	 */
	int (*poll)(struct remote_chan *ch, struct remote_cqe *cqe, int max, int timeout_ms);
	/* Close: leases are released by the server when the connection ends. */
	void (*close)(struct remote_conn *c);
	/* A printable name of the connection's server: "tcp://127.0.0.1:7411". */
	const char *(*name_of)(struct remote_conn *c);
	/*
	 * The connection's control connection (lib/remote_ctl.h), for what the
	 * wrappers above do not cover: its draining flag, rctl_poll_notice.
	 * NULL where there is none (the verbs stub).
	 */
	struct remote_ctl *(*ctl)(struct remote_conn *c);
};

/* lib/remote_fabric.c: libfabric RDM endpoints (tcp;ofi_rxm, shm, verbs;ofi_rxm). */
extern const struct remote_ops remote_fabric_ops __attribute__((visibility("hidden")));
/*
 * lib/remote_verbs.c: libibverbs RC queue pairs connected with librdmacm
 * (scheme verbs).  Built without librdmacm/libibverbs, lib/remote_verbs_none.c
 * stands in: its connect fails with -ENOTSUP and says what to install.
 */
extern const struct remote_ops remote_verbs_ops __attribute__((visibility("hidden")));

/* The backend of a URL scheme ("verbs": remote_verbs_ops; the others: remote_fabric_ops). */
const struct remote_ops *remote_ops_of(const char *scheme) __attribute__((visibility("hidden")));

/*
 * Parse "provider://host:port" (provider tcp, shm, verbs or fi-verbs; host a name or
 * IPv4 address; port 1..65535).  Returns 0 or -EINVAL with err saying what
 * is wrong and what is allowed.
 */
int remote_parse_target(const char *s, size_t len, struct remote_target *t, char *err,
			size_t errlen) __attribute__((visibility("hidden")));

#endif /* TIERED_REMOTE_H */
