/*
 * verbs_none.c -- dpath_verbs_ops when tieredd is built without librdmacm
 * and libibverbs: -P verbs fails at start-up and says what to install.
 * Nothing else is reached (open never succeeds).
 */
#include <errno.h>
#include <stdio.h>

#include "tieredd.h"

static int none_open(struct server *s, struct dpath **out, char *err, size_t errlen)
{
	*out = NULL;
	snprintf(err, errlen,
		 "built without librdmacm/libibverbs: install librdmacm-dev libibverbs-dev and "
		 "rebuild (or use -P fi-verbs, libfabric's verbs provider)");
	return -ENOTSUP;
}

const struct dpath_ops dpath_verbs_ops = {
	.open = none_open,
	.manual_progress = false,
};
