/*
 * remote_verbs_none.c -- remote_verbs_ops when libtiered is built without
 * librdmacm and libibverbs (configure found no rdma/rdma_cma.h or
 * infiniband/verbs.h): connect to a verbs:// server fails with -ENOTSUP and
 * says what to install.  The other operations are never reached (there is
 * no connection to call them on); they fail the same way.
 */
#include <errno.h>
#include <stdio.h>

#include "remote.h"

static int none_connect(const struct remote_target *t, const void *secret, size_t secret_len,
			struct remote_conn **out, char *err, size_t errlen)
{
	*out = NULL;
	snprintf(err, errlen,
		 "built without librdmacm/libibverbs: install librdmacm-dev libibverbs-dev and "
		 "rebuild (or use fi-verbs:// for libfabric's verbs provider)");
	return -ENOTSUP;
}

static int none_lease(struct remote_conn *c, uint64_t bytes, struct remote_lease *out, char *err,
		      size_t errlen)
{
	snprintf(err, errlen, "verbs: built without librdmacm/libibverbs");
	return -ENOTSUP;
}

static int none_release(struct remote_conn *c, uint64_t lease_id)
{
	return -ENOTSUP;
}

static int none_report(struct remote_conn *c, uint64_t bytes_written, uint64_t bytes_read)
{
	return -ENOTSUP;
}

static int none_server_stats(struct remote_conn *c, struct remote_server_stats *out)
{
	return -ENOTSUP;
}

static int none_check(struct remote_conn *c)
{
	return -ENOTSUP;
}

static int none_reg(struct remote_conn *c, void *buf, size_t len, void **desc, void **handle)
{
	return -ENOTSUP;
}

static void none_dereg(void *handle)
{
}

static int none_chan_open(struct remote_conn *c, struct remote_chan **out)
{
	*out = NULL;
	return -ENOTSUP;
}

static void none_chan_close(struct remote_chan *ch)
{
}

static int none_post(struct remote_chan *ch, const struct remote_io *io)
{
	return -ENOTSUP;
}

static int none_poll(struct remote_chan *ch, struct remote_cqe *cqe, int max, int timeout_ms)
{
	return -ENOTSUP;
}

static void none_close(struct remote_conn *c)
{
}

static const char *none_name_of(struct remote_conn *c)
{
	return "verbs://(not built)";
}

static struct remote_ctl *none_ctl(struct remote_conn *c)
{
	return NULL;
}

const struct remote_ops remote_verbs_ops = {
	.name = "verbs (not built)",
	.connect = none_connect,
	.lease = none_lease,
	.release = none_release,
	.report = none_report,
	.server_stats = none_server_stats,
	.check = none_check,
	.reg = none_reg,
	.dereg = none_dereg,
	.chan_open = none_chan_open,
	.chan_close = none_chan_close,
	.post_read = none_post,
	.post_write = none_post,
	.poll = none_poll,
	.close = none_close,
	.name_of = none_name_of,
	.ctl = none_ctl,
};
