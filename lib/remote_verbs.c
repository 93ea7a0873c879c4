/*
 * remote_verbs.c -- the direct libibverbs backend of lib/remote.h (scheme
 * verbs://): the control connection of lib/remote_ctl.c, and one RC queue
 * pair per channel, connected with librdmacm to tieredd's rdma_cm listener
 * (server/verbs.c), moving bytes with one-sided RDMA READ and RDMA WRITE.
 *
 * connect: the handshake, whose WELCOME must name provider "rdma-rc" and
 * carry the listener's IPv4 address, its port and a nonce (lib/proto.h).
 * The private data that every queue pair's connect carries (client id and
 * HMAC proof over the nonce) is computed there once, so the secret is not
 * kept.  An "anchor" cm_id resolved to the server (address and route, so
 * that an unreachable listener fails the connect, not every channel) fixes
 * the RDMA device;
 * the connection's protection domain, in which reg() registers the
 * caller's buffers, is allocated on it.  The server checks the proof and
 * puts the queue pair in this client's own protection domain, where only
 * this client's leases are registered.
 *
 * A remote_chan owns an rdma_cm event channel, a cm_id, a completion
 * channel, a CQ and an RC QP, and is used by one thread only, so it has no
 * lock.  Every post takes an op from the channel's pool; the op's address
 * is the work request's wr_id, so a completion maps back to the caller's
 * ctx.  Writes are signalled selectively: one in SIG_EVERY, the one that
 * takes the last free op, and otherwise none; an RC queue pair completes
 * its work requests in order, so a signalled completion retires every
 * unsignalled write posted before it (the channel's fifo), and each gets its
 * own remote_cqe as remote.h wants.  When poll() is called with unsignalled
 * writes at the tail, it first posts the marker: a signalled zero-byte RDMA
 * WRITE whose completion retires them.  Reads are always signalled: a fault
 * waits for its own block, not for the prefetches posted after it.  An RC
 * RDMA WRITE completes when the responder has acknowledged it, that is once
 * the bytes are in the server's memory, which is the delivery remote.h asks
 * for; a write retired by a failed or flushed completion is reported failed
 * (never as delivered when it might not be).  Writes of up to the QP's
 * max_inline_data bytes go inline.
 *
 * Progress is the adapter's (or the kernel's, for rxe): nothing needs
 * driving.  poll() spins briefly, then arms the CQ (ibv_req_notify_cq) and
 * sleeps in poll(2) on the completion channel's fd and the cm event fd, in
 * slices, probing the control socket every PROBE_NS: a dead server ends the
 * wait with -ECONNRESET for everything in flight, as in remote_fabric.c.
 *
 * Must never touch tiered (evictable) memory: it runs on the runtime's own
 * threads, allocates with malloc (RT_INTERNAL) and moves only the buffers
 * its caller registered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "internal.h"
#include "proto.h"
#include "remote.h"
#include "remote_ctl.h"
#include "sha256.h"

#define RESOLVE_MS 2000	     /* rdma_resolve_addr and rdma_resolve_route */
#define QP_CONNECT_MS 5000   /* rdma_connect to ESTABLISHED */
#define PROBE_NS 100000000LL /* look at the control socket every 100 ms while waiting */
#define SPIN_NS 50000LL	     /* poll() spins this long before it sleeps */
#define WAIT_SLICE_MS 20     /* longest sleep before probing again */
#define SQ_DEPTH 256	     /* work requests in flight per channel, at most */
#define INLINE_WANT 256	     /* asked of the QP; the device may give less */
#define RD_ATOM_MAX 16	     /* RDMA READs in flight per QP, at most */
#define CQ_BATCH 16
#define SIG_EVERY 16	     /* at least one write in this many is signalled */

struct vb_op {
	void *ctx;	     /* the caller's */
	struct vb_op *next;  /* free list */
	bool busy;	     /* posted, completion not yet seen */
	bool abandoned;	     /* reported failed; a late completion is dropped */
};

/* A completion retired but not yet handed to the caller. */
struct vb_done {
	void *ctx;
	int status;
};

struct remote_conn {
	struct remote_ctl ctl; /* control connection; ctl.name names the server */
	struct sockaddr_in dst; /* the server's rdma_cm listener */
	uint8_t pdata[TDP_QP_PDATA_LEN]; /* every QP's connect: client id and proof */
	struct rdma_event_channel *ec;	 /* the anchor's */
	struct rdma_cm_id *anchor;	 /* resolved to dst: holds the device */
	struct ibv_pd *pd;		 /* reg() and every channel's QP */
	atomic_int nchan;
};

struct remote_chan {
	struct remote_conn *c;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id; /* its qp is the channel's */
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	uint32_t max_inline;
	uint32_t max_msg;
	struct vb_op *ops, *free;
	size_t nops, inflight;
	struct vb_op *marker;	/* ops[nops - 1], never free: poll()'s zero-byte write */
	struct vb_op **fifo;	/* posted ops in posting order (ring of nops) */
	size_t fifo_head, fifo_len;
	struct vb_done *done;	/* retired, not yet reported (ring of nops) */
	size_t done_head, done_len;
	unsigned unsig;		/* unsignalled writes since the last signalled request */
	uint64_t last_raddr;	/* where the marker writes its zero bytes */
	uint32_t last_rkey;
	bool connected; /* rdma_connect reached ESTABLISHED */
	bool broken;	/* QP in error or disconnected: posts fail, in-flight ops flush */
	bool armed;	/* ibv_req_notify_cq done, its event not yet taken */
	int64_t last_probe;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- rdma_cm events ------------------------------------------------------ */

struct cm_result {
	enum rdma_cm_event_type event;
	int status;	  /* the event's status */
	int reject_code;  /* REJECTED by tieredd: its errno, else 0 */
};

/*
 * cm_wait -- the next event of ec within timeout_ms, acknowledged at once
 * (only what the caller needs is kept).  0, -ETIMEDOUT, or a negative errno.
 */
static int cm_wait(struct rdma_event_channel *ec, int timeout_ms, struct cm_result *r)
{
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	for (;;) {
		struct rdma_cm_event *ev;
		if (rdma_get_cm_event(ec, &ev) == 0) {
			r->event = ev->event;
			r->status = ev->status;
			r->reject_code = 0;
			if (ev->event == RDMA_CM_EVENT_REJECTED)
				r->reject_code = tdp_qp_reject_get(ev->param.conn.private_data,
								   ev->param.conn.private_data_len);
			rdma_ack_cm_event(ev);
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		int64_t left = (deadline - now_ns()) / 1000000;
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = ec->fd, .events = POLLIN};
		poll(&pfd, 1, (int)left);
	}
}

/* A nonblocking event channel: cm_wait and poll() never block in the library. */
static struct rdma_event_channel *event_channel(void)
{
	struct rdma_event_channel *ec = rdma_create_event_channel();
	if (!ec)
		return NULL;
	int fl = fcntl(ec->fd, F_GETFL);
	if (fl < 0 || fcntl(ec->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		rdma_destroy_event_channel(ec);
		return NULL;
	}
	return ec;
}

/*
 * resolve -- id (on ec) resolved to dst: the address, and with route also
 * the route.  0 or a negative errno with what failed in why.
 */
static int resolve(struct rdma_event_channel *ec, struct rdma_cm_id *id,
		   struct sockaddr_in *dst, bool route, char *why, size_t whylen)
{
	struct cm_result r;
	int rc = rdma_resolve_addr(id, NULL, (struct sockaddr *)dst, RESOLVE_MS) ? -errno : 0;
	if (rc == 0)
		rc = cm_wait(ec, RESOLVE_MS + 1000, &r);
	if (rc == 0 && r.event != RDMA_CM_EVENT_ADDR_RESOLVED)
		rc = r.status < 0 ? r.status : -EHOSTUNREACH;
	if (rc < 0) {
		snprintf(why, whylen, "rdma_resolve_addr: %s%s", strerror(-rc),
			 rc == -ENODEV || rc == -EADDRNOTAVAIL || rc == -EHOSTUNREACH
				 ? " (is there an RDMA device on the route to the server? "
				   "ibv_devices lists them)"
				 : "");
		return rc;
	}
	if (!route)
		return 0;
	rc = rdma_resolve_route(id, RESOLVE_MS) ? -errno : 0;
	if (rc == 0)
		rc = cm_wait(ec, RESOLVE_MS + 1000, &r);
	if (rc == 0 && r.event != RDMA_CM_EVENT_ROUTE_RESOLVED)
		rc = r.status < 0 ? r.status : -ENETUNREACH;
	if (rc < 0)
		snprintf(why, whylen, "rdma_resolve_route: %s", strerror(-rc));
	return rc;
}

/* ---- connect ------------------------------------------------------------- */

static void conn_free(struct remote_conn *c)
{
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->anchor)
		rdma_destroy_id(c->anchor);
	if (c->ec)
		rdma_destroy_event_channel(c->ec);
	rctl_close(&c->ctl);
	free(c);
}

/* vb_connect -- control connection, handshake, then the device and protection domain */
static int vb_connect(const struct remote_target *t, const void *secret, size_t secret_len,
		      struct remote_conn **out, char *err, size_t errlen)
{
	char why[300];
	*out = NULL;
	struct remote_conn *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "remote: out of memory");
		return -ENOMEM;
	}
	struct tdp_msg w;
	int rc = rctl_open(&c->ctl, t, secret, secret_len, &w, err, errlen);
	if (rc < 0) {
		free(c);
		return rc;
	}
	rc = rctl_check_provider(&c->ctl, w.u.welcome.provider, TDP_RC_PROVIDER, err, errlen);
	if (rc < 0)
		goto fail;
	struct tdp_rc_addr a;
	rc = tdp_rc_addr_get(w.u.welcome.addr, w.u.welcome.addr_len, &a, why, sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s: WELCOME: %s", c->ctl.name, why);
		goto fail;
	}
	c->dst.sin_family = AF_INET;
	memcpy(&c->dst.sin_addr, a.ipv4, 4);
	c->dst.sin_port = htons(a.port);
	uint8_t proof[TDP_MAC_LEN];
	tdp_mac_qp(secret, secret_len, c->ctl.client_id, a.nonce, proof);
	tdp_qp_pdata_put(c->pdata, c->ctl.client_id, proof);
	secure_zero(proof, sizeof proof);

	char dst[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &c->dst.sin_addr, dst, sizeof dst);
	c->ec = event_channel();
	if (!c->ec || rdma_create_id(c->ec, &c->anchor, NULL, RDMA_PS_TCP) != 0) {
		rc = -errno;
		snprintf(err, errlen,
			 "%s: librdmacm: %s: %s (is the rdma_ucm module loaded? /dev/infiniband/"
			 "rdma_cm must be there)",
			 c->ctl.name, c->ec ? "rdma_create_id" : "rdma_create_event_channel",
			 strerror(-rc));
		c->anchor = NULL;
		goto fail;
	}
	/* the route too: an address rdma_cm cannot reach (loopback) fails here, once */
	rc = resolve(c->ec, c->anchor, &c->dst, true, why, sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s: the server's rdma_cm listener %s:%u: %s%s", c->ctl.name,
			 dst, a.port, why,
			 (ntohl(c->dst.sin_addr.s_addr) >> 24) == 127
				 ? " (a loopback address: reach the server by the address of its RDMA "
				   "interface)"
				 : "");
		goto fail;
	}
	c->pd = ibv_alloc_pd(c->anchor->verbs);
	if (!c->pd) {
		rc = -(errno ? errno : ENOMEM);
		snprintf(err, errlen, "%s: ibv_alloc_pd on %s: %s", c->ctl.name,
			 ibv_get_device_name(c->anchor->verbs->device), strerror(-rc));
		goto fail;
	}
	tlog(LOG_INFO,
	     "%s: connected as client %llu (capacity %llu, limit %llu), RDMA device %s, "
	     "rdma_cm %s:%u",
	     c->ctl.name, (unsigned long long)c->ctl.client_id,
	     (unsigned long long)c->ctl.capacity, (unsigned long long)c->ctl.client_limit,
	     ibv_get_device_name(c->anchor->verbs->device), dst, a.port);
	*out = c;
	return 0;
fail:
	conn_free(c);
	return rc;
}

/* ---- control operations: lib/remote_ctl.c -------------------------------- */

static int vb_lease(struct remote_conn *c, uint64_t bytes, struct remote_lease *out, char *err,
		    size_t errlen)
{
	return rctl_lease(&c->ctl, bytes, out, err, errlen);
}

static int vb_release(struct remote_conn *c, uint64_t lease_id)
{
	return rctl_release(&c->ctl, lease_id);
}

static int vb_report(struct remote_conn *c, uint64_t bytes_written, uint64_t bytes_read)
{
	return rctl_report(&c->ctl, bytes_written, bytes_read);
}

static int vb_server_stats(struct remote_conn *c, struct remote_server_stats *out)
{
	return rctl_server_stats(&c->ctl, out);
}

static int vb_check(struct remote_conn *c)
{
	return rctl_check(&c->ctl);
}

/* ---- registration -------------------------------------------------------- */

/*
 * vb_reg -- a local buffer in the connection's protection domain; desc and
 * handle are the MR.  The buffer (a runtime thread's staging, mmap'ed) is
 * marked MADV_DONTFORK first: a forked child has no remote tier of its own
 * and never uses it, and the kernel would otherwise copy every pinned page
 * into each child at fork().
 */
static int vb_reg(struct remote_conn *c, void *buf, size_t len, void **desc, void **handle)
{
	long pg = sysconf(_SC_PAGESIZE);
	if (pg > 0 && (uintptr_t)buf % (uintptr_t)pg == 0 && len % (size_t)pg == 0)
		(void)madvise(buf, len, MADV_DONTFORK);
	struct ibv_mr *mr = ibv_reg_mr(c->pd, buf, len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr) {
		int e = errno ? errno : ENOMEM;
		tlog(LOG_WARN, "%s: cannot register %zu bytes at %p: ibv_reg_mr: %s%s", c->ctl.name,
		     len, buf, strerror(e),
		     e == ENOMEM || e == EPERM ? " (registered memory is pinned: is RLIMIT_MEMLOCK, "
						 "ulimit -l, large enough?)"
					       : "");
		return -e;
	}
	*desc = mr;
	*handle = mr;
	return 0;
}

static void vb_dereg(void *handle)
{
	if (handle)
		ibv_dereg_mr(handle);
}

/* ---- channels ------------------------------------------------------------ */

static void chan_free(struct remote_chan *ch)
{
	if (ch->id) {
		if (ch->connected)
			rdma_disconnect(ch->id);
		if (ch->id->qp)
			rdma_destroy_qp(ch->id);
	}
	if (ch->cq)
		ibv_destroy_cq(ch->cq);
	if (ch->cc)
		ibv_destroy_comp_channel(ch->cc);
	if (ch->id)
		rdma_destroy_id(ch->id);
	if (ch->ec)
		rdma_destroy_event_channel(ch->ec);
	free(ch->ops);
	free(ch->fifo);
	free(ch->done);
	free(ch);
}

/* create_qp -- an RC QP on ch's CQ in the connection's PD, with as much inline room as given */
static int create_qp(struct remote_chan *ch, uint32_t depth)
{
	static const uint32_t inl[] = {INLINE_WANT, 64, 0};
	int rc = -EINVAL;
	for (size_t i = 0; i < sizeof inl / sizeof inl[0]; i++) {
		struct ibv_qp_init_attr qa = {
			.send_cq = ch->cq,
			.recv_cq = ch->cq,
			.cap = {.max_send_wr = depth,
				.max_recv_wr = 1,
				.max_send_sge = 1,
				.max_recv_sge = 1,
				.max_inline_data = inl[i]},
			.qp_type = IBV_QPT_RC,
			.sq_sig_all = 0,
		};
		if (rdma_create_qp(ch->id, ch->c->pd, &qa) == 0) {
			ch->max_inline = qa.cap.max_inline_data;
			return 0;
		}
		rc = -errno;
	}
	return rc;
}

/*
 * vb_chan_open -- resolve, a CQ with a completion channel, an RC QP, and
 * rdma_connect with the proof; ESTABLISHED within QP_CONNECT_MS.
 */
static int vb_chan_open(struct remote_conn *c, struct remote_chan **out)
{
	char why[300] = "";
	*out = NULL;
	if (atomic_load(&c->ctl.dead))
		return -ECONNRESET;
	struct remote_chan *ch = calloc(1, sizeof *ch);
	if (!ch)
		return -ENOMEM;
	ch->c = c;
	int rc;
	const char *what = "rdma_create_event_channel";
	ch->ec = event_channel();
	if (!ch->ec)
		goto sys;
	what = "rdma_create_id";
	if (rdma_create_id(ch->ec, &ch->id, ch, RDMA_PS_TCP) != 0) {
		ch->id = NULL;
		goto sys;
	}
	rc = resolve(ch->ec, ch->id, &c->dst, true, why, sizeof why);
	if (rc < 0)
		goto fail;
	if (ch->id->verbs != c->pd->context) {
		snprintf(why, sizeof why, "the route to the server changed RDMA device (%s, was %s)",
			 ibv_get_device_name(ch->id->verbs->device),
			 ibv_get_device_name(c->pd->context->device));
		rc = -ENODEV;
		goto fail;
	}
	struct ibv_device_attr da;
	what = "ibv_query_device";
	if ((rc = ibv_query_device(ch->id->verbs, &da)) != 0) {
		errno = rc;
		goto sys;
	}
	struct ibv_port_attr pa;
	ch->max_msg = 1U << 30;
	if (ibv_query_port(ch->id->verbs, ch->id->port_num, &pa) == 0 && pa.max_msg_sz)
		ch->max_msg = pa.max_msg_sz;
	uint32_t depth = SQ_DEPTH;
	if (da.max_qp_wr > 0 && (uint32_t)da.max_qp_wr < depth)
		depth = (uint32_t)da.max_qp_wr;
	if (da.max_cqe > 0 && (uint32_t)da.max_cqe < depth + 1)
		depth = (uint32_t)da.max_cqe - 1;

	if (depth < 2) {
		snprintf(why, sizeof why, "the device allows %u work requests per queue pair", depth);
		rc = -ENODEV;
		goto fail;
	}
	ch->nops = depth;
	ch->ops = calloc(ch->nops, sizeof *ch->ops);
	ch->fifo = calloc(ch->nops, sizeof *ch->fifo);
	ch->done = calloc(ch->nops, sizeof *ch->done);
	what = "calloc";
	if (!ch->ops || !ch->fifo || !ch->done) {
		errno = ENOMEM;
		goto sys;
	}
	/* the last op is the marker's; the others are the pool */
	for (size_t i = 0; i + 1 < ch->nops; i++)
		ch->ops[i].next = i + 2 < ch->nops ? &ch->ops[i + 1] : NULL;
	ch->free = &ch->ops[0];
	ch->marker = &ch->ops[ch->nops - 1];

	what = "ibv_create_comp_channel";
	ch->cc = ibv_create_comp_channel(ch->id->verbs);
	if (!ch->cc)
		goto sys;
	int fl = fcntl(ch->cc->fd, F_GETFL);
	what = "fcntl";
	if (fl < 0 || fcntl(ch->cc->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto sys;
	what = "ibv_create_cq";
	ch->cq = ibv_create_cq(ch->id->verbs, (int)depth + 1, ch, ch->cc, 0);
	if (!ch->cq)
		goto sys;
	what = "rdma_create_qp";
	rc = create_qp(ch, depth);
	if (rc < 0) {
		errno = -rc;
		goto sys;
	}

	struct rdma_conn_param cp = {
		.private_data = c->pdata,
		.private_data_len = sizeof c->pdata,
		.responder_resources = 0, /* nobody reads from us */
		.initiator_depth = (uint8_t)(da.max_qp_init_rd_atom < RD_ATOM_MAX
						     ? da.max_qp_init_rd_atom
						     : RD_ATOM_MAX),
		.retry_count = 7,
		.rnr_retry_count = 7,
	};
	what = "rdma_connect";
	if (rdma_connect(ch->id, &cp) != 0)
		goto sys;
	struct cm_result r;
	rc = cm_wait(ch->ec, QP_CONNECT_MS, &r);
	if (rc < 0) {
		snprintf(why, sizeof why, "rdma_connect: %s", strerror(-rc));
		goto fail;
	}
	if (r.event == RDMA_CM_EVENT_REJECTED) {
		int code = r.reject_code;
		snprintf(why, sizeof why, "the server refused the queue pair: %s",
			 code == EACCES	  ? "its proof of the secret is wrong"
			 : code == ENOENT ? "no authenticated client has our id"
			 : code == ENOSPC ? "this client has as many queue pairs as it may"
			 : code		  ? strerror(code)
					  : "rejected by the connection manager (no tieredd "
					    "listening there?)");
		rc = code == EACCES ? -EACCES : code ? -code : -ECONNREFUSED;
		goto fail;
	}
	if (r.event != RDMA_CM_EVENT_ESTABLISHED) {
		snprintf(why, sizeof why, "rdma_connect: %s (status %d)", rdma_event_str(r.event),
			 r.status);
		rc = -ECONNREFUSED;
		goto fail;
	}
	ch->connected = true;
	ch->last_probe = now_ns();
	atomic_fetch_add(&c->nchan, 1);
	*out = ch;
	return 0;
sys:
	rc = -(errno ? errno : EIO);
	snprintf(why, sizeof why, "%s: %s", what, strerror(-rc));
fail:
	tlog(LOG_WARN, "%s: cannot open a channel: %s", c->ctl.name, why);
	chan_free(ch);
	return rc;
}

static void vb_chan_close(struct remote_chan *ch)
{
	if (!ch)
		return;
	atomic_fetch_sub(&ch->c->nchan, 1);
	chan_free(ch);
}

/* ---- data path ----------------------------------------------------------- */

/* Every so often, and at once if known, find out whether the server is gone. */
static bool chan_dead(struct remote_chan *ch, int64_t now)
{
	if (atomic_load(&ch->c->ctl.dead))
		return true;
	if (now - ch->last_probe < PROBE_NS)
		return false;
	ch->last_probe = now;
	return rctl_probe_dead(&ch->c->ctl);
}

static void fifo_push(struct remote_chan *ch, struct vb_op *op)
{
	ch->fifo[(ch->fifo_head + ch->fifo_len) % ch->nops] = op;
	ch->fifo_len++;
}

static int vb_post(struct remote_chan *ch, const struct remote_io *io, bool write)
{
	if (atomic_load(&ch->c->ctl.dead) || ch->broken)
		return -ECONNRESET;
	if (io->len == 0)
		return -EINVAL;
	if (io->len > ch->max_msg)
		return -EMSGSIZE;
	if (io->key > UINT32_MAX || !io->desc)
		return -EINVAL;
	struct vb_op *op = ch->free;
	if (!op)
		return chan_dead(ch, now_ns()) ? -ECONNRESET : -EAGAIN;
	const struct ibv_mr *mr = io->desc;
	struct ibv_sge sge = {
		.addr = (uintptr_t)io->buf, .length = (uint32_t)io->len, .lkey = mr->lkey};
	/* unsignalled only where a later signalled request is sure to follow */
	bool sig = !write || ch->unsig + 1 >= SIG_EVERY || !op->next;
	struct ibv_send_wr wr = {
		.wr_id = (uintptr_t)op,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ,
		.send_flags = sig ? IBV_SEND_SIGNALED : 0,
	};
	if (write && io->len <= ch->max_inline)
		wr.send_flags |= IBV_SEND_INLINE;
	wr.wr.rdma.remote_addr = io->raddr;
	wr.wr.rdma.rkey = (uint32_t)io->key;
	struct ibv_send_wr *bad = NULL;
	int rc = ibv_post_send(ch->id->qp, &wr, &bad);
	if (rc < 0) /* a provider that returns -1 and sets errno */
		rc = errno ? errno : EIO;
	if (rc == 0) {
		ch->free = op->next;
		op->ctx = io->ctx;
		op->busy = true;
		op->abandoned = false;
		ch->inflight++;
		fifo_push(ch, op);
		ch->unsig = sig ? 0 : ch->unsig + 1;
		ch->last_raddr = io->raddr;
		ch->last_rkey = (uint32_t)io->key;
		return 0;
	}
	if (rc == ENOMEM) /* the send queue is full */
		return chan_dead(ch, now_ns()) ? -ECONNRESET : -EAGAIN;
	tlog(LOG_DEBUG, "%s: ibv_post_send (%s): %s", ch->c->ctl.name,
	     write ? "RDMA WRITE" : "RDMA READ", strerror(rc));
	return -rc;
}

static int vb_post_read(struct remote_chan *ch, const struct remote_io *io)
{
	return vb_post(ch, io, false);
}

static int vb_post_write(struct remote_chan *ch, const struct remote_io *io)
{
	return vb_post(ch, io, true);
}

/* A work completion's status as a negative errno. */
static int wc_errno(enum ibv_wc_status st)
{
	switch (st) {
	case IBV_WC_SUCCESS: return 0;
	case IBV_WC_WR_FLUSH_ERR: return -ECONNRESET;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_MW_BIND_ERR: return -EACCES;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR: return -ETIMEDOUT;
	case IBV_WC_LOC_LEN_ERR:
	case IBV_WC_REM_INV_REQ_ERR: return -EINVAL;
	default: return -EIO;
	}
}

/*
 * Retire an op the device has finished with: back to the pool (the marker
 * is not in it), and its completion queued for the caller unless it was
 * already reported failed.
 */
static void op_done(struct remote_chan *ch, struct vb_op *op, int status)
{
	bool report = !op->abandoned && op != ch->marker;
	op->busy = false;
	op->abandoned = false;
	if (op != ch->marker) {
		op->next = ch->free;
		ch->free = op;
	}
	if (report) {
		ch->inflight--;
		ch->done[(ch->done_head + ch->done_len) % ch->nops] =
			(struct vb_done){.ctx = op->ctx, .status = status};
		ch->done_len++;
	}
}

/* Hand up to max retired completions to the caller. */
static int drain(struct remote_chan *ch, struct remote_cqe *cqe, int max)
{
	int k = 0;
	while (ch->done_len && k < max) {
		struct vb_done *d = &ch->done[ch->done_head];
		cqe[k].ctx = d->ctx;
		cqe[k].status = d->status;
		k++;
		ch->done_head = (ch->done_head + 1) % ch->nops;
		ch->done_len--;
	}
	return k;
}

/*
 * post_marker -- unsignalled writes are at the tail: post a signalled
 * zero-byte RDMA WRITE (to the last write's lease) whose completion retires
 * them.  A failure breaks the channel: nothing else would retire them.
 */
static void post_marker(struct remote_chan *ch)
{
	if (!ch->unsig || ch->marker->busy || ch->broken)
		return;
	struct ibv_send_wr wr = {
		.wr_id = (uintptr_t)ch->marker,
		.sg_list = NULL,
		.num_sge = 0,
		.opcode = IBV_WR_RDMA_WRITE,
		.send_flags = IBV_SEND_SIGNALED,
	};
	wr.wr.rdma.remote_addr = ch->last_raddr;
	wr.wr.rdma.rkey = ch->last_rkey;
	struct ibv_send_wr *bad = NULL;
	int rc = ibv_post_send(ch->id->qp, &wr, &bad);
	if (rc != 0) {
		tlog(LOG_WARN, "%s: ibv_post_send (completion marker): %s", ch->c->ctl.name,
		     strerror(rc < 0 ? errno : rc));
		ch->broken = true;
		return;
	}
	ch->marker->busy = true;
	ch->marker->abandoned = false;
	fifo_push(ch, ch->marker);
	ch->unsig = 0;
}

/*
 * reap -- completions from the CQ (at most CQ_BATCH), each retiring its op
 * and every unsignalled op posted before it, then as many retired ones as
 * fit into cqe; the count, or a negative errno when the CQ failed.
 */
static int reap(struct remote_chan *ch, struct remote_cqe *cqe, int max)
{
	/*
	 * Only with nothing retired pending: then at most the ops in flight
	 * (fewer than nops) are retired here, and the done ring cannot overflow
	 * however the caller interleaves posts with polls of a few at a time.
	 */
	struct ibv_wc wc[CQ_BATCH];
	int n = ch->done_len ? 0 : ibv_poll_cq(ch->cq, CQ_BATCH, wc);
	if (n < 0) {
		tlog(LOG_WARN, "%s: ibv_poll_cq failed", ch->c->ctl.name);
		return -EIO;
	}
	for (int i = 0; i < n; i++) {
		struct vb_op *op = (struct vb_op *)(uintptr_t)wc[i].wr_id;
		if (!op || op < ch->ops || op >= ch->ops + ch->nops || !op->busy)
			continue; /* not ours (cannot happen): never trust it */
		int st = wc_errno(wc[i].status);
		if (st < 0) {
			ch->broken = true; /* an RC QP in error flushes everything after */
			tlog(wc[i].status == IBV_WC_WR_FLUSH_ERR ? LOG_DEBUG : LOG_WARN,
			     "%s: transfer failed: %s (vendor error 0x%x)", ch->c->ctl.name,
			     ibv_wc_status_str(wc[i].status), wc[i].vendor_err);
		}
		/* in order: what was posted before op is done, delivered only if op was */
		while (ch->fifo_len) {
			struct vb_op *o = ch->fifo[ch->fifo_head];
			ch->fifo_head = (ch->fifo_head + 1) % ch->nops;
			ch->fifo_len--;
			if (o == op)
				break;
			if (o->busy)
				op_done(ch, o, st == 0 && !ch->broken ? 0 : -ECONNRESET);
		}
		op_done(ch, op, st);
	}
	return drain(ch, cqe, max);
}

/*
 * The server is gone: report every transfer in flight as failed.  The ops
 * stay out of the pool until the device gives them back (flushed, when the
 * QP is destroyed or in error), so a late completion is never confused
 * with a new transfer.
 */
static int fail_inflight(struct remote_chan *ch, struct remote_cqe *cqe, int max)
{
	int k = 0;
	ch->broken = true;
	for (size_t i = 0; i < ch->nops && k < max; i++) {
		struct vb_op *op = &ch->ops[i];
		if (!op->busy || op->abandoned || op == ch->marker)
			continue;
		op->abandoned = true;
		ch->inflight--;
		cqe[k].ctx = op->ctx;
		cqe[k].status = -ECONNRESET;
		k++;
	}
	return k;
}

/* cm_events -- take the channel's cm events; a disconnect breaks the channel */
static void cm_events(struct remote_chan *ch)
{
	struct rdma_cm_event *ev;
	while (rdma_get_cm_event(ch->ec, &ev) == 0) {
		enum rdma_cm_event_type e = ev->event;
		rdma_ack_cm_event(ev);
		if (e == RDMA_CM_EVENT_DISCONNECTED || e == RDMA_CM_EVENT_DEVICE_REMOVAL) {
			tlog(LOG_DEBUG, "%s: queue pair: %s", ch->c->ctl.name, rdma_event_str(e));
			ch->broken = true;
			if (e == RDMA_CM_EVENT_DISCONNECTED)
				ch->connected = false;
		}
	}
}

/*
 * vb_poll -- reap completions.  While waiting: spin for SPIN_NS, then arm
 * the CQ, reap once more (a completion between the last reap and the arm
 * raises no event), and sleep on the completion channel and the cm event
 * channel in slices of WAIT_SLICE_MS, probing the control socket.
 */
static int vb_poll(struct remote_chan *ch, struct remote_cqe *cqe, int max, int timeout_ms)
{
	if (max <= 0)
		return -EINVAL;
	int64_t deadline = -1, spin_end = -1;
	post_marker(ch);
	for (;;) {
		int n = reap(ch, cqe, max);
		if (n != 0)
			return n;
		if (ch->inflight == 0)
			return 0; /* nothing can complete */
		int64_t now = now_ns();
		if (chan_dead(ch, now))
			return fail_inflight(ch, cqe, max);
		if (timeout_ms == 0)
			return 0;
		if (spin_end < 0) {
			spin_end = now + SPIN_NS;
			if (timeout_ms > 0)
				deadline = now + (int64_t)timeout_ms * 1000000;
		}
		if (deadline >= 0 && now >= deadline)
			return 0;
		if (now < spin_end)
			continue;
		if (!ch->armed) {
			if (ibv_req_notify_cq(ch->cq, 0) != 0)
				return -EIO;
			ch->armed = true;
			continue; /* reap again: see the comment */
		}
		int64_t left = deadline >= 0 ? (deadline - now) / 1000000 + 1 : WAIT_SLICE_MS;
		struct pollfd pfd[2] = {{.fd = ch->cc->fd, .events = POLLIN},
					{.fd = ch->ec->fd, .events = POLLIN}};
		poll(pfd, 2, left < WAIT_SLICE_MS ? (int)left : WAIT_SLICE_MS);
		if (pfd[0].revents) {
			struct ibv_cq *cq;
			void *cctx;
			if (ibv_get_cq_event(ch->cc, &cq, &cctx) == 0) {
				ibv_ack_cq_events(cq, 1);
				ch->armed = false;
			}
		}
		if (pfd[1].revents) {
			cm_events(ch);
			if (ch->broken && !ch->connected) {
				/* disconnected: the QP flushes what it had; give it a moment */
				n = reap(ch, cqe, max);
				return n != 0 ? n : fail_inflight(ch, cqe, max);
			}
		}
	}
}

/* vb_close -- the server releases our leases when the connection ends */
static void vb_close(struct remote_conn *c)
{
	if (!c)
		return;
	int n = atomic_load(&c->nchan);
	if (n > 0) {
		/* the PD still has QPs and MRs: keep the verbs objects, drop the rest */
		tlog(LOG_WARN, "%s: closed with %d channel(s) still open: leaking them", c->ctl.name,
		     n);
		rctl_close(&c->ctl);
		return;
	}
	conn_free(c);
}

static const char *vb_name_of(struct remote_conn *c)
{
	return c->ctl.name;
}

/* vb_ctl -- the embedded control connection (lib/remote_ctl.h) */
static struct remote_ctl *vb_ctl(struct remote_conn *c)
{
	return &c->ctl;
}

const struct remote_ops remote_verbs_ops = {
	.name = "verbs",
	.connect = vb_connect,
	.lease = vb_lease,
	.release = vb_release,
	.report = vb_report,
	.server_stats = vb_server_stats,
	.check = vb_check,
	.reg = vb_reg,
	.dereg = vb_dereg,
	.chan_open = vb_chan_open,
	.chan_close = vb_chan_close,
	.post_read = vb_post_read,
	.post_write = vb_post_write,
	.poll = vb_poll,
	.close = vb_close,
	.name_of = vb_name_of,
	.ctl = vb_ctl,
};
