/*
 * remote_ctl.c -- the control connection every remote backend shares (see
 * remote_ctl.h): TCP connect and handshake through lib/proto.c, then one
 * request and its reply at a time under ctl->lock.
 *
 * Runs on the runtime's own threads only (RT_INTERNAL); it touches no
 * tiered memory.  A request that fails in a way that leaves the protocol
 * state unknown (timeout, reset, malformed reply) marks the connection
 * dead: the server will not hear from us again on it.
 *
 * The server's one unasked message is the DRAIN notice (tieredd --drain):
 * tdp_request skips it while it waits for a reply and tells us its mode;
 * rctl_poll_notice reads those that arrive between requests.
 *
 * A cut network or a stopped server closes no socket: rctl_heartbeat sends
 * a STATS_REQ when the server has been quiet a while, without waiting for
 * the reply; the next call reads it, and a request of ours first takes it
 * off the socket (await_ping_locked), so replies still pair with requests.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "remote_ctl.h"

#define CONNECT_MS 5000 /* TCP connect and the whole handshake */
#define CTRL_MS 10000	/* one control request and its reply */
#define REPORT_MS 1000	/* REPORT has no reply: a short send deadline */
#define NOTICE_MS 1000	/* the rest of a notice whose first bytes are in */

/* The schemes of remote_parse_target and the WELCOME provider each one needs. */
static const struct {
	const char *scheme, *prov;
} schemes[] = {
	{"tcp", "tcp;ofi_rxm"},
	{"shm", "shm"},
	{"fi-verbs", "verbs;ofi_rxm"},
	{"verbs", "rdma-rc"},
};

const char *rctl_scheme_of(const char *prov)
{
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (strcmp(schemes[i].prov, prov) == 0)
			return schemes[i].scheme;
	return NULL;
}

int rctl_check_provider(const struct remote_ctl *ctl, const char *prov, const char *want,
			char *err, size_t errlen)
{
	if (strcmp(prov, want) == 0)
		return 0;
	const char *scheme = rctl_scheme_of(prov);
	if (scheme)
		snprintf(err, errlen,
			 "%s: the server serves \"%s\" (tieredd -P %s), but the address asks for "
			 "\"%s\": use a %s:// address",
			 ctl->name, prov, scheme, want, scheme);
	else
		snprintf(err, errlen,
			 "%s: the server serves \"%s\", which this library does not know (it "
			 "speaks tcp, shm, fi-verbs and verbs)",
			 ctl->name, prov);
	return -EPROTONOSUPPORT;
}

int rctl_open(struct remote_ctl *ctl, const struct remote_target *t, const void *secret,
	      size_t secret_len, struct tdp_msg *welcome, char *err, size_t errlen)
{
	char why[512];
	memset(ctl, 0, sizeof *ctl);
	ctl->fd = -1;
	snprintf(ctl->name, sizeof ctl->name, "%s://%s:%u", t->provider, t->host, t->port);
	if (secret_len < 1 || secret_len > REMOTE_SECRET_MAX) {
		snprintf(err, errlen, "%s: a secret of %zu bytes: it must be 1 to %d bytes",
			 ctl->name, secret_len, REMOTE_SECRET_MAX);
		return -EINVAL;
	}
	int rc = tdp_connect(t->host, t->port, CONNECT_MS, &ctl->fd, why, sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", ctl->name, why);
		return rc;
	}
	const char *me = program_invocation_short_name;
	rc = tdp_handshake(ctl->fd, secret, secret_len, me ? me : "", welcome, CONNECT_MS, why,
			   sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", ctl->name, why);
		close(ctl->fd);
		ctl->fd = -1;
		return rc;
	}
	ctl->client_id = welcome->u.welcome.client_id;
	ctl->capacity = welcome->u.welcome.capacity;
	ctl->client_limit = welcome->u.welcome.client_limit;
	pthread_mutex_init(&ctl->lock, NULL);
	atomic_init(&ctl->dead, false);
	atomic_init(&ctl->draining, false);
	atomic_store(&ctl->heard_ns, (int64_t)mono_ns());
	(void)rctl_poll_notice(ctl); /* a draining server sends DRAIN right behind WELCOME */
	return 0;
}

/*
 * rctl_close -- dead first, then the socket: a channel still probing (a
 * backend that leaks its channels at close) sees dead and never polls a
 * reused fd number.  The mutex stays valid for such a prober.
 */
void rctl_close(struct remote_ctl *ctl)
{
	atomic_store(&ctl->dead, true);
	if (ctl->fd >= 0) {
		close(ctl->fd);
		ctl->fd = -1;
	}
}

/* A control operation failed in a way that leaves the protocol state unknown. */
static void ctl_broken(struct remote_ctl *ctl, int rc)
{
	if (rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -EPROTO || rc == -EPIPE ||
	    rc == -ENOTCONN || rc == -EBADF)
		atomic_store(&ctl->dead, true);
}

/* Is the control socket closed by the peer or in error?  Needs ctl->lock. */
static bool socket_gone_locked(struct remote_ctl *ctl)
{
	struct pollfd pfd = {.fd = ctl->fd, .events = POLLIN | POLLRDHUP};
	if (poll(&pfd, 1, 0) < 0)
		return false;
	return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* note_drain -- a DRAIN notice of mode (0 or 1) arrived on ctl */
static void note_drain(struct remote_ctl *ctl, int mode)
{
	bool on = mode == TDP_DRAIN_ON;
	if (atomic_exchange(&ctl->draining, on) != on)
		tlog(LOG_INFO, "%s: %s", ctl->name,
		     on ? "the server is draining (tieredd --drain): its blocks are to move off it"
			: "the server stopped draining");
}

/*
 * read_waiting_locked -- read and apply the messages already waiting on the
 * socket: DRAIN notices, and the reply to our heartbeat.  Anything else, an
 * end of stream or an error marks the connection dead.  ctl->lock held.
 */
static void read_waiting_locked(struct remote_ctl *ctl)
{
	while (!atomic_load(&ctl->dead)) {
		struct pollfd pfd = {.fd = ctl->fd, .events = POLLIN};
		int n = poll(&pfd, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* nothing waiting */
		if (pfd.revents & POLLNVAL) {
			atomic_store(&ctl->dead, true);
			break;
		}
		/* data, end of stream or an error: the receive tells which */
		struct tdp_msg m;
		char why[300];
		int rc = tdp_recv_msg(ctl->fd, &m, NOTICE_MS, why, sizeof why);
		if (rc < 0) {
			tlog(LOG_DEBUG, "%s: control connection: %s", ctl->name, why);
			atomic_store(&ctl->dead, true);
		} else if (m.type == TDP_DRAIN) {
			note_drain(ctl, (int)m.u.drain.mode);
			atomic_store(&ctl->heard_ns, (int64_t)mono_ns());
		} else if (m.type == TDP_STATS && ctl->ping_ns) {
			ctl->ping_ns = 0;
			atomic_store(&ctl->heard_ns, (int64_t)mono_ns());
		} else {
			bool e = m.type == TDP_ERROR;
			tlog(LOG_WARN, "%s: protocol error: the server sent %s%s%s unasked",
			     ctl->name, tdp_type_name(m.type), e ? ": " : "",
			     e ? m.u.error.msg : "");
			atomic_store(&ctl->dead, true);
		}
	}
}

int rctl_poll_notice(struct remote_ctl *ctl)
{
	int64_t quiet;
	return rctl_heartbeat(ctl, 0, &quiet) < 0 ? -ECONNRESET : 0;
}

int rctl_heartbeat(struct remote_ctl *ctl, int timeout_ms, int64_t *quiet_ms)
{
	*quiet_ms = ((int64_t)mono_ns() - atomic_load(&ctl->heard_ns)) / 1000000;
	if (atomic_load(&ctl->dead))
		return -ECONNRESET;
	if (pthread_mutex_trylock(&ctl->lock) != 0) {
		/* a request in progress reads the notices itself; its reply is late? */
		return timeout_ms > 0 && *quiet_ms >= timeout_ms ? 1 : 0;
	}
	read_waiting_locked(ctl);
	bool overdue = false;
	if (timeout_ms > 0 && !atomic_load(&ctl->dead)) {
		int64_t now = (int64_t)mono_ns(), limit = (int64_t)timeout_ms * 1000000;
		int64_t heard = atomic_load(&ctl->heard_ns);
		*quiet_ms = (now - heard) / 1000000;
		if (ctl->ping_ns && now - heard >= limit) {
			overdue = true;
		} else if (!ctl->ping_ns && now - heard >= limit / 4) {
			struct tdp_msg req = {.type = TDP_STATS_REQ};
			int rc = tdp_send_msg(ctl->fd, &req, REPORT_MS);
			if (rc < 0) {
				tlog(LOG_DEBUG, "%s: heartbeat: send failed: %s", ctl->name,
				     strerror(-rc));
				atomic_store(&ctl->dead, true);
			} else {
				ctl->ping_ns = now;
			}
		}
	}
	pthread_mutex_unlock(&ctl->lock);
	if (atomic_load(&ctl->dead))
		return -ECONNRESET;
	return overdue ? 1 : 0;
}

void rctl_give_up(struct remote_ctl *ctl)
{
	atomic_store(&ctl->dead, true);
	/* a request waiting on the socket ends now, not at its deadline; fd stays open */
	if (ctl->fd >= 0)
		(void)shutdown(ctl->fd, SHUT_RDWR);
}

/*
 * await_ping_locked -- the reply to the heartbeat in flight, before a
 * request of ours goes out (replies come in order).  ctl->lock held.
 */
static int await_ping_locked(struct remote_ctl *ctl, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = (int64_t)mono_ns() + (int64_t)timeout_ms * 1000000;
	while (ctl->ping_ns) {
		int64_t left = (deadline - (int64_t)mono_ns()) / 1000000;
		struct tdp_msg m;
		char why[300];
		int rc = tdp_recv_msg(ctl->fd, &m, left > 0 ? (int)left : 0, why, sizeof why);
		if (rc < 0) {
			snprintf(err, errlen, "heartbeat: %s",
				 rc == -ETIMEDOUT ? "no reply in time" : why);
			return rc;
		}
		if (m.type == TDP_DRAIN) {
			note_drain(ctl, (int)m.u.drain.mode);
		} else if (m.type == TDP_STATS) {
			ctl->ping_ns = 0;
		} else {
			snprintf(err, errlen, "protocol error: %s where the heartbeat's STATS was due",
				 tdp_type_name(m.type));
			return -EPROTO;
		}
	}
	return 0;
}

int rctl_check(struct remote_ctl *ctl)
{
	return rctl_poll_notice(ctl);
}

bool rctl_probe_dead(struct remote_ctl *ctl)
{
	if (atomic_load(&ctl->dead))
		return true;
	if (pthread_mutex_trylock(&ctl->lock) == 0) {
		if (socket_gone_locked(ctl))
			atomic_store(&ctl->dead, true);
		pthread_mutex_unlock(&ctl->lock);
	}
	return atomic_load(&ctl->dead);
}

/* Send req and wait for a reply of type want, under the lock; DRAIN notices met are applied. */
static int ctl_request(struct remote_ctl *ctl, const struct tdp_msg *req, uint16_t want,
		       struct tdp_msg *reply, char *err, size_t errlen)
{
	if (atomic_load(&ctl->dead)) {
		snprintf(err, errlen, "the control connection is closed");
		return -ECONNRESET;
	}
	int notice = -1;
	pthread_mutex_lock(&ctl->lock);
	reply->type = 0;
	int rc = await_ping_locked(ctl, CTRL_MS, err, errlen);
	if (rc == 0)
		rc = tdp_request(ctl->fd, req, want, reply, CTRL_MS, err, errlen, &notice);
	if (rc < 0 && reply->type != TDP_ERROR)
		ctl_broken(ctl, rc);
	else
		atomic_store(&ctl->heard_ns, (int64_t)mono_ns());
	if (notice >= 0)
		note_drain(ctl, notice); /* under the lock: notices apply in their order */
	pthread_mutex_unlock(&ctl->lock);
	return rc;
}

int rctl_lease(struct remote_ctl *ctl, uint64_t bytes, struct remote_lease *out, char *err,
	       size_t errlen)
{
	char why[400], size[32];
	struct tdp_msg req = {.type = TDP_LEASE_REQ}, rep;
	req.u.lease_req.bytes = bytes;
	tdp_size_text(bytes, size, sizeof size);
	int rc = ctl_request(ctl, &req, TDP_LEASE, &rep, why, sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s: lease of %s: %s", ctl->name, size, why);
		return rc;
	}
	if (rep.u.lease.len < bytes) {
		snprintf(err, errlen, "%s: lease of %s: the server granted only %llu bytes",
			 ctl->name, size, (unsigned long long)rep.u.lease.len);
		return -EPROTO;
	}
	out->id = rep.u.lease.id;
	out->raddr = rep.u.lease.raddr;
	out->key = rep.u.lease.key;
	out->len = rep.u.lease.len;
	return 0;
}

int rctl_release(struct remote_ctl *ctl, uint64_t lease_id)
{
	char why[400];
	struct tdp_msg req = {.type = TDP_RELEASE}, rep;
	req.u.release.id = lease_id;
	int rc = ctl_request(ctl, &req, TDP_OK, &rep, why, sizeof why);
	if (rc < 0)
		tlog(LOG_DEBUG, "%s: release of lease %llu: %s", ctl->name,
		     (unsigned long long)lease_id, why);
	return rc;
}

int rctl_report(struct remote_ctl *ctl, uint64_t bytes_written, uint64_t bytes_read)
{
	struct tdp_msg m = {.type = TDP_REPORT};
	m.u.report.bytes_written = bytes_written;
	m.u.report.bytes_read = bytes_read;
	if (atomic_load(&ctl->dead))
		return -ECONNRESET;
	pthread_mutex_lock(&ctl->lock);
	int rc = tdp_send_msg(ctl->fd, &m, REPORT_MS);
	if (rc < 0)
		ctl_broken(ctl, rc);
	pthread_mutex_unlock(&ctl->lock);
	return rc;
}

int rctl_server_stats(struct remote_ctl *ctl, struct remote_server_stats *out)
{
	char why[400];
	struct tdp_msg req = {.type = TDP_STATS_REQ}, rep;
	int rc = ctl_request(ctl, &req, TDP_STATS, &rep, why, sizeof why);
	if (rc < 0) {
		tlog(LOG_DEBUG, "%s: stats: %s", ctl->name, why);
		return rc;
	}
	out->capacity = rep.u.stats.capacity;
	out->leased = rep.u.stats.leased;
	out->clients = rep.u.stats.clients;
	out->leases = rep.u.stats.leases;
	out->bytes_written = rep.u.stats.bytes_written;
	out->bytes_read = rep.u.stats.bytes_read;
	out->errors = rep.u.stats.errors;
	out->refusals = rep.u.stats.refusals;
	out->draining = rep.u.stats.draining;
	return 0;
}
