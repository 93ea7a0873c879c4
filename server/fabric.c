/*
 * fabric.c -- tieredd's libfabric data path (dpath_fabric_ops; providers
 * tcp, shm, fi-verbs): one libfabric RDM endpoint
 * that clients reach with one-sided RMA, one memory registration per
 * lease, and the progress that the providers need.
 *
 * Progress is manual on tcp;ofi_rxm and shm: incoming RMA advances only
 * while the server calls fi_cq_read, even though the server posts nothing
 * and no completion ever appears.  sfab_progress() is that call.  To know
 * when to call it, tcp gives a wait fd (the CQ's, FI_WAIT_FD) that turns
 * readable when data arrives; shm has none, so where the provider has
 * FI_RMA_EVENT a counter of remote writes tells the loop that traffic is
 * flowing (shm serves remote reads without the server: the client copies).
 *
 * Each lease has its own MR: with a key the provider chose (FI_MR_PROV_KEY)
 * or a random one, so a key reaches that lease and nothing else.  On tcp
 * and fi-verbs each client also gets a domain and endpoint of its own
 * (struct fep, made at AUTH by sfab_client_add, whose address its WELCOME
 * carries): a key is looked up in the domain of the endpoint the request
 * came in on, so even another client's exact key reaches nothing (with
 * fi-verbs the domain is a protection domain: the NIC checks it).  The
 * loop waits on an epoll fd holding every client's CQ wait fd.  shm
 * (libfabric 1.17) lets the client copy with process_vm_readv/writev (CMA)
 * and checks no key on that path; turning CMA
 * off (FI_SHM_DISABLE_CMA) costs 100x and more in bandwidth, and a client
 * allowed to use CMA on us may ptrace us anyway.  So shm serves trusted
 * clients of the server's own user, and the server says so when it starts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include "tieredd.h"

#define FAB_VERSION FI_VERSION(1, 17)

/* A domain and its endpoint: the one all clients share (shm), or one client's own. */
struct fep {
	struct fid_domain *domain;
	struct fid_ep *ep;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_cntr *cntr; /* remote writes and reads, when FI_RMA_EVENT; or NULL */
	int waitfd;	       /* the CQ's, or -1 */
	uint8_t addr[TDP_ADDR_MAX];
	size_t addrlen;
};

struct sfab {
	struct dpath dp; /* first: the server holds &dp */
	struct fi_info *info;
	struct fid_fabric *fabric;
	bool rma_event;
	bool per_client;   /* tcp, fi-verbs: a fep per client (dp_priv) */
	struct fep shared; /* shm: the one endpoint */
	uint64_t cntr_last;
	int waitfd;	   /* shared.waitfd, or the epoll fd of the clients' (per_client) */
	uint64_t mr_mode;
	struct fep **eps;  /* per_client: every client's */
	struct fid **cqs;  /* their CQs, for fi_trywait */
	size_t neps, cap;
};

static const struct {
	const char *scheme, *prov;
} provs[] = {{"tcp", "tcp;ofi_rxm"}, {"shm", "shm"}, {"fi-verbs", "verbs;ofi_rxm"}};

static struct fi_info *server_hints(const char *prov, bool rma_event)
{
	struct fi_info *h = fi_allocinfo();
	if (!h)
		return NULL;
	h->ep_attr->type = FI_EP_RDM;
	h->caps = FI_RMA | FI_REMOTE_READ | FI_REMOTE_WRITE | (rma_event ? FI_RMA_EVENT : 0);
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				  FI_MR_PROV_KEY | FI_MR_ENDPOINT |
				  (rma_event ? FI_MR_RMA_EVENT : 0);
	h->domain_attr->data_progress = FI_PROGRESS_MANUAL;
	h->domain_attr->control_progress = FI_PROGRESS_MANUAL;
	h->domain_attr->threading = FI_THREAD_DOMAIN; /* one thread */
	h->mode = FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA;
	h->fabric_attr->prov_name = strdup(prov);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

/* fi_getinfo for the server, with FI_RMA_EVENT when the provider has it. */
static int server_info(struct sfab *f, const char *prov, const char *listen, bool *rma_event)
{
	bool shm = strcmp(prov, "shm") == 0;
	int rc = -FI_ENODATA;
	for (int ev = 1; ev >= 0 && rc != 0; ev--) {
		struct fi_info *h = server_hints(prov, ev);
		if (!h)
			return -FI_ENOMEM;
		if (shm)
			rc = fi_getinfo(FAB_VERSION, NULL, NULL, 0, h, &f->info);
		else
			rc = fi_getinfo(FAB_VERSION, listen, "0", FI_SOURCE, h, &f->info);
		fi_freeinfo(h);
		*rma_event = ev;
	}
	return rc;
}

static void sfab_close(struct dpath *d);

/* fep_close -- everything of e (its MRs are closed already) */
static void fep_close(struct fep *e)
{
	if (e->ep)
		fi_close(&e->ep->fid);
	if (e->cntr)
		fi_close(&e->cntr->fid);
	if (e->av)
		fi_close(&e->av->fid);
	if (e->cq)
		fi_close(&e->cq->fid);
	if (e->domain)
		fi_close(&e->domain->fid);
	memset(e, 0, sizeof *e);
	e->waitfd = -1;
}

/*
 * fep_open -- a domain and an RDM endpoint bound to the listen address (a
 * port of its own), enabled, with its address in e->addr.  counter: bind a
 * remote-access counter when there is no wait fd (shm).  0, or a libfabric
 * error with *what naming the call that failed.
 */
static int fep_open(struct sfab *f, struct fep *e, bool counter, const char **what)
{
	memset(e, 0, sizeof *e);
	e->waitfd = -1;
	*what = "fi_domain";
	int rc = fi_domain(f->fabric, f->info, &e->domain, NULL);
	if (rc)
		return rc;
	*what = "fi_cq_open";
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 64, .wait_obj = FI_WAIT_FD};
	rc = fi_cq_open(e->domain, &ca, &e->cq, NULL);
	if (rc == 0 && fi_control(&e->cq->fid, FI_GETWAIT, &e->waitfd) != 0)
		e->waitfd = -1;
	if (rc != 0) {
		ca.wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(e->domain, &ca, &e->cq, NULL);
	}
	if (rc)
		return rc;
	*what = "fi_av_open";
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	rc = fi_av_open(e->domain, &aa, &e->av, NULL);
	if (rc)
		return rc;
	*what = "fi_endpoint";
	rc = fi_endpoint(e->domain, f->info, &e->ep, NULL);
	if (rc == 0)
		rc = fi_ep_bind(e->ep, &e->av->fid, 0);
	if (rc == 0)
		rc = fi_ep_bind(e->ep, &e->cq->fid, FI_TRANSMIT | FI_RECV);
	if (rc)
		return rc;
	if (counter && f->rma_event && e->waitfd < 0) {
		struct fi_cntr_attr ta = {.events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_NONE};
		if (fi_cntr_open(e->domain, &ta, &e->cntr, NULL) == 0 &&
		    fi_ep_bind(e->ep, &e->cntr->fid, FI_REMOTE_WRITE | FI_REMOTE_READ) != 0) {
			fi_close(&e->cntr->fid);
			e->cntr = NULL;
		}
	}
	*what = "fi_enable";
	rc = fi_enable(e->ep);
	if (rc)
		return rc;
	*what = "fi_getname";
	e->addrlen = sizeof e->addr;
	return fi_getname(&e->ep->fid, e->addr, &e->addrlen);
}

static const char *fab_hint(const char *scheme)
{
	return strcmp(scheme, "fi-verbs") == 0 && !getenv("FI_UNIVERSE_SIZE")
		       ? " (over soft-RoCE, set FI_UNIVERSE_SIZE=32: libfabric's default sizing "
			 "asks for a completion queue larger than rxe allows)"
		       : "";
}

/* sfab_open -- the provider of s->o.provider on s->o.listen */
static int sfab_open(struct server *s, struct dpath **out, char *err, size_t errlen)
{
	const char *scheme = s->o.provider, *listen = s->o.listen;
	const char *prov = NULL;
	for (size_t i = 0; i < sizeof provs / sizeof provs[0]; i++)
		if (strcmp(provs[i].scheme, scheme) == 0)
			prov = provs[i].prov;
	if (!prov) {
		snprintf(err, errlen, "unknown provider \"%s\": use tcp, shm or fi-verbs", scheme);
		return -EINVAL;
	}
	/* The registration cache's monitors would hook memory we manage ourselves. */
	setenv("FI_MR_CACHE_MONITOR", "disabled", 0);
	struct sfab *f = calloc(1, sizeof *f);
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->dp.ops = &dpath_fabric_ops;
	f->waitfd = -1;
	f->shared.waitfd = -1;
	f->per_client = strcmp(prov, "shm") != 0;
	const char *what = "fi_getinfo";
	int rc = server_info(f, prov, listen, &f->rma_event);
	if (rc != 0) {
		snprintf(err, errlen,
			 "libfabric has no provider \"%s\" for RMA with manual progress on %s "
			 "(fi_getinfo: %s)",
			 prov, listen, fi_strerror(-rc));
		f->info = NULL;
		sfab_close(&f->dp);
		return -ENODEV;
	}
	f->mr_mode = f->info->domain_attr->mr_mode;
	what = "fi_fabric";
	rc = fi_fabric(f->info->fabric_attr, &f->fabric, NULL);
	if (rc)
		goto fail;
	/*
	 * The shared endpoint (shm), or a trial of the clients' (tcp,
	 * fi-verbs): a provider that cannot make one is reported now, not at
	 * the first client.
	 */
	rc = fep_open(f, &f->shared, !f->per_client, &what);
	if (rc)
		goto fail;
	f->waitfd = f->shared.waitfd;
	if (f->per_client) {
		bool fd = f->shared.waitfd >= 0;
		fep_close(&f->shared);
		f->waitfd = -1;
		what = "epoll_create1";
		if (fd && (f->waitfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
			rc = -FI_ENOMEM;
			goto fail;
		}
	}
	slog(SLOG_DEBUG, "fabric: %s, domain %s, mr_mode 0x%llx, %s, progress by %s", prov,
	     f->info->domain_attr->name, (unsigned long long)f->mr_mode,
	     f->per_client ? "an endpoint per client" : "one endpoint",
	     f->waitfd >= 0 ? "wait fd" : f->shared.cntr ? "remote-access counter" : "polling");
	*out = &f->dp;
	return 0;
fail:
	snprintf(err, errlen, "libfabric %s (%s): %s%s", what, prov, fi_strerror(-rc),
		 fab_hint(scheme));
	sfab_close(&f->dp);
	return -EIO;
}

static void sfab_close(struct dpath *d)
{
	struct sfab *f = (struct sfab *)d;
	if (!f)
		return;
	for (size_t i = 0; i < f->neps; i++) {
		fep_close(f->eps[i]);
		free(f->eps[i]);
	}
	free(f->eps);
	free(f->cqs);
	fep_close(&f->shared);
	if (f->per_client && f->waitfd >= 0)
		close(f->waitfd);
	if (f->fabric)
		fi_close(&f->fabric->fid);
	if (f->info)
		fi_freeinfo(f->info);
	free(f);
}

static const char *sfab_prov_name(const struct dpath *d)
{
	const struct sfab *f = (const struct sfab *)d;
	return f->info->fabric_attr->prov_name;
}

/*
 * sfab_client_add -- tcp, fi-verbs: c's own domain and endpoint, whose
 * address goes to c; shm: the shared endpoint's address.  When the address
 * is a wildcard IPv4 one, local (the address the client reached us on)
 * replaces it.
 */
static int sfab_client_add(struct dpath *d, struct client *c, const struct sockaddr_in *local_sin,
			   uint8_t *buf, size_t cap, uint16_t *len, char *err, size_t errlen)
{
	struct sfab *f = (struct sfab *)d;
	const struct fep *e = &f->shared;
	if (f->per_client) {
		struct fep *n = calloc(1, sizeof *n);
		const char *what = "calloc";
		int rc = -FI_ENOMEM;
		if (f->neps == f->cap) {
			size_t ncap = f->cap ? 2 * f->cap : 16;
			struct fep **ne = realloc(f->eps, ncap * sizeof *ne);
			if (ne)
				f->eps = ne;
			struct fid **nc = ne ? realloc(f->cqs, ncap * sizeof *nc) : NULL;
			if (nc)
				f->cqs = nc;
			if (ne && nc)
				f->cap = ncap;
		}
		if (n && f->neps < f->cap)
			rc = fep_open(f, n, false, &what);
		if (rc == 0 && f->waitfd >= 0) {
			what = "epoll_ctl";
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = n};
			if (n->waitfd < 0 || epoll_ctl(f->waitfd, EPOLL_CTL_ADD, n->waitfd, &ev) < 0)
				rc = -FI_EOTHER;
		}
		if (rc != 0) {
			snprintf(err, errlen, "cannot open an endpoint for the client: libfabric %s: %s",
				 what, fi_strerror(-rc));
			if (n)
				fep_close(n);
			free(n);
			return -ENOMEM;
		}
		f->cqs[f->neps] = &n->cq->fid;
		f->eps[f->neps++] = n;
		c->dp_priv = n;
		e = n;
	}
	size_t n = e->addrlen < cap ? e->addrlen : cap;
	memcpy(buf, e->addr, n);
	if (f->info->addr_format == FI_SOCKADDR_IN && n >= sizeof(struct sockaddr_in) &&
	    local_sin) {
		struct sockaddr_in sin;
		memcpy(&sin, buf, sizeof sin);
		if (sin.sin_addr.s_addr == htonl(INADDR_ANY)) {
			sin.sin_addr = local_sin->sin_addr;
			memcpy(buf, &sin, sizeof sin);
		}
	}
	*len = (uint16_t)n;
	return 0;
}

/* sfab_client_remove -- c's leases are deregistered: its endpoint and domain go */
static void sfab_client_remove(struct dpath *d, struct client *c)
{
	struct sfab *f = (struct sfab *)d;
	struct fep *e = c->dp_priv;
	if (!e)
		return;
	for (size_t i = 0; i < f->neps; i++)
		if (f->eps[i] == e) {
			f->eps[i] = f->eps[f->neps - 1];
			f->cqs[i] = f->cqs[f->neps - 1];
			f->neps--;
			break;
		}
	if (f->waitfd >= 0 && e->waitfd >= 0)
		(void)epoll_ctl(f->waitfd, EPOLL_CTL_DEL, e->waitfd, NULL);
	fep_close(e);
	free(e);
	c->dp_priv = NULL;
}

static int sfab_reg(struct dpath *d, struct client *c, void *addr, uint64_t len, void **mrp,
		    uint64_t *key, uint64_t *raddr, char *err, size_t errlen)
{
	struct sfab *f = (struct sfab *)d;
	struct fep *e = f->per_client ? c->dp_priv : &f->shared;
	struct fid_mr *m = NULL, **mr = &m;
	uint64_t access = FI_REMOTE_READ | FI_REMOTE_WRITE;
	size_t ksize = f->info->domain_attr->mr_key_size;
	int rc = -FI_ENOKEY;
	*mrp = NULL;
	if (!e) {
		snprintf(err, errlen, "the client has no endpoint");
		return -EPROTO;
	}
	/* A requested key is random (unguessable); retry the rare collision. */
	for (int tries = 0; tries < 8 && (rc == -FI_ENOKEY || rc == -FI_EKEYREJECTED); tries++) {
		uint64_t want = 0;
		if (!(f->mr_mode & FI_MR_PROV_KEY)) {
			tdp_random(&want, sizeof want);
			if (ksize > 0 && ksize < 8)
				want &= (1ULL << (8 * ksize)) - 1;
		}
		rc = fi_mr_reg(e->domain, addr, len, access, 0, want, 0, mr, NULL);
	}
	if (rc == 0 && (f->mr_mode & FI_MR_RMA_EVENT) && e->cntr)
		rc = fi_mr_bind(*mr, &e->cntr->fid, FI_REMOTE_WRITE | FI_REMOTE_READ);
	if (rc == 0 && (f->mr_mode & FI_MR_ENDPOINT))
		rc = fi_mr_bind(*mr, &e->ep->fid, 0);
	if (rc == 0 && (f->mr_mode & (FI_MR_ENDPOINT | FI_MR_RMA_EVENT)))
		rc = fi_mr_enable(*mr);
	if (rc != 0) {
		snprintf(err, errlen, "cannot register %llu bytes with the fabric: %s",
			 (unsigned long long)len, fi_strerror(-rc));
		if (*mr)
			fi_close(&(*mr)->fid);
		*mr = NULL;
		return -ENOMEM;
	}
	*key = fi_mr_key(m);
	*raddr = (f->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)addr : 0;
	*mrp = m;
	return 0;
}

static void sfab_dereg(struct dpath *d, void *mr)
{
	if (mr)
		fi_close(&((struct fid_mr *)mr)->fid);
}

/* fep_progress -- one fi_cq_read on e's CQ: true when it moved anything */
static bool fep_progress(struct fep *e)
{
	struct fi_cq_entry ent[8];
	ssize_t n = fi_cq_read(e->cq, ent, 8);
	if (n > 0)
		return true;
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry ee = {0};
		if (fi_cq_readerr(e->cq, &ee, 0) == 1)
			slog(SLOG_DEBUG, "fabric: completion error: %s", fi_strerror(ee.err));
		return true;
	}
	return false;
}

static bool sfab_progress(struct dpath *d)
{
	struct sfab *f = (struct sfab *)d;
	bool busy = false;
	if (f->per_client) {
		for (size_t i = 0; i < f->neps; i++)
			busy |= fep_progress(f->eps[i]);
		return busy;
	}
	busy = fep_progress(&f->shared);
	if (f->shared.cntr) {
		uint64_t v = fi_cntr_read(f->shared.cntr);
		if (v != f->cntr_last) {
			f->cntr_last = v;
			busy = true;
		}
	}
	return busy;
}

static int sfab_wait_fd(const struct dpath *d)
{
	return ((const struct sfab *)d)->waitfd;
}

static bool sfab_trywait(struct dpath *d)
{
	struct sfab *f = (struct sfab *)d;
	if (f->waitfd < 0)
		return false;
	if (f->per_client)
		return f->neps == 0 || fi_trywait(f->fabric, f->cqs, (int)f->neps) == FI_SUCCESS;
	struct fid *fid = &f->shared.cq->fid;
	return fi_trywait(f->fabric, &fid, 1) == FI_SUCCESS;
}

const struct dpath_ops dpath_fabric_ops = {
	.open = sfab_open,
	.close = sfab_close,
	.prov_name = sfab_prov_name,
	.client_add = sfab_client_add,
	.client_remove = sfab_client_remove,
	.reg = sfab_reg,
	.dereg = sfab_dereg,
	.progress = sfab_progress,
	.wait_fd = sfab_wait_fd,
	.trywait = sfab_trywait,
	.manual_progress = true,
};
