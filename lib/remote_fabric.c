/*
 * remote_fabric.c -- the libfabric backend of lib/remote.h: one
 * authenticated control connection (TCP, lib/proto.c) per server, and
 * one-sided RMA over FI_EP_RDM endpoints (tcp;ofi_rxm, shm, verbs;ofi_rxm).
 *
 * A remote_conn owns the control connection (lib/remote_ctl.c, which
 * serialises its requests), the fabric and the domain.  A remote_chan owns an endpoint, a
 * completion queue and an address vector holding the server's address, and
 * is used by one thread only, so it has no lock.  Progress is manual: a
 * channel's transfers advance only while its thread calls poll() (or posts).
 *
 * Each posted transfer takes an op from the channel's pool; the op's
 * fi_context2 is the libfabric context, so completions map back to the
 * caller's ctx and the backend knows what is in flight.  When the control
 * connection dies (server killed, or it dropped us), poll() completes every
 * op in flight with -ECONNRESET instead of waiting for a provider that may
 * never report them: a dead server must never hang its client.
 *
 * Must never touch tiered (evictable) memory: it runs on the runtime's own
 * threads, allocates with malloc (RT_INTERNAL) and moves only the buffers
 * its caller registered.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "internal.h"
#include "proto.h"
#include "remote.h"
#include "remote_ctl.h"

#define FAB_VERSION FI_VERSION(1, 17)
#define PROBE_NS 100000000LL /* look at the control socket every 100 ms while waiting */
#define SPIN_NS 50000LL	     /* poll() spins this long before it sleeps */
#define SLEEP_NS 20000	     /* the sleep between progress calls without a wait fd */
#define DRAIN_NS 200000000LL /* a closing channel waits this long for its transfers */
#define WAIT_SLICE_MS 20     /* longest block on a wait fd before probing again */
#define CQ_BATCH 16
#define OPS_MAX 4096

struct fab_op {
	struct fi_context2 fctx; /* first: the provider hands back its address */
	void *ctx;		 /* the caller's */
	struct fab_op *next;	 /* free list */
	bool busy;		 /* posted, completion not yet seen */
	bool abandoned;		 /* reported failed; a late completion is dropped */
	bool write;		 /* an RMA write (else a read) */
};

struct remote_conn {
	struct remote_ctl ctl; /* control connection; ctl.name names the server */
	atomic_int nchan;
	atomic_uint_fast64_t next_key; /* requested keys of local MRs */
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	bool mr_local; /* local buffers need registration (FI_MR_LOCAL) */
	uint8_t addr[TDP_ADDR_MAX + 1]; /* server endpoint, NUL-terminated for FI_ADDR_STR */
	size_t addrlen;
	struct remote_conn *kept_next; /* on g_kept.conns once kept (fab_close) */
};

/*
 * Channels that could not be closed safely (chan_free) and the connections
 * they hold (fab_close): kept for the life of the process, and listed here
 * so that they are accounted for, not lost.
 */
static struct {
	pthread_mutex_t lock;
	struct remote_chan *chans;
	struct remote_conn *conns;
	size_t nchans, nconns;
} g_kept = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct remote_chan {
	struct remote_conn *c;
	struct fid_ep *ep;
	struct fid_cq *cq;
	struct fid_av *av;
	fi_addr_t server;
	int waitfd; /* the CQ's wait fd, or -1 */
	struct fab_op *ops, *free;
	size_t nops, inflight;
	int64_t last_probe;
	struct remote_chan *kept_next; /* on g_kept.chans once kept (chan_free) */
	bool waiting; /* a chan_close_try found transfers held: counted in g_chans_kept */
};

static void shm_note(struct remote_chan *ch);

/* A registration when none is needed (no FI_MR_LOCAL): a non-NULL handle. */
static char no_mr;

static const struct {
	const char *scheme, *prov;
} provs[] = {{"tcp", "tcp;ofi_rxm"}, {"shm", "shm"}, {"fi-verbs", "verbs;ofi_rxm"}};

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/*
 * env_init -- before the first fi_getinfo of the process.  libfabric's
 * memory-registration cache watches for memory going away with a
 * "monitor": a userfaultfd of its own, or hooks over malloc/munmap/madvise
 * (memhooks).  Either would fight the runtime: our heap regions are
 * registered with our userfaultfd and their pages come and go with
 * MADV_DONTNEED and UFFDIO_COPY, which a second monitor would intercept or
 * be confused by.  We register buffers explicitly and keep them, so the
 * cache brings nothing; "disabled" turns it off (0: a setting of the
 * user's own wins).
 */
static void env_init(void)
{
	setenv("FI_MR_CACHE_MONITOR", "disabled", 0);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A libfabric return value or completion error as a negative errno. */
static int fab_errno(long rc)
{
	if (rc < 0)
		rc = -rc;
	if (rc == 0)
		return -EIO;
	if (rc < FI_ERRNO_OFFSET)
		return -(int)rc; /* the same numbers as errno */
	switch (rc) {
	case FI_ETRUNC: return -EMSGSIZE;
	case FI_ENOKEY: return -EACCES;
	case FI_EAVAIL: return -EAGAIN;
	default: return -EIO;
	}
}

static const char *fab_prov(const char *scheme)
{
	for (size_t i = 0; i < sizeof provs / sizeof provs[0]; i++)
		if (strcmp(provs[i].scheme, scheme) == 0)
			return provs[i].prov;
	return NULL;
}

/* ---- connect ------------------------------------------------------------- */

/* The fi_getinfo hints of a client of provider prov. */
static struct fi_info *client_hints(const char *prov)
{
	struct fi_info *h = fi_allocinfo();
	if (!h)
		return NULL;
	h->ep_attr->type = FI_EP_RDM;
	h->caps = FI_RMA | FI_READ | FI_WRITE;
	/*
	 * Every bit we can handle, except FI_MR_ENDPOINT: it would bind each
	 * local registration to one endpoint, but reg() registers for the
	 * connection and every channel has its own endpoint.  No provider we
	 * serve needs it (tcp: none; shm: VIRT_ADDR; verbs: LOCAL, VIRT_ADDR,
	 * ALLOCATED, PROV_KEY).
	 */
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	h->domain_attr->data_progress = FI_PROGRESS_MANUAL;
	h->domain_attr->control_progress = FI_PROGRESS_MANUAL;
	h->domain_attr->threading = FI_THREAD_SAFE; /* reg() may run beside a channel */
	h->mode = FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA;
	h->fabric_attr->prov_name = strdup(prov);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

/* fabric_open -- fabric and domain of the provider the server uses */
static int fabric_open(struct remote_conn *c, const char *prov, char *err, size_t errlen)
{
	struct fi_info *h = client_hints(prov);
	if (!h) {
		snprintf(err, errlen, "%s: out of memory", c->ctl.name);
		return -ENOMEM;
	}
	/*
	 * For tcp and verbs, take the interface the control connection uses:
	 * a loopback server is then reached from loopback.
	 */
	char src[INET_ADDRSTRLEN] = "";
	struct sockaddr_in sin;
	socklen_t sl = sizeof sin;
	int rc = -FI_ENODATA;
	if (strcmp(prov, "shm") != 0 && getsockname(c->ctl.fd, (struct sockaddr *)&sin, &sl) == 0 &&
	    sin.sin_family == AF_INET && inet_ntop(AF_INET, &sin.sin_addr, src, sizeof src))
		rc = fi_getinfo(FAB_VERSION, src, NULL, FI_SOURCE, h, &c->info);
	if (rc != 0)
		rc = fi_getinfo(FAB_VERSION, NULL, NULL, 0, h, &c->info);
	fi_freeinfo(h);
	if (rc != 0) {
		snprintf(err, errlen,
			 "%s: libfabric has no usable provider \"%s\" for RMA with manual progress "
			 "(fi_getinfo: %s)",
			 c->ctl.name, prov, fi_strerror(-rc));
		c->info = NULL;
		return fab_errno(rc);
	}
	c->mr_local = (c->info->domain_attr->mr_mode & FI_MR_LOCAL) != 0;
	rc = fi_fabric(c->info->fabric_attr, &c->fabric, NULL);
	if (rc == 0)
		rc = fi_domain(c->fabric, c->info, &c->domain, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot open libfabric %s %s: %s", c->ctl.name, prov,
			 c->fabric ? "domain" : "fabric", fi_strerror(-rc));
		return fab_errno(rc);
	}
	return 0;
}

static void conn_free(struct remote_conn *c)
{
	if (c->domain)
		fi_close(&c->domain->fid);
	if (c->fabric)
		fi_close(&c->fabric->fid);
	if (c->info)
		fi_freeinfo(c->info);
	rctl_close(&c->ctl);
	free(c);
}

/* fab_connect -- control connection, handshake, then the provider's domain */
static int fab_connect(const struct remote_target *t, const void *secret, size_t secret_len,
		       struct remote_conn **out, char *err, size_t errlen)
{
	const char *prov = fab_prov(t->provider);
	*out = NULL;
	if (!prov) {
		snprintf(err, errlen,
			 "remote: provider \"%s\" is not served by libfabric: use tcp, shm or "
			 "fi-verbs",
			 t->provider);
		return -EINVAL;
	}
	pthread_once(&env_once, env_init);
	struct remote_conn *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "remote: out of memory");
		return -ENOMEM;
	}
	atomic_init(&c->next_key, 1);
	struct tdp_msg w;
	int rc = rctl_open(&c->ctl, t, secret, secret_len, &w, err, errlen);
	if (rc < 0) {
		free(c);
		return rc;
	}
	rc = rctl_check_provider(&c->ctl, w.u.welcome.provider, prov, err, errlen);
	if (rc < 0)
		goto fail;
	memcpy(c->addr, w.u.welcome.addr, w.u.welcome.addr_len);
	c->addrlen = w.u.welcome.addr_len;
	rc = fabric_open(c, prov, err, errlen);
	if (rc < 0)
		goto fail;
	tlog(LOG_INFO, "%s: connected as client %llu (capacity %llu, limit %llu, provider %s)",
	     c->ctl.name, (unsigned long long)c->ctl.client_id,
	     (unsigned long long)c->ctl.capacity, (unsigned long long)c->ctl.client_limit, prov);
	*out = c;
	return 0;
fail:
	conn_free(c);
	return rc;
}

/* ---- control operations: lib/remote_ctl.c -------------------------------- */

static int fab_lease(struct remote_conn *c, uint64_t bytes, struct remote_lease *out, char *err,
		     size_t errlen)
{
	return rctl_lease(&c->ctl, bytes, out, err, errlen);
}

static int fab_release(struct remote_conn *c, uint64_t lease_id)
{
	return rctl_release(&c->ctl, lease_id);
}

static int fab_report(struct remote_conn *c, uint64_t bytes_written, uint64_t bytes_read)
{
	return rctl_report(&c->ctl, bytes_written, bytes_read);
}

static int fab_server_stats(struct remote_conn *c, struct remote_server_stats *out)
{
	return rctl_server_stats(&c->ctl, out);
}

/* fab_check -- 0 while the server is there; -ECONNRESET once it is gone */
static int fab_check(struct remote_conn *c)
{
	return rctl_check(&c->ctl);
}

/* ---- registration -------------------------------------------------------- */

/* fab_reg -- register a local buffer when the provider needs it (FI_MR_LOCAL) */
static int fab_reg(struct remote_conn *c, void *buf, size_t len, void **desc, void **handle)
{
	if (!c->mr_local) {
		*desc = NULL;
		*handle = &no_mr;
		return 0;
	}
	struct fid_mr *mr;
	uint64_t key = atomic_fetch_add(&c->next_key, 1);
	int rc = fi_mr_reg(c->domain, buf, len, FI_READ | FI_WRITE, 0, key, 0, &mr, NULL);
	if (rc != 0) {
		tlog(LOG_WARN, "%s: cannot register %zu bytes at %p: %s", c->ctl.name, len, buf,
		     fi_strerror(-rc));
		return fab_errno(rc);
	}
	*desc = fi_mr_desc(mr);
	*handle = mr;
	return 0;
}

static void fab_dereg(void *handle)
{
	if (handle && handle != &no_mr)
		fi_close(&((struct fid_mr *)handle)->fid);
}

/* ---- channels ------------------------------------------------------------ */

static int reap(struct remote_chan *ch, struct remote_cqe *cqe, int max);

/* ops_held -- transfers the provider has not given back (in flight or abandoned); *reads of them */
static size_t ops_held(const struct remote_chan *ch, size_t *reads)
{
	size_t n = 0, r = 0;
	for (size_t i = 0; i < ch->nops; i++)
		if (ch->ops[i].busy) {
			n++;
			r += !ch->ops[i].write;
		}
	if (reads)
		*reads = r;
	return n;
}

static void chan_keep(struct remote_chan *ch)
{
	pthread_mutex_lock(&g_kept.lock);
	ch->kept_next = g_kept.chans;
	g_kept.chans = ch;
	g_kept.nchans++;
	pthread_mutex_unlock(&g_kept.lock);
	if (!ch->waiting)
		ATOMIC_ADD_RELAXED(&g_chans_kept, 1);
}

/* chan_destroy -- close ch's endpoint, queue and vector, and free it */
static void chan_destroy(struct remote_chan *ch)
{
	if (ch->ep)
		fi_close(&ch->ep->fid);
	if (ch->av)
		fi_close(&ch->av->fid);
	if (ch->cq)
		fi_close(&ch->cq->fid);
	free(ch->ops);
	free(ch);
}

/*
 * chan_settle -- let the provider finish what ch holds for up to wait_ns
 * (reaping drives its progress: a late read lands in its buffer then);
 * the transfers still held after it, and the reads among them.
 *
 * libfabric 1.17's tcp;ofi_rxm crashes in fi_close of an endpoint with RMA
 * still pending (seen: the channel of a fault thread to a server behind a
 * cut network, closed once the library had reconnected to it; SIGSEGV
 * inside fi_close, core in partition.sh), so on ofi_rxm a channel is closed
 * only once this is 0.  Other providers (shm) close at once, as they always
 * did without harm: 0 for them.
 */
static size_t chan_settle(struct remote_chan *ch, int64_t wait_ns, size_t *reads)
{
	*reads = 0;
	if (!ch->ep || !ch->ops || !strstr(ch->c->info->fabric_attr->prov_name, "ofi_rxm"))
		return 0;
	size_t had = ops_held(ch, reads);
	if (had == 0)
		return 0;
	int64_t start = now_ns(), end = start + wait_ns;
	struct remote_cqe cqe[16];
	do {
		int n = reap(ch, cqe, 16);
		if (n < 0)
			break;
		if (n == 0 && now_ns() < end) {
			struct timespec ts = {0, SLEEP_NS};
			nanosleep(&ts, NULL);
		}
	} while (ops_held(ch, NULL) > 0 && now_ns() < end);
	size_t held = ops_held(ch, reads);
	if (held == 0)
		tlog(LOG_DEBUG, "%s: a closing channel waited %.1f ms for %zu transfer(s)",
		     ch->c->ctl.name, (double)(now_ns() - start) / 1e6, had);
	return held;
}

/*
 * chan_free -- close ch; false when it had to be kept open instead: after
 * DRAIN_NS the provider still held transfers of it.  A kept channel is
 * never polled again (progress is manual, so nothing more lands), and goes
 * on g_kept with, in the end, its connection (fab_close).  The caller
 * closes a channel only where its buffer holds nothing it needs (remote.h).
 */
static bool chan_free(struct remote_chan *ch)
{
	size_t reads, held = chan_settle(ch, DRAIN_NS, &reads);
	if (held > 0) {
		tlog(LOG_DEBUG,
		     "%s: a channel closes with %zu transfer(s) (%zu read(s)) the provider still "
		     "holds after %lld ms: keeping it, unpolled (closing would crash libfabric)",
		     ch->c->ctl.name, held, reads, DRAIN_NS / 1000000);
		chan_keep(ch);
		return false;
	}
	chan_destroy(ch);
	return true;
}

/* fab_chan_open -- an endpoint, its CQ (with a wait fd if the provider has one) and AV */
static int fab_chan_open(struct remote_conn *c, struct remote_chan **out)
{
	*out = NULL;
	if (atomic_load(&c->ctl.dead))
		return -ECONNRESET;
	struct remote_chan *ch = calloc(1, sizeof *ch);
	if (!ch)
		return -ENOMEM;
	ch->c = c;
	ch->waitfd = -1;
	ch->nops = c->info->tx_attr->size;
	if (ch->nops == 0 || ch->nops > OPS_MAX)
		ch->nops = OPS_MAX;
	ch->ops = calloc(ch->nops, sizeof *ch->ops);
	if (!ch->ops) {
		free(ch);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ch->nops; i++)
		ch->ops[i].next = i + 1 < ch->nops ? &ch->ops[i + 1] : NULL;
	ch->free = &ch->ops[0];

	const char *what = "completion queue";
	struct fi_cq_attr ca = {
		.format = FI_CQ_FORMAT_CONTEXT, .size = ch->nops, .wait_obj = FI_WAIT_FD};
	int rc = fi_cq_open(c->domain, &ca, &ch->cq, NULL);
	if (rc == 0 && fi_control(&ch->cq->fid, FI_GETWAIT, &ch->waitfd) != 0)
		ch->waitfd = -1;
	if (rc != 0) { /* shm has no wait fd: it is polled with short sleeps */
		ca.wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(c->domain, &ca, &ch->cq, NULL);
	}
	if (rc != 0)
		goto fail;
	what = "address vector";
	struct fi_av_attr aa = {.type = FI_AV_TABLE, .count = 1};
	rc = fi_av_open(c->domain, &aa, &ch->av, NULL);
	if (rc != 0)
		goto fail;
	what = "endpoint";
	rc = fi_endpoint(c->domain, c->info, &ch->ep, NULL);
	if (rc == 0)
		rc = fi_ep_bind(ch->ep, &ch->av->fid, 0);
	if (rc == 0)
		rc = fi_ep_bind(ch->ep, &ch->cq->fid, FI_TRANSMIT | FI_RECV);
	if (rc == 0)
		rc = fi_enable(ch->ep);
	if (rc != 0)
		goto fail;
	what = "server address";
	rc = fi_av_insert(ch->av, c->addr, 1, &ch->server, 0, NULL);
	if (rc != 1) {
		rc = rc < 0 ? rc : -FI_EADDRNOTAVAIL;
		goto fail;
	}
	ch->last_probe = now_ns();
	atomic_fetch_add(&c->nchan, 1);
	shm_note(ch);
	*out = ch;
	return 0;
fail:
	tlog(LOG_WARN, "%s: cannot open a channel: %s: %s%s", c->ctl.name, what, fi_strerror(-rc),
	     strcmp(c->info->fabric_attr->prov_name, "verbs;ofi_rxm") == 0 &&
			     !getenv("FI_UNIVERSE_SIZE")
		     ? " (over soft-RoCE, set FI_UNIVERSE_SIZE=32: libfabric's default sizing asks "
		       "for a completion queue larger than rxe allows)"
		     : "");
	chan_free(ch);
	return fab_errno(rc);
}

/*
 * The shm provider keeps each endpoint's region in a file in /dev/shm that
 * only fi_close removes, and a process that exits does not close its
 * channels (runtime threads may be using them until the very end).  The
 * names are noted here and unlinked when the process exits: peers that
 * mapped a region keep their mapping.
 */
#define SHM_NAMES 32
static struct {
	pid_t pid;
	char name[96];
} g_shm[SHM_NAMES];
static atomic_int g_nshm;

static void shm_note(struct remote_chan *ch)
{
	char buf[128];
	size_t len = sizeof buf - 1;
	if (strcmp(ch->c->info->fabric_attr->prov_name, "shm") != 0 ||
	    fi_getname(&ch->ep->fid, buf, &len) != 0 || len >= sizeof buf)
		return;
	buf[len] = 0;
	const char *name = strstr(buf, "://");
	name = name ? name + 3 : buf;
	int k = atomic_fetch_add(&g_nshm, 1);
	if (k >= SHM_NAMES || strlen(name) >= sizeof g_shm[k].name)
		return;
	snprintf(g_shm[k].name, sizeof g_shm[k].name, "%s", name);
	g_shm[k].pid = getpid();
}

__attribute__((destructor)) static void shm_unlink_all(void)
{
	int n = atomic_load(&g_nshm);
	for (int k = 0; k < n && k < SHM_NAMES; k++)
		if (g_shm[k].pid == getpid()) /* a forked child's names are its parent's */
			(void)shm_unlink(g_shm[k].name);
}

static void fab_chan_close(struct remote_chan *ch)
{
	if (!ch)
		return;
	struct remote_conn *c = ch->c;
	if (chan_free(ch))
		atomic_fetch_sub(&c->nchan, 1); /* a kept channel keeps its connection */
}

/* fab_chan_close_try -- close ch once the provider holds none of its transfers */
static int fab_chan_close_try(struct remote_chan *ch, int wait_ms)
{
	if (!ch)
		return 0;
	struct remote_conn *c = ch->c;
	size_t reads;
	if (chan_settle(ch, (int64_t)wait_ms * 1000000, &reads) > 0) {
		if (!ch->waiting) {
			ch->waiting = true;
			ATOMIC_ADD_RELAXED(&g_chans_kept, 1);
		}
		return -EBUSY;
	}
	if (ch->waiting)
		ATOMIC_SUB_RELAXED(&g_chans_kept, 1);
	chan_destroy(ch);
	atomic_fetch_sub(&c->nchan, 1);
	return 0;
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

static int fab_post(struct remote_chan *ch, const struct remote_io *io, bool write)
{
	if (atomic_load(&ch->c->ctl.dead))
		return -ECONNRESET;
	if (io->len == 0 || io->len > ch->c->info->ep_attr->max_msg_size)
		return io->len == 0 ? -EINVAL : -EMSGSIZE;
	struct fab_op *op = ch->free;
	if (!op)
		return chan_dead(ch, now_ns()) ? -ECONNRESET : -EAGAIN;
	struct iovec iov = {.iov_base = io->buf, .iov_len = io->len};
	void *desc = io->desc;
	struct fi_rma_iov rma = {.addr = io->raddr, .len = io->len, .key = io->key};
	struct fi_msg_rma msg = {
		.msg_iov = &iov,
		.desc = &desc,
		.iov_count = 1,
		.addr = ch->server,
		.rma_iov = &rma,
		.rma_iov_count = 1,
		.context = &op->fctx,
	};
	/* A write completes only once delivered: the caller may then drop its copy. */
	ssize_t rc = write ? fi_writemsg(ch->ep, &msg, FI_DELIVERY_COMPLETE | FI_COMPLETION)
			   : fi_readmsg(ch->ep, &msg, FI_COMPLETION);
	if (rc == 0) {
		ch->free = op->next;
		op->ctx = io->ctx;
		op->busy = true;
		op->abandoned = false;
		op->write = write;
		ch->inflight++;
		return 0;
	}
	if (rc == -FI_EAGAIN)
		return chan_dead(ch, now_ns()) ? -ECONNRESET : -EAGAIN;
	tlog(LOG_DEBUG, "%s: fi_%smsg: %s", ch->c->ctl.name, write ? "write" : "read",
	     fi_strerror((int)-rc));
	return fab_errno(rc);
}

static int fab_post_read(struct remote_chan *ch, const struct remote_io *io)
{
	return fab_post(ch, io, false);
}

static int fab_post_write(struct remote_chan *ch, const struct remote_io *io)
{
	return fab_post(ch, io, true);
}

/* Retire an op the provider has finished with; true when the caller must hear of it. */
static bool op_done(struct remote_chan *ch, struct fab_op *op)
{
	bool report = !op->abandoned;
	op->busy = false;
	op->abandoned = false;
	op->next = ch->free;
	ch->free = op;
	if (report)
		ch->inflight--;
	return report;
}

/*
 * reap -- one fi_cq_read: completions into cqe, an error entry as a cqe
 * with a negative status.  Returns the count, 0 for nothing, or a negative
 * errno when the queue itself failed.
 */
static int reap(struct remote_chan *ch, struct remote_cqe *cqe, int max)
{
	struct fi_cq_entry e[CQ_BATCH];
	int want = max < CQ_BATCH ? max : CQ_BATCH;
	ssize_t n = fi_cq_read(ch->cq, e, (size_t)want);
	int k = 0;
	if (n > 0) {
		for (ssize_t i = 0; i < n; i++) {
			struct fab_op *op = e[i].op_context;
			void *ctx = op->ctx;
			if (op_done(ch, op)) {
				cqe[k].ctx = ctx;
				cqe[k].status = 0;
				k++;
			}
		}
		return k;
	}
	if (n == 0 || n == -FI_EAGAIN)
		return 0;
	if (n != -FI_EAVAIL)
		return fab_errno(n);
	struct fi_cq_err_entry ee = {0};
	if (fi_cq_readerr(ch->cq, &ee, 0) != 1)
		return 0;
	struct fab_op *op = ee.op_context;
	if (!op) {
		/* expected once the server is gone; worth a warning otherwise */
		tlog(rctl_probe_dead(&ch->c->ctl) ? LOG_DEBUG : LOG_WARN,
		     "%s: completion queue error without a transfer: %s", ch->c->ctl.name,
		     fi_strerror(ee.err));
		return fab_errno(ee.err);
	}
	void *ctx = op->ctx;
	if (!op_done(ch, op))
		return 0;
	tlog(LOG_DEBUG, "%s: transfer failed: %s (%s)", ch->c->ctl.name, fi_strerror(ee.err),
	     fi_cq_strerror(ch->cq, ee.prov_errno, ee.err_data, NULL, 0));
	cqe[0].ctx = ctx;
	cqe[0].status = fab_errno(ee.err);
	if (cqe[0].status == 0 || cqe[0].status == -EAGAIN)
		cqe[0].status = -EIO;
	return 1;
}

/*
 * The server is gone: report every transfer in flight as failed.  The ops
 * stay out of the pool until the provider gives them back (if ever), so a
 * late completion cannot be confused with a new transfer.
 */
static int fail_inflight(struct remote_chan *ch, struct remote_cqe *cqe, int max)
{
	int k = 0;
	for (size_t i = 0; i < ch->nops && k < max; i++) {
		struct fab_op *op = &ch->ops[i];
		if (!op->busy || op->abandoned)
			continue;
		op->abandoned = true;
		ch->inflight--;
		cqe[k].ctx = op->ctx;
		cqe[k].status = -ECONNRESET;
		k++;
	}
	return k;
}

/*
 * fab_poll -- reap completions, driving progress (it is manual) with
 * fi_cq_read.  While waiting: spin for SPIN_NS (a small transfer's round
 * trip, so a quick answer costs no wake-up), then block on the CQ's wait fd
 * in slices (tcp has one: it wakes when data arrives), or sleep SLEEP_NS
 * between calls (shm has none).  The control socket is probed every
 * PROBE_NS so a dead server ends the wait.
 */
static int fab_poll(struct remote_chan *ch, struct remote_cqe *cqe, int max, int timeout_ms)
{
	if (max <= 0)
		return -EINVAL;
	int64_t deadline = -1, spin_end = -1;
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
		if (ch->waitfd >= 0) {
			struct fid *f = &ch->cq->fid;
			if (fi_trywait(ch->c->fabric, &f, 1) != FI_SUCCESS)
				continue; /* something is ready: read it */
			int64_t left = deadline >= 0 ? (deadline - now) / 1000000 + 1 : WAIT_SLICE_MS;
			struct pollfd pfd = {.fd = ch->waitfd, .events = POLLIN};
			poll(&pfd, 1, left < WAIT_SLICE_MS ? (int)left : WAIT_SLICE_MS);
		} else {
			struct timespec ts = {0, SLEEP_NS};
			nanosleep(&ts, NULL);
		}
	}
}

/* fab_close -- the server releases our leases when the connection ends */
static void fab_close(struct remote_conn *c)
{
	if (!c)
		return;
	int n = atomic_load(&c->nchan);
	if (n > 0) {
		/* fi_close of the domain would fail: keep the fabric objects, drop the rest */
		tlog(LOG_WARN,
		     "%s: closed with %d channel(s) still holding transfers: keeping them and the "
		     "connection's domain",
		     c->ctl.name, n);
		rctl_close(&c->ctl);
		pthread_mutex_lock(&g_kept.lock);
		c->kept_next = g_kept.conns;
		g_kept.conns = c;
		g_kept.nconns++;
		pthread_mutex_unlock(&g_kept.lock);
		return;
	}
	conn_free(c);
}

static const char *fab_name_of(struct remote_conn *c)
{
	return c->ctl.name;
}

/* fab_ctl -- the embedded control connection (lib/remote_ctl.h) */
static struct remote_ctl *fab_ctl(struct remote_conn *c)
{
	return &c->ctl;
}

const struct remote_ops remote_fabric_ops = {
	.name = "fabric",
	.connect = fab_connect,
	.lease = fab_lease,
	.release = fab_release,
	.report = fab_report,
	.server_stats = fab_server_stats,
	.check = fab_check,
	.reg = fab_reg,
	.dereg = fab_dereg,
	.chan_open = fab_chan_open,
	.chan_close = fab_chan_close,
	.chan_close_try = fab_chan_close_try,
	.post_read = fab_post_read,
	.post_write = fab_post_write,
	.poll = fab_poll,
	.close = fab_close,
	.name_of = fab_name_of,
	.ctl = fab_ctl,
};
