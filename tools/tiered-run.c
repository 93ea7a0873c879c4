/*
 * tiered-run -- run a program under libtiered_preload.so, like numactl does
 * for NUMA policy: options become TIERED_CONF, the library goes in
 * LD_PRELOAD, and the program is exec'ed.  --params lists every tunable.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifndef TIERED_PRELOAD_PATH
#define TIERED_PRELOAD_PATH "libtiered_preload.so"
#endif

static const char default_preload[] = TIERED_PRELOAD_PATH;

static const char *type_name(enum conf_type t)
{
	switch (t) {
	case CONF_SIZE: return "size";
	case CONF_INT: return "int";
	case CONF_NODE: return "node";
	case CONF_BOOL: return "bool";
	case CONF_ENUM: return "enum";
	case CONF_STRING: return "string";
	case CONF_PERCENT: return "percent";
	case CONF_REMOTE: return "remote";
	}
	return "?";
}

static void print_params(void)
{
	printf("%-20s %-8s %-8s %-28s %s\n", "KEY", "TYPE", "DEFAULT", "RANGE", "HELP");
	for (size_t i = 0; i < g_conf_ndefs; i++) {
		const struct conf_def *d = &g_conf_defs[i];
		char range[128];
		switch (d->type) {
		case CONF_SIZE:
			snprintf(range, sizeof range, "%lld..%lld bytes", d->min, d->max);
			break;
		case CONF_NODE:
			snprintf(range, sizeof range, "auto, none, 0..%lld", d->max);
			break;
		case CONF_ENUM: {
			size_t o = 0;
			range[0] = 0;
			for (int k = 0; d->choices[k]; k++)
				o += (size_t)snprintf(range + o, sizeof range - o, "%s%s", k ? "|" : "",
						      d->choices[k]);
			break;
		}
		case CONF_STRING:
			snprintf(range, sizeof range, "up to %lld chars", d->max);
			break;
		case CONF_REMOTE:
			snprintf(range, sizeof range, "none|spawn|prov://host:port");
			break;
		case CONF_BOOL:
			snprintf(range, sizeof range, "true|false");
			break;
		default:
			snprintf(range, sizeof range, "%lld..%lld", d->min, d->max);
		}
		printf("%-20s %-8s %-8s %-28s %s%s%s\n", d->name, type_name(d->type),
		       d->dflt[0] ? d->dflt : "\"\"", range, d->help,
		       (d->flags & CONF_ARENA) ? " [arena]" : "",
		       (d->flags & CONF_RUNTIME) ? " [runtime]" : "");
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tiered-run [options] -- program [args...]\n"
		"       tiered-run --params | --help | --version\n"
		"options:\n"
		"  --dram-limit SIZE     DRAM budget (K/M/G/T or %% of memory; 0 = none)\n"
		"  --cxl-node NODE       auto, none or a node number\n"
		"  --cxl-limit SIZE      budget on the CXL node (0 = none)\n"
		"  --block-size SIZE     placement unit, power of two 4K..2M\n"
		"  --stats text|json     print statistics at exit\n"
		"  --stats-file PATH     ... into this file instead of stderr\n"
		"  --log-level LEVEL     error, warn, info or debug\n"
		"  --conf KEY:VAL[,...]  any tunable (see --params)\n"
		"  --preload PATH        the preload library (default %s)\n",
		TIERED_PRELOAD_PATH);
}

static void report(const char *msg, void *arg)
{
	fprintf(stderr, "tiered-run: %s\n", msg);
	*(int *)arg = 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dram-limit", required_argument, NULL, 'd'}, {"cxl-node", required_argument, NULL, 'c'},
		{"cxl-limit", required_argument, NULL, 'l'},  {"block-size", required_argument, NULL, 'b'},
		{"stats", required_argument, NULL, 's'},      {"stats-file", required_argument, NULL, 'f'},
		{"log-level", required_argument, NULL, 'L'},  {"conf", required_argument, NULL, 'C'},
		{"preload", required_argument, NULL, 'p'},    {"params", no_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},	      {"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}};
	char conf[4096] = "";
	size_t clen = 0;
	const char *preload = getenv("TIERED_PRELOAD");
	if (!preload || !*preload)
		preload = default_preload;
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		const char *key = NULL;
		switch (c) {
		case 'd': key = "dram_limit"; break;
		case 'c': key = "cxl_node"; break;
		case 'l': key = "cxl_limit"; break;
		case 'b': key = "block_size"; break;
		case 's': key = "stats_print"; break;
		case 'f': key = "stats_file"; break;
		case 'L': key = "log_level"; break;
		case 'C':
			clen += (size_t)snprintf(conf + clen, sizeof conf - clen, "%s%s", clen ? "," : "",
						 optarg);
			break;
		case 'p': preload = optarg; break;
		case 'P': print_params(); return 0;
		case 'h': usage(stdout); return 0;
		case 'V': printf("tiered-run (libtiered) %s\n", tiered_version_string()); return 0;
		default: usage(stderr); return 2;
		}
		if (key)
			clen += (size_t)snprintf(conf + clen, sizeof conf - clen, "%s%s:%s",
						 clen ? "," : "", key, optarg);
		if (clen >= sizeof conf) {
			fprintf(stderr, "tiered-run: options too long\n");
			return 2;
		}
	}
	/* validate with the library's own parser so errors come before exec */
	struct tiered_conf tc;
	conf_defaults(&tc);
	if (conf_parse_string(&tc, conf, report, &bad) < 0 || bad)
		return 2;
	if (optind >= argc) {
		fprintf(stderr, "tiered-run: no program given\n");
		usage(stderr);
		return 2;
	}
	char local[4096];
	if (preload == default_preload && access(preload, R_OK) != 0) {
		/* not installed: in a build tree the library sits in .libs beside us */
		ssize_t n = readlink("/proc/self/exe", local, sizeof local - 32);
		if (n > 0) {
			local[n] = 0;
			char *slash = strrchr(local, '/');
			if (slash) {
				strcpy(slash, "/.libs/libtiered_preload.so");
				if (access(local, R_OK) == 0)
					preload = local;
			}
		}
	}
	if (access(preload, R_OK) != 0) {
		fprintf(stderr, "tiered-run: preload library %s: %s\n", preload, strerror(errno));
		return 2;
	}
	/* options extend an existing TIERED_CONF and win over it */
	const char *old = getenv("TIERED_CONF");
	char all[8192];
	snprintf(all, sizeof all, "%s%s%s", old && *old ? old : "", old && *old && clen ? "," : "",
		 conf);
	if (clen || (old && *old))
		setenv("TIERED_CONF", all, 1);
	const char *lp = getenv("LD_PRELOAD");
	char pl[8192];
	snprintf(pl, sizeof pl, "%s%s%s", preload, lp && *lp ? ":" : "", lp && *lp ? lp : "");
	setenv("LD_PRELOAD", pl, 1);
	execvp(argv[optind], argv + optind);
	fprintf(stderr, "tiered-run: cannot run %s: %s\n", argv[optind], strerror(errno));
	return 127;
}
