/*
 * log.c -- one-line messages on stderr, "libtiered: <level>: text".
 *
 * Never allocates (the preload library logs before any allocator is ready)
 * and writes each line with one write(2) so lines of threads do not mix.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

TIERED_HIDDEN _Atomic int g_log_level = LOG_WARN;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void tlog(int level, const char *fmt, ...)
{
	if (level > ATOMIC_LOAD_RELAXED(&g_log_level))
		return;
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "libtiered: %s: ", level_names[level & 3]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof buf - 2)
		len = sizeof buf - 2;
	buf[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, len);
	(void)w;
}
