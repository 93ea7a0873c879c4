/*
 * error.c -- tiered_strerror() and the thread-local detail message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread char t_errmsg[512];

int set_error(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t_errmsg, sizeof t_errmsg, fmt, ap);
	va_end(ap);
	return err;
}

void clear_error(void)
{
	t_errmsg[0] = 0;
}

TIERED_EXPORT const char *tiered_errormsg(void)
{
	return t_errmsg;
}

TIERED_EXPORT const char *tiered_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case -EINVAL: return "invalid argument";
	case -ENOMEM: return "out of memory";
	case -ENOENT: return "no such name";
	case -EPERM: return "not allowed (read-only or not writable now)";
	case -ENODEV: return "no such NUMA node or tier";
	case -EBUSY: return "busy";
	case -ENOSPC: return "no arena slots left";
	case -EFAULT: return "address not in a tiered arena";
	case -ENOSYS: return "not supported on this system";
	default: return "unknown error";
	}
}
