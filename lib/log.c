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
#include "proto.h"

TIERED_HIDDEN _Atomic int g_log_level = LOG_WARN;

void tlog(int level, const char *fmt, ...)
{
	if (level > ATOMIC_LOAD_RELAXED(&g_log_level))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_line("libtiered", level, fmt, ap);
	va_end(ap);
}
