/*
 * remote_ctl.h -- the control connection of a remote backend (lib/remote_ctl.c):
 * the TCP socket to one tieredd, the handshake (lib/proto.c) and the
 * control requests of lib/remote.h (lease, release, report, server_stats,
 * check).  Shared by lib/remote_fabric.c and lib/remote_verbs.c, which
 * differ only in their data path; each embeds a struct remote_ctl in its
 * struct remote_conn and forwards the control operations here.
 *
 * ctl->lock serialises the requests (one request and its reply at a time)
 * and guards fd; dead is set once the connection is known to be gone and
 * never cleared.  draining follows the server's DRAIN notices (tieredd
 * --drain): read by a request that meets one, or by rctl_poll_notice.
 */
#ifndef TIERED_REMOTE_CTL_H
#define TIERED_REMOTE_CTL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "remote.h"

#define RCTL_HIDDEN __attribute__((visibility("hidden")))

struct remote_ctl {
	pthread_mutex_t lock; /* fd and the request/reply sequence on it */
	int fd;		      /* control socket, or -1 */
	atomic_bool dead;     /* set once the control connection is gone */
	atomic_bool draining; /* the server announced it drains: move blocks off, release leases */
	char name[REMOTE_HOST_MAX + 32]; /* "verbs://10.0.0.1:7411" */
	uint64_t client_id, capacity, client_limit; /* from WELCOME */
	int64_t ping_ns;  /* when the heartbeat awaiting its reply went out; 0: none (lock) */
	_Atomic int64_t heard_ns; /* when the server last said anything (written under lock) */
};

/*
 * Connect to t's control port and run the handshake with the secret; the
 * WELCOME goes to *welcome (its provider and address are the backend's to
 * check).  0, or a negative errno with err naming the server and the cause;
 * on failure ctl holds nothing (rctl_close is not needed).
 */
RCTL_HIDDEN int rctl_open(struct remote_ctl *ctl, const struct remote_target *t,
			  const void *secret, size_t secret_len, struct tdp_msg *welcome, char *err,
			  size_t errlen);
RCTL_HIDDEN void rctl_close(struct remote_ctl *ctl);

/*
 * The WELCOME names provider prov; the address used scheme t->provider,
 * whose backend serves want.  0 when they agree, else -EPROTONOSUPPORT
 * with err saying which scheme the server's provider needs.
 */
RCTL_HIDDEN int rctl_check_provider(const struct remote_ctl *ctl, const char *prov,
				    const char *want, char *err, size_t errlen);
/* The URL scheme that reaches a server of WELCOME provider prov ("tcp;ofi_rxm": "tcp"), or NULL. */
RCTL_HIDDEN const char *rctl_scheme_of(const char *prov);

/* The control operations of lib/remote.h, on ctl. */
RCTL_HIDDEN int rctl_lease(struct remote_ctl *ctl, uint64_t bytes, struct remote_lease *out,
			   char *err, size_t errlen);
RCTL_HIDDEN int rctl_release(struct remote_ctl *ctl, uint64_t lease_id);
RCTL_HIDDEN int rctl_report(struct remote_ctl *ctl, uint64_t bytes_written, uint64_t bytes_read);
RCTL_HIDDEN int rctl_server_stats(struct remote_ctl *ctl, struct remote_server_stats *out);
/* 0 while the server is there; -ECONNRESET once it is gone (rctl_poll_notice). */
RCTL_HIDDEN int rctl_check(struct remote_ctl *ctl);
/*
 * Read the unsolicited messages already waiting on the control socket and
 * apply them (DRAIN notices set or clear ctl->draining).  Never blocks
 * behind a request in progress (that one reads the notices itself): with
 * the lock taken it returns at once.  A closed or failed socket, or any
 * other message, marks the connection dead.  0, or -ECONNRESET once dead.
 */
RCTL_HIDDEN int rctl_poll_notice(struct remote_ctl *ctl);
/*
 * rctl_poll_notice, and a liveness check: a cut network or a stopped server
 * closes no socket, so a heartbeat (a STATS_REQ) goes out once the server
 * has said nothing for timeout_ms / 4.  1 once it has been silent for
 * timeout_ms with a heartbeat unanswered (whether that makes it gone is
 * the caller's call: rctl_give_up), else 0, or -ECONNRESET once dead.
 * timeout_ms 0: notices only.  Like rctl_poll_notice it never waits:
 * behind a request in progress it only reports (1 once the server has been
 * silent for timeout_ms).  *quiet_ms: how long the server has been silent.
 */
RCTL_HIDDEN int rctl_heartbeat(struct remote_ctl *ctl, int timeout_ms, int64_t *quiet_ms);
/* Take the server for gone: the connection is dead from now on, and a request waiting on it fails. */
RCTL_HIDDEN void rctl_give_up(struct remote_ctl *ctl);
/*
 * The same from the data path: never waits behind a control request (a
 * thread holding the lock will see a dead socket itself).  true: gone.
 */
RCTL_HIDDEN bool rctl_probe_dead(struct remote_ctl *ctl);

#endif /* TIERED_REMOTE_CTL_H */
