/*
 * verbs_probe.c -- tieredd -P verbs refuses what it must, and serves what it
 * should.  Run by tests/vm/remote-verbs.sh in the test VM (soft-RoCE):
 *
 *   verbs_probe HOST PORT SECRET_FILE
 *
 * Checks, against a running server:
 *   1. a control connection with the wrong secret is refused (EACCES);
 *   2. client A (remote_verbs_ops, the library's own backend) writes a lease
 *      with RDMA WRITE and reads it back with RDMA READ;
 *   3. client B, authenticated, with its own queue pair, cannot read or
 *      write A's lease with A's key (another protection domain), and A's
 *      bytes are intact afterwards;
 *   4. a queue pair whose private data carries a forged proof, another
 *      client's id, an unknown id, or no valid private data is rejected with
 *      the reason tieredd gives; the same connect with the right proof is
 *      accepted (so the refusals are the proof's doing).
 * Exits 0 when all hold, 1 when one does not, 77 when there is no RDMA device.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "proto.h"
#include "remote.h"

#define LEASE (2UL << 20)

static int failures;
static const struct remote_ops *ops = &remote_verbs_ops;

static void check(int ok, const char *what, const char *detail)
{
	printf("%s: %s%s%s\n", ok ? "ok" : "FAIL", what, detail && *detail ? ": " : "",
	       detail ? detail : "");
	fflush(stdout);
	failures += !ok;
}

static void die(const char *what)
{
	fprintf(stderr, "verbs_probe: %s\n", what);
	exit(1);
}

/* ---- raw rdma_cm: a connect with private data of our choosing -------------- */

static int wait_event(struct rdma_event_channel *ec, enum rdma_cm_event_type *type, int *reject)
{
	struct pollfd pfd = {.fd = ec->fd, .events = POLLIN};
	if (poll(&pfd, 1, 5000) <= 0)
		return -ETIMEDOUT;
	struct rdma_cm_event *ev;
	if (rdma_get_cm_event(ec, &ev) != 0)
		return -errno;
	*type = ev->event;
	if (reject)
		*reject = ev->event == RDMA_CM_EVENT_REJECTED
				  ? tdp_qp_reject_get(ev->param.conn.private_data,
						      ev->param.conn.private_data_len)
				  : 0;
	rdma_ack_cm_event(ev);
	return 0;
}

/*
 * raw_connect -- an RC QP connected to dst with pdata; 0 when ESTABLISHED,
 * else the errno tieredd gave in its rejection (positive), or a negative
 * errno when something else failed.
 */
static int raw_connect(const struct sockaddr_in *dst, const void *pdata, uint8_t plen)
{
	struct rdma_event_channel *ec = rdma_create_event_channel();
	struct rdma_cm_id *id = NULL;
	struct ibv_pd *pd = NULL;
	struct ibv_cq *cq = NULL;
	enum rdma_cm_event_type t;
	int rc = -EIO, reject = 0;
	if (!ec || rdma_create_id(ec, &id, NULL, RDMA_PS_TCP) != 0)
		goto out;
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)dst, 2000) != 0 ||
	    wait_event(ec, &t, NULL) != 0 || t != RDMA_CM_EVENT_ADDR_RESOLVED)
		goto out;
	if (rdma_resolve_route(id, 2000) != 0 || wait_event(ec, &t, NULL) != 0 ||
	    t != RDMA_CM_EVENT_ROUTE_RESOLVED)
		goto out;
	pd = ibv_alloc_pd(id->verbs);
	cq = pd ? ibv_create_cq(id->verbs, 4, NULL, NULL, 0) : NULL;
	struct ibv_qp_init_attr qa = {
		.send_cq = cq,
		.recv_cq = cq,
		.cap = {.max_send_wr = 2, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
		.qp_type = IBV_QPT_RC,
	};
	if (!cq || rdma_create_qp(id, pd, &qa) != 0)
		goto out;
	struct rdma_conn_param cp = {.private_data = pdata,
				     .private_data_len = plen,
				     .initiator_depth = 1,
				     .retry_count = 7,
				     .rnr_retry_count = 7};
	if (rdma_connect(id, &cp) != 0 || wait_event(ec, &t, &reject) != 0)
		goto out;
	if (t == RDMA_CM_EVENT_ESTABLISHED) {
		rc = 0;
		rdma_disconnect(id);
	} else if (t == RDMA_CM_EVENT_REJECTED) {
		rc = reject ? reject : -ECONNREFUSED;
	} else {
		rc = -EPROTO;
	}
out:
	if (id && id->qp)
		rdma_destroy_qp(id);
	if (cq)
		ibv_destroy_cq(cq);
	if (pd)
		ibv_dealloc_pd(pd);
	if (id)
		rdma_destroy_id(id);
	if (ec)
		rdma_destroy_event_channel(ec);
	return rc;
}

/* ---- the library's backend --------------------------------------------------- */

struct client {
	struct remote_conn *conn;
	struct remote_chan *ch;
	uint8_t *buf;
	void *desc, *handle;
};

static void client_open(struct client *cl, const struct remote_target *t, const void *secret,
			size_t slen, const char *name)
{
	char err[512];
	if (ops->connect(t, secret, slen, &cl->conn, err, sizeof err) < 0) {
		check(0, name, err);
		exit(1);
	}
	cl->buf = mmap(NULL, LEASE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cl->buf == MAP_FAILED || ops->reg(cl->conn, cl->buf, LEASE, &cl->desc, &cl->handle) < 0)
		die("cannot register a local buffer (RLIMIT_MEMLOCK?)");
	if (ops->chan_open(cl->conn, &cl->ch) < 0) {
		check(0, name, "chan_open failed (see the warning above)");
		exit(1);
	}
}

/* xfer1 -- one transfer of cl->buf[off..off+len) through cl's channel; its completion status */
static int xfer1(struct client *cl, bool write, size_t off, uint64_t raddr, uint64_t key,
		 size_t len)
{
	struct remote_io io = {.buf = cl->buf + off, .desc = cl->desc, .len = len,
			       .raddr = raddr + off, .key = key, .ctx = cl};
	int rc = write ? ops->post_write(cl->ch, &io) : ops->post_read(cl->ch, &io);
	if (rc < 0)
		return rc;
	struct remote_cqe cqe;
	for (int i = 0; i < 100; i++) {
		int n = ops->poll(cl->ch, &cqe, 1, 100);
		if (n < 0)
			return n;
		if (n == 1)
			return cqe.ctx == cl ? cqe.status : -EPROTO;
	}
	return -ETIMEDOUT;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131 + seed + (i >> 12));
}

static size_t bad_bytes(const uint8_t *p, size_t n, unsigned seed)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += p[i] != (uint8_t)(i * 131 + seed + (i >> 12));
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: verbs_probe HOST PORT SECRET_FILE\n");
		return 2;
	}
	int ndev = 0;
	struct ibv_device **devs = ibv_get_device_list(&ndev);
	if (!devs || ndev == 0) {
		printf("SKIP: no RDMA device (ibv_get_device_list found none)\n");
		return 77;
	}
	ibv_free_device_list(devs);
	setvbuf(stdout, NULL, _IOLBF, 0);

	char url[300], err[512], detail[600];
	snprintf(url, sizeof url, "verbs://%s:%s", argv[1], argv[2]);
	struct remote_target t;
	if (remote_parse_target(url, strlen(url), &t, err, sizeof err) < 0)
		die(err);
	uint8_t secret[300];
	int fd = open(argv[3], O_RDONLY);
	ssize_t slen = fd >= 0 ? read(fd, secret, sizeof secret) : -1;
	if (fd >= 0)
		close(fd);
	while (slen > 0 && (secret[slen - 1] == '\n' || secret[slen - 1] == '\r'))
		slen--;
	if (slen < 16)
		die("cannot read a secret of 16 bytes or more");

	/* 1. the wrong secret */
	int cfd;
	struct tdp_msg w;
	if (tdp_connect(t.host, t.port, 5000, &cfd, err, sizeof err) < 0)
		die(err);
	static const char wrong[] = "not-the-secret-0123456789";
	int rc = tdp_handshake(cfd, wrong, sizeof wrong - 1, "verbs_probe", &w, 5000, err,
			       sizeof err);
	close(cfd);
	snprintf(detail, sizeof detail, "rc %d, \"%s\"", rc, err);
	check(rc == -EACCES, "a control connection with the wrong secret is refused", detail);

	/* 2. client A writes its lease and reads it back */
	struct client a = {0}, b = {0};
	client_open(&a, &t, secret, (size_t)slen, "client A connects and opens a queue pair");
	struct remote_lease la;
	if (ops->lease(a.conn, LEASE, &la, err, sizeof err) < 0)
		die(err);
	fill(a.buf, LEASE, 7);
	rc = xfer1(&a, true, 0, la.raddr, la.key, LEASE);
	snprintf(detail, sizeof detail, "status %d", rc);
	check(rc == 0, "client A: RDMA WRITE of 2 MiB into its lease", detail);
	rc = xfer1(&a, true, 100, la.raddr, la.key, 64); /* small: inline */
	check(rc == 0, "client A: a 64-byte (inline) RDMA WRITE", NULL);
	memset(a.buf, 0, LEASE);
	rc = xfer1(&a, false, 0, la.raddr, la.key, LEASE);
	size_t bad = bad_bytes(a.buf, LEASE, 7);
	snprintf(detail, sizeof detail, "status %d, %zu bytes differ", rc, bad);
	check(rc == 0 && bad == 0, "client A: RDMA READ returns every byte it wrote", detail);

	/* 3. client B with A's key */
	client_open(&b, &t, secret, (size_t)slen, "client B connects and opens a queue pair");
	memset(b.buf, 0xee, LEASE);
	rc = xfer1(&b, false, 0, la.raddr, la.key, 4096);
	snprintf(detail, sizeof detail, "status %d (%s)", rc, strerror(rc < 0 ? -rc : 0));
	check(rc < 0, "client B cannot RDMA READ client A's lease with A's key", detail);
	ops->chan_close(b.ch); /* in error now: a fresh one for the write */
	if (ops->chan_open(b.conn, &b.ch) < 0)
		die("client B: cannot open a second channel");
	rc = xfer1(&b, true, 0, la.raddr, la.key, 4096);
	snprintf(detail, sizeof detail, "status %d (%s)", rc, strerror(rc < 0 ? -rc : 0));
	check(rc < 0, "client B cannot RDMA WRITE client A's lease with A's key", detail);
	memset(a.buf, 0, LEASE);
	rc = xfer1(&a, false, 0, la.raddr, la.key, 4096);
	bad = bad_bytes(a.buf, 4096, 7);
	snprintf(detail, sizeof detail, "status %d, %zu bytes differ", rc, bad);
	check(rc == 0 && bad == 0, "client A's bytes are intact", detail);

	/* 4. queue pairs with forged private data, against a third client C */
	if (tdp_connect(t.host, t.port, 5000, &cfd, err, sizeof err) < 0 ||
	    tdp_handshake(cfd, secret, (size_t)slen, "verbs_probe", &w, 5000, err, sizeof err) < 0)
		die(err);
	struct tdp_rc_addr ra;
	if (strcmp(w.u.welcome.provider, TDP_RC_PROVIDER) != 0 ||
	    tdp_rc_addr_get(w.u.welcome.addr, w.u.welcome.addr_len, &ra, err, sizeof err) < 0)
		die("the server's WELCOME is not rdma-rc");
	uint64_t cid = w.u.welcome.client_id;
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(ra.port)};
	memcpy(&dst.sin_addr, ra.ipv4, 4);
	uint8_t proof[TDP_MAC_LEN], pd[TDP_QP_PDATA_LEN];

	tdp_mac_qp(wrong, sizeof wrong - 1, cid, ra.nonce, proof);
	tdp_qp_pdata_put(pd, cid, proof);
	rc = raw_connect(&dst, pd, sizeof pd);
	snprintf(detail, sizeof detail, "%d (%s)", rc, rc > 0 ? strerror(rc) : "not a rejection");
	check(rc == EACCES, "a queue pair proved with the wrong secret is rejected", detail);

	tdp_mac_qp(secret, (size_t)slen, cid, ra.nonce, proof);
	proof[5] ^= 1;
	tdp_qp_pdata_put(pd, cid, proof);
	rc = raw_connect(&dst, pd, sizeof pd);
	snprintf(detail, sizeof detail, "%d (%s)", rc, rc > 0 ? strerror(rc) : "not a rejection");
	check(rc == EACCES, "a queue pair with one bit of its proof flipped is rejected", detail);

	tdp_mac_qp(secret, (size_t)slen, cid, ra.nonce, proof);
	tdp_qp_pdata_put(pd, cid - 1, proof); /* C's proof, claiming another client's id */
	rc = raw_connect(&dst, pd, sizeof pd);
	snprintf(detail, sizeof detail, "%d (%s)", rc, rc > 0 ? strerror(rc) : "not a rejection");
	check(rc == EACCES, "a queue pair claiming another client's id is rejected", detail);

	tdp_qp_pdata_put(pd, 1ULL << 40, proof);
	rc = raw_connect(&dst, pd, sizeof pd);
	snprintf(detail, sizeof detail, "%d (%s)", rc, rc > 0 ? strerror(rc) : "not a rejection");
	check(rc == ENOENT, "a queue pair of an unknown client id is rejected", detail);

	static const char junk[] = "GET / HTTP/1.0\r\n";
	rc = raw_connect(&dst, junk, sizeof junk - 1);
	snprintf(detail, sizeof detail, "%d (%s)", rc, rc > 0 ? strerror(rc) : "not a rejection");
	check(rc == EPROTO, "a queue pair with malformed private data is rejected", detail);
	rc = raw_connect(&dst, NULL, 0);
	snprintf(detail, sizeof detail, "%d (%s)", rc, rc > 0 ? strerror(rc) : "not a rejection");
	check(rc == EPROTO, "a queue pair without private data is rejected", detail);

	tdp_qp_pdata_put(pd, cid, proof);
	rc = raw_connect(&dst, pd, sizeof pd);
	snprintf(detail, sizeof detail, "%d", rc);
	check(rc == 0, "the same connect with the right proof is accepted", detail);
	close(cfd);

	/* the server survived all of it */
	struct remote_server_stats st;
	rc = ops->server_stats(a.conn, &st);
	snprintf(detail, sizeof detail, "clients %llu, errors %llu", (unsigned long long)st.clients,
		 (unsigned long long)st.errors);
	check(rc == 0 && st.errors >= 5, "the server still answers and counted the refusals",
	      detail);

	ops->chan_close(a.ch);
	ops->chan_close(b.ch);
	ops->dereg(a.handle);
	ops->dereg(b.handle);
	ops->close(a.conn);
	ops->close(b.conn);
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
