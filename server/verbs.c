/*
 * verbs.c -- tieredd's libibverbs data path (dpath_verbs_ops, -P verbs,
 * WELCOME provider "rdma-rc"): an rdma_cm listener whose event channel sits
 * in the server's poll loop, one protection domain per authenticated
 * client, and RC queue pairs that clients connect with a proof of who they
 * are.  The server never posts a work request: clients read and write the
 * leases with one-sided RDMA, and the adapter (or rxe in the kernel) serves
 * them without this thread.
 *
 * Isolation: each lease is registered in its owner's protection domain, and
 * a queue pair is created in the domain of the client whose proof its
 * connect carries (HMAC-SHA256 over the client id and a nonce of that
 * client's WELCOME, docs/PROTOCOL.md).  An RDMA access through a QP with an
 * rkey of another domain fails at the adapter, so a lease's key reaches that
 * lease only, even for a client that learns or guesses another's key.
 *
 * The listener binds to --listen and, in rdma_cm's TCP port space
 * (RDMA_PS_TCP, not the kernel's TCP ports), the control port's number, or
 * any free port when that one is taken; the WELCOME says which.  On a
 * wildcard listener the device of a client is the one that serves the
 * address the client reached the control port on.
 *
 * Everything here runs on the server's one thread.  An rdma_cm event is
 * acknowledged before any cm_id is destroyed (rdma_destroy_id waits for
 * the acknowledgements of its events).  A client's queue pairs and its
 * domain go when its control connection ends (after client.c has
 * deregistered its leases), or a queue pair alone on DISCONNECTED.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "sha256.h"
#include "tieredd.h"

#define QPS_PER_CLIENT 64 /* a client opens one per runtime thread that moves data */
#define BACKLOG 64

struct vclient;

/* One RC queue pair of a client; id->context points here. */
struct vqp {
	struct rdma_cm_id *id;
	struct ibv_cq *cq;
	struct vclient *vc;
	struct vqp *next;
	bool established;
};

/* A client's data path: its domain, its nonce's expected proof, its queue pairs. */
struct vclient {
	struct ibv_pd *pd;
	uint64_t client_id;
	uint8_t proof[TDP_MAC_LEN];
	struct vqp *qps;
	unsigned nqps;
};

struct sverbs {
	struct dpath dp; /* first: the server holds &dp */
	struct server *s;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *listen;
	struct ibv_context **devs; /* rdma_get_devices: keeps the contexts open */
	int ndevs;
	struct in_addr addr; /* the listener's address (maybe INADDR_ANY) */
	uint16_t port;	     /* the listener's port */
};

static const char *dev_name(const struct ibv_context *ctx)
{
	return ctx ? ibv_get_device_name(ctx->device) : "?";
}

/* ---- open and close ------------------------------------------------------ */

static void sv_close(struct dpath *d)
{
	struct sverbs *v = (struct sverbs *)d;
	if (!v)
		return;
	if (v->listen)
		rdma_destroy_id(v->listen);
	if (v->ec)
		rdma_destroy_event_channel(v->ec);
	if (v->devs)
		rdma_free_devices(v->devs);
	free(v);
}

/* sv_open -- the rdma_cm listener on --listen and the control port's number (or any) */
static int sv_open(struct server *s, struct dpath **out, char *err, size_t errlen)
{
	struct sverbs *v = calloc(1, sizeof *v);
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	v->dp.ops = &dpath_verbs_ops;
	v->s = s;
	int rc;
	const char *what = "rdma_get_devices";
	v->devs = rdma_get_devices(&v->ndevs);
	if (!v->devs || v->ndevs == 0) {
		snprintf(err, errlen,
			 "no RDMA device (rdma_get_devices found none: ibv_devices lists them; "
			 "soft-RoCE: rdma link add rxe0 type rxe netdev IFACE)");
		sv_close(&v->dp);
		return -ENODEV;
	}
	what = "rdma_create_event_channel";
	v->ec = rdma_create_event_channel();
	if (!v->ec)
		goto sys;
	int fl = fcntl(v->ec->fd, F_GETFL);
	what = "fcntl";
	if (fl < 0 || fcntl(v->ec->fd, F_SETFL, fl | O_NONBLOCK | O_CLOEXEC) < 0)
		goto sys;
	what = "rdma_create_id";
	if (rdma_create_id(v->ec, &v->listen, v, RDMA_PS_TCP) != 0) {
		v->listen = NULL;
		goto sys;
	}
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(s->port)};
	inet_pton(AF_INET, s->o.listen, &sin.sin_addr);
	v->addr = sin.sin_addr;
	what = "rdma_bind_addr";
	if (rdma_bind_addr(v->listen, (struct sockaddr *)&sin) != 0) {
		if (errno != EADDRINUSE)
			goto bind;
		sin.sin_port = 0; /* the number is taken in rdma_cm's port space: any */
		if (rdma_bind_addr(v->listen, (struct sockaddr *)&sin) != 0)
			goto bind;
	}
	what = "rdma_listen";
	if (rdma_listen(v->listen, BACKLOG) != 0)
		goto sys;
	v->port = ntohs(rdma_get_src_port(v->listen));
	if ((ntohl(sin.sin_addr.s_addr) >> 24) == 127)
		slog(SLOG_WARN, "verbs: listening on the loopback address %s: rdma_cm finds no route "
				"to it, so clients cannot connect queue pairs; listen on the RDMA "
				"interface's address (or 0.0.0.0)",
		     s->o.listen);
	slog(SLOG_INFO, "verbs: rdma_cm listener on %s:%u (RDMA_PS_TCP), device %s", s->o.listen,
	     v->port, v->listen->verbs ? dev_name(v->listen->verbs) : "(each client's)");
	*out = &v->dp;
	return 0;
bind:
	rc = errno;
	snprintf(err, errlen, "rdma_bind_addr %s:%u: %s%s", s->o.listen, s->port, strerror(rc),
		 rc == ENODEV || rc == EADDRNOTAVAIL || rc == EINVAL
			 ? " (rdma_cm listens on the address of an RDMA-capable interface, e.g. the "
			   "netdev of an rxe device, or on 0.0.0.0)"
			 : "");
	sv_close(&v->dp);
	return -rc;
sys:
	rc = errno ? errno : EIO;
	snprintf(err, errlen, "%s: %s%s", what, strerror(rc),
		 rc == ENOENT || rc == ENODEV ? " (is the rdma_ucm module loaded?)" : "");
	sv_close(&v->dp);
	return -rc;
}

static const char *sv_prov_name(const struct dpath *d)
{
	return TDP_RC_PROVIDER;
}

/* ---- clients ------------------------------------------------------------- */

/*
 * device_of -- the RDMA device that serves local (the address the client
 * reached the control port on): the listener's, or the one a cm_id bound
 * to that address gets, or the only one there is.
 */
static struct ibv_context *device_of(struct sverbs *v, const struct sockaddr_in *local)
{
	if (v->listen->verbs)
		return v->listen->verbs;
	if (local) {
		struct rdma_cm_id *tmp;
		if (rdma_create_id(NULL, &tmp, NULL, RDMA_PS_TCP) == 0) {
			struct sockaddr_in sin = *local;
			sin.sin_port = 0;
			struct ibv_context *ctx = NULL;
			if (rdma_bind_addr(tmp, (struct sockaddr *)&sin) == 0)
				ctx = tmp->verbs;
			rdma_destroy_id(tmp);
			if (ctx)
				return ctx; /* v->devs keeps it open */
		}
	}
	return v->ndevs == 1 ? v->devs[0] : NULL;
}

static int sv_client_add(struct dpath *d, struct client *c, const struct sockaddr_in *local,
			 uint8_t *addr, size_t cap, uint16_t *len, char *err, size_t errlen)
{
	struct sverbs *v = (struct sverbs *)d;
	char ip[INET_ADDRSTRLEN] = "?";
	if (local)
		inet_ntop(AF_INET, &local->sin_addr, ip, sizeof ip);
	if (cap < TDP_RC_ADDR_LEN) {
		snprintf(err, errlen, "no room for the rdma-rc address");
		return -EINVAL;
	}
	struct ibv_context *ctx = device_of(v, local);
	if (!ctx) {
		snprintf(err, errlen,
			 "no RDMA device serves %s, the address the client reached us on (%d "
			 "devices; give --listen an RDMA interface's address)",
			 ip, v->ndevs);
		return -ENODEV;
	}
	struct vclient *vc = calloc(1, sizeof *vc);
	if (!vc) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	vc->pd = ibv_alloc_pd(ctx);
	if (!vc->pd) {
		int e = errno ? errno : ENOMEM;
		snprintf(err, errlen, "ibv_alloc_pd on %s: %s", dev_name(ctx), strerror(e));
		free(vc);
		return -e;
	}
	struct tdp_rc_addr a;
	if (tdp_random(a.nonce, sizeof a.nonce) < 0) {
		snprintf(err, errlen, "no random bytes for the queue pair nonce");
		ibv_dealloc_pd(vc->pd);
		free(vc);
		return -EIO;
	}
	struct in_addr where = v->addr.s_addr != htonl(INADDR_ANY) || !local ? v->addr
									       : local->sin_addr;
	memcpy(a.ipv4, &where, 4);
	a.port = v->port;
	vc->client_id = c->id;
	tdp_mac_qp(v->s->secret, v->s->secret_len, c->id, a.nonce, vc->proof);
	tdp_rc_addr_put(addr, &a);
	*len = TDP_RC_ADDR_LEN;
	c->dp_priv = vc;
	slog(SLOG_DEBUG, "client %llu: protection domain on %s", (unsigned long long)c->id,
	     dev_name(ctx));
	return 0;
}

/* vqp_free -- disconnect (if needed) and destroy; its events must all be acknowledged */
static void vqp_free(struct vqp *q)
{
	if (q->vc) {
		for (struct vqp **p = &q->vc->qps; *p; p = &(*p)->next)
			if (*p == q) {
				*p = q->next;
				q->vc->nqps--;
				break;
			}
	}
	if (q->established)
		rdma_disconnect(q->id);
	if (q->id->qp)
		rdma_destroy_qp(q->id);
	if (q->cq)
		ibv_destroy_cq(q->cq);
	rdma_destroy_id(q->id);
	free(q);
}

static void sv_client_remove(struct dpath *d, struct client *c)
{
	struct vclient *vc = c->dp_priv;
	if (!vc)
		return;
	unsigned n = vc->nqps;
	while (vc->qps)
		vqp_free(vc->qps);
	/* client.c deregistered the leases first: the domain is empty now */
	int rc = ibv_dealloc_pd(vc->pd);
	if (rc)
		slog(SLOG_WARN, "client %llu: ibv_dealloc_pd: %s", (unsigned long long)vc->client_id,
		     strerror(rc));
	if (n)
		slog(SLOG_DEBUG, "client %llu: closed %u queue pair(s)",
		     (unsigned long long)vc->client_id, n);
	secure_zero(vc->proof, sizeof vc->proof);
	free(vc);
	c->dp_priv = NULL;
}

/* ---- registration -------------------------------------------------------- */

static int sv_reg(struct dpath *d, struct client *c, void *addr, uint64_t len, void **mr,
		  uint64_t *key, uint64_t *raddr, char *err, size_t errlen)
{
	struct vclient *vc = c->dp_priv;
	*mr = NULL;
	if (!vc) {
		snprintf(err, errlen, "the client has no protection domain");
		return -EINVAL;
	}
	struct ibv_mr *m = ibv_reg_mr(vc->pd, addr, len,
				      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
					      IBV_ACCESS_REMOTE_WRITE);
	if (!m) {
		int e = errno ? errno : ENOMEM;
		char size[32];
		tdp_size_text(len, size, sizeof size);
		snprintf(err, errlen, "cannot register %s for RDMA: ibv_reg_mr: %s%s", size,
			 strerror(e),
			 e == ENOMEM || e == EPERM ? " (registered memory is pinned: raise "
						     "RLIMIT_MEMLOCK, ulimit -l)"
						   : "");
		return -ENOMEM;
	}
	*mr = m;
	*key = m->rkey;
	*raddr = (uint64_t)(uintptr_t)addr;
	return 0;
}

static void sv_dereg(struct dpath *d, void *mr)
{
	if (mr) {
		int rc = ibv_dereg_mr(mr);
		if (rc)
			slog(SLOG_WARN, "ibv_dereg_mr: %s", strerror(rc));
	}
}

/* ---- rdma_cm events ------------------------------------------------------ */

/* find_client -- the authenticated, live client with this id, or NULL */
static struct client *find_client(struct server *s, uint64_t id)
{
	for (size_t i = 0; i < s->nclients; i++) {
		struct client *c = s->clients[i];
		if (c->id == id && !c->gone && c->state == C_READY && c->dp_priv)
			return c;
	}
	return NULL;
}

/* reject -- refuse a connect, saying why in its private data; the id is the caller's to destroy */
static void reject(struct sverbs *v, struct rdma_cm_id *id, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void reject(struct sverbs *v, struct rdma_cm_id *id, int code, const char *fmt, ...)
{
	char msg[256], peer[INET_ADDRSTRLEN] = "?";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct sockaddr *sa = rdma_get_peer_addr(id);
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, peer, sizeof peer);
	slog(SLOG_WARN, "queue pair from %s refused: %s", peer, msg);
	uint8_t pd[TDP_QP_REJECT_LEN];
	tdp_qp_reject_put(pd, code);
	if (rdma_reject(id, pd, sizeof pd) != 0)
		slog(SLOG_DEBUG, "rdma_reject: %s", strerror(errno));
	v->s->refusals += code == ENOSPC;
	v->s->errors += code != ENOSPC;
}

/*
 * on_connect_request -- check the proof, then a QP in the client's domain
 * and accept.  Returns an id for the caller to destroy once the event is
 * acknowledged (a refused or failed connect), or NULL.
 */
static struct rdma_cm_id *on_connect_request(struct sverbs *v, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	id->context = NULL; /* inherited from the listener: ours only once accepted */
	char why[200];
	uint64_t cid;
	uint8_t proof[TDP_MAC_LEN];
	if (tdp_qp_pdata_get(ev->param.conn.private_data, ev->param.conn.private_data_len, &cid,
			     proof, why, sizeof why) < 0) {
		reject(v, id, EPROTO, "malformed connect: %s", why);
		return id;
	}
	struct client *c = find_client(v->s, cid);
	if (!c) {
		reject(v, id, ENOENT, "no authenticated client %llu", (unsigned long long)cid);
		return id;
	}
	struct vclient *vc = c->dp_priv;
	if (!ct_equal(proof, vc->proof, TDP_MAC_LEN)) {
		reject(v, id, EACCES, "the proof for client %llu is wrong (not its secret or nonce)",
		       (unsigned long long)cid);
		return id;
	}
	if (vc->nqps >= QPS_PER_CLIENT) {
		reject(v, id, ENOSPC, "client %llu has %u queue pairs, the most allowed",
		       (unsigned long long)cid, vc->nqps);
		return id;
	}
	if (id->verbs != vc->pd->context) {
		reject(v, id, ENODEV,
		       "client %llu: the queue pair came through %s, its domain is on %s",
		       (unsigned long long)cid, dev_name(id->verbs), dev_name(vc->pd->context));
		return id;
	}
	struct vqp *q = calloc(1, sizeof *q);
	if (!q) {
		reject(v, id, ENOMEM, "out of memory");
		return id;
	}
	q->id = id;
	const char *what = "ibv_create_cq";
	q->cq = ibv_create_cq(id->verbs, 2, NULL, NULL, 0);
	if (!q->cq)
		goto fail;
	/* the server posts nothing: the smallest queues there are */
	struct ibv_qp_init_attr qa = {
		.send_cq = q->cq,
		.recv_cq = q->cq,
		.cap = {.max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
		.qp_type = IBV_QPT_RC,
	};
	what = "rdma_create_qp";
	if (rdma_create_qp(id, vc->pd, &qa) != 0)
		goto fail;
	struct ibv_device_attr da;
	int rd = 1;
	if (ibv_query_device(id->verbs, &da) == 0 && da.max_qp_rd_atom > 0)
		rd = da.max_qp_rd_atom;
	/* the event speaks for this side: its responder_resources is the client's initiator depth */
	if (ev->param.conn.responder_resources < rd)
		rd = ev->param.conn.responder_resources;
	struct rdma_conn_param cp = {
		.responder_resources = (uint8_t)rd, /* the client's RDMA READs in flight */
		.initiator_depth = 0,		    /* we read nothing */
		.rnr_retry_count = 7,
	};
	id->context = q;
	what = "rdma_accept";
	if (rdma_accept(id, &cp) != 0) {
		id->context = NULL;
		goto fail;
	}
	q->vc = vc;
	q->next = vc->qps;
	vc->qps = q;
	vc->nqps++;
	slog(SLOG_DEBUG, "client %llu: queue pair %u accepted (%d reads in flight)",
	     (unsigned long long)cid, id->qp->qp_num, rd);
	return NULL;
fail:;
	int e = errno ? errno : EIO;
	slog(SLOG_ERROR, "client %llu: %s: %s", (unsigned long long)cid, what, strerror(e));
	if (id->qp)
		rdma_destroy_qp(id);
	if (q->cq)
		ibv_destroy_cq(q->cq);
	free(q);
	uint8_t pd[TDP_QP_REJECT_LEN];
	tdp_qp_reject_put(pd, e);
	rdma_reject(id, pd, sizeof pd);
	return id;
}

/* sv_progress -- handle the listener's events; the data itself needs no help */
static bool sv_progress(struct dpath *d)
{
	struct sverbs *v = (struct sverbs *)d;
	struct rdma_cm_event *ev;
	for (int k = 0; k < 64 && rdma_get_cm_event(v->ec, &ev) == 0; k++) {
		struct rdma_cm_id *kill = NULL; /* a refused connect's id */
		struct vqp *q = NULL, *kill_q = NULL;
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST && ev->id && ev->id != v->listen)
			q = ev->id->context; /* an accepted queue pair's */
		switch (ev->event) {
		case RDMA_CM_EVENT_CONNECT_REQUEST: kill = on_connect_request(v, ev); break;
		case RDMA_CM_EVENT_ESTABLISHED:
			if (q)
				q->established = true;
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_UNREACHABLE:
		case RDMA_CM_EVENT_REJECTED:
			if (q) {
				slog(SLOG_DEBUG, "client %llu: queue pair %u: %s",
				     q->vc ? (unsigned long long)q->vc->client_id : 0ULL,
				     ev->id->qp ? ev->id->qp->qp_num : 0, rdma_event_str(ev->event));
				q->established = false; /* DISCONNECTED: nothing left to say */
				kill_q = q;
			}
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			slog(SLOG_ERROR, "verbs: the RDMA device %s was removed",
			     dev_name(ev->id ? ev->id->verbs : NULL));
			kill_q = q;
			break;
		default:
			slog(SLOG_DEBUG, "verbs: %s", rdma_event_str(ev->event));
			break;
		}
		rdma_ack_cm_event(ev); /* before any destroy: rdma_destroy_id waits for it */
		if (kill_q)
			vqp_free(kill_q);
		if (kill)
			rdma_destroy_id(kill);
	}
	return false;
}

static int sv_wait_fd(const struct dpath *d)
{
	return ((const struct sverbs *)d)->ec->fd;
}

static bool sv_trywait(struct dpath *d)
{
	return true; /* the event channel's fd says when there is work */
}

const struct dpath_ops dpath_verbs_ops = {
	.open = sv_open,
	.close = sv_close,
	.prov_name = sv_prov_name,
	.client_add = sv_client_add,
	.client_remove = sv_client_remove,
	.reg = sv_reg,
	.dereg = sv_dereg,
	.progress = sv_progress,
	.wait_fd = sv_wait_fd,
	.trywait = sv_trywait,
	.manual_progress = false,
};
