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
 * or a random one, so a key reaches that lease and nothing else -- on tcp
 * and fi-verbs.  (With fi-verbs every client's QP shares the one domain, so
 * a client that learned or guessed another's 32-bit rkey could use it;
 * verbs.c gives each client its own protection domain instead.)  shm
 * (libfabric 1.17) lets the client copy with process_vm_readv/writev (CMA)
 * and checks no key on that path; turning CMA
 * off (FI_SHM_DISABLE_CMA) costs 100x and more in bandwidth, and a client
 * allowed to use CMA on us may ptrace us anyway.  So shm serves trusted
 * clients of the server's own user, and the server says so when it starts.
 */
#include <arpa/inet.h>
#include <errno.h>
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

struct sfab {
	struct dpath dp; /* first: the server holds &dp */
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_ep *ep;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_cntr *cntr; /* remote writes and reads, when FI_RMA_EVENT; or NULL */
	uint64_t cntr_last;
	int waitfd;
	uint64_t mr_mode;
	uint8_t addr[TDP_ADDR_MAX];
	size_t addrlen;
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

/* sfab_open -- the endpoint of s->o.provider bound to s->o.listen */
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
	bool rma_event = false;
	const char *what = "fi_getinfo";
	int rc = server_info(f, prov, listen, &rma_event);
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
	what = "fi_domain";
	rc = fi_domain(f->fabric, f->info, &f->domain, NULL);
	if (rc)
		goto fail;
	what = "fi_cq_open";
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 64, .wait_obj = FI_WAIT_FD};
	rc = fi_cq_open(f->domain, &ca, &f->cq, NULL);
	if (rc == 0 && fi_control(&f->cq->fid, FI_GETWAIT, &f->waitfd) != 0)
		f->waitfd = -1;
	if (rc != 0) {
		ca.wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(f->domain, &ca, &f->cq, NULL);
	}
	if (rc)
		goto fail;
	what = "fi_av_open";
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	rc = fi_av_open(f->domain, &aa, &f->av, NULL);
	if (rc)
		goto fail;
	what = "fi_endpoint";
	rc = fi_endpoint(f->domain, f->info, &f->ep, NULL);
	if (rc == 0)
		rc = fi_ep_bind(f->ep, &f->av->fid, 0);
	if (rc == 0)
		rc = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV);
	if (rc)
		goto fail;
	if (rma_event && f->waitfd < 0) {
		struct fi_cntr_attr ta = {.events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_NONE};
		if (fi_cntr_open(f->domain, &ta, &f->cntr, NULL) == 0 &&
		    fi_ep_bind(f->ep, &f->cntr->fid, FI_REMOTE_WRITE | FI_REMOTE_READ) != 0) {
			fi_close(&f->cntr->fid);
			f->cntr = NULL;
		}
	}
	what = "fi_enable";
	rc = fi_enable(f->ep);
	if (rc)
		goto fail;
	what = "fi_getname";
	f->addrlen = sizeof f->addr;
	rc = fi_getname(&f->ep->fid, f->addr, &f->addrlen);
	if (rc)
		goto fail;
	slog(SLOG_DEBUG, "fabric: %s, domain %s, mr_mode 0x%llx, progress by %s", prov,
	     f->info->domain_attr->name, (unsigned long long)f->mr_mode,
	     f->waitfd >= 0 ? "wait fd" : f->cntr ? "remote-access counter" : "polling");
	*out = &f->dp;
	return 0;
fail:
	snprintf(err, errlen, "libfabric %s (%s): %s%s", what, prov, fi_strerror(-rc),
		 strcmp(scheme, "fi-verbs") == 0 && !getenv("FI_UNIVERSE_SIZE")
			 ? " (over soft-RoCE, set FI_UNIVERSE_SIZE=32: libfabric's default sizing "
			   "asks for a completion queue larger than rxe allows)"
			 : "");
	sfab_close(&f->dp);
	return -EIO;
}

static void sfab_close(struct dpath *d)
{
	struct sfab *f = (struct sfab *)d;
	if (!f)
		return;
	if (f->ep)
		fi_close(&f->ep->fid);
	if (f->cntr)
		fi_close(&f->cntr->fid);
	if (f->av)
		fi_close(&f->av->fid);
	if (f->cq)
		fi_close(&f->cq->fid);
	if (f->domain)
		fi_close(&f->domain->fid);
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
 * sfab_client_add -- the endpoint's address, the same for every client.
 * When it is a wildcard IPv4 address, local (the address the client
 * reached us on) replaces it.
 */
static int sfab_client_add(struct dpath *d, struct client *c, const struct sockaddr_in *local_sin,
			   uint8_t *buf, size_t cap, uint16_t *len, char *err, size_t errlen)
{
	const struct sfab *f = (const struct sfab *)d;
	size_t n = f->addrlen < cap ? f->addrlen : cap;
	memcpy(buf, f->addr, n);
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

static void sfab_client_remove(struct dpath *d, struct client *c)
{
}

static int sfab_reg(struct dpath *d, struct client *c, void *addr, uint64_t len, void **mrp,
		    uint64_t *key, uint64_t *raddr, char *err, size_t errlen)
{
	struct sfab *f = (struct sfab *)d;
	struct fid_mr *m = NULL, **mr = &m;
	uint64_t access = FI_REMOTE_READ | FI_REMOTE_WRITE;
	size_t ksize = f->info->domain_attr->mr_key_size;
	int rc = -FI_ENOKEY;
	*mrp = NULL;
	/* A requested key is random (unguessable); retry the rare collision. */
	for (int tries = 0; tries < 8 && (rc == -FI_ENOKEY || rc == -FI_EKEYREJECTED); tries++) {
		uint64_t want = 0;
		if (!(f->mr_mode & FI_MR_PROV_KEY)) {
			tdp_random(&want, sizeof want);
			if (ksize > 0 && ksize < 8)
				want &= (1ULL << (8 * ksize)) - 1;
		}
		rc = fi_mr_reg(f->domain, addr, len, access, 0, want, 0, mr, NULL);
	}
	if (rc == 0 && (f->mr_mode & FI_MR_RMA_EVENT) && f->cntr)
		rc = fi_mr_bind(*mr, &f->cntr->fid, FI_REMOTE_WRITE | FI_REMOTE_READ);
	if (rc == 0 && (f->mr_mode & FI_MR_ENDPOINT))
		rc = fi_mr_bind(*mr, &f->ep->fid, 0);
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

static bool sfab_progress(struct dpath *d)
{
	struct sfab *f = (struct sfab *)d;
	struct fi_cq_entry e[8];
	bool busy = false;
	ssize_t n = fi_cq_read(f->cq, e, 8);
	if (n > 0) {
		busy = true;
	} else if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry ee = {0};
		if (fi_cq_readerr(f->cq, &ee, 0) == 1)
			slog(SLOG_DEBUG, "fabric: completion error: %s", fi_strerror(ee.err));
		busy = true;
	}
	if (f->cntr) {
		uint64_t v = fi_cntr_read(f->cntr);
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
	struct fid *fid = &f->cq->fid;
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
