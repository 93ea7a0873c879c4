/*
 * chan_mem.c -- the resident memory one remote-tier channel costs.
 *
 *   chan_mem URL SECRET_FILE [CHANNELS]
 *
 * Connects to the tieredd at URL (tcp://127.0.0.1:PORT, shm://..., as in
 * the remote configuration key) the way the library does (the library's
 * own backend, lib/remote_fabric.c), takes a 2 MiB lease, then opens
 * CHANNELS channels (default 4) one after the other and moves 2 MiB
 * through each, a write then a read of 64 KiB pieces.  A channel is what
 * each runtime thread (fault threads, eviction, maintenance) holds to each
 * server.  Prints VmRSS before and after each step, and the growth per
 * channel: when the endpoint is opened, and when its first transfer
 * connects it.  libfabric reads its FI_* variables from the environment,
 * so their effect shows by running this under them (bench/README.md,
 * "Memory per channel").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remote.h"

#define LEN (2UL << 20)
#define PIECE (64UL << 10)

static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

/* Move LEN bytes through ch: writes (write) or reads of PIECE bytes. */
static int move(const struct remote_ops *ops, struct remote_chan *ch, char *buf, void *desc,
		const struct remote_lease *l, int write)
{
	size_t posted = 0, done = 0, n = LEN / PIECE;
	int idle = 0;
	struct remote_cqe cqe[32];
	while (done < n) {
		while (posted < n) {
			struct remote_io io = {.buf = buf + posted * PIECE,
					       .desc = desc,
					       .len = PIECE,
					       .raddr = l->raddr + posted * PIECE,
					       .key = l->key,
					       .ctx = (void *)(posted + 1)};
			int rc = write ? ops->post_write(ch, &io) : ops->post_read(ch, &io);
			if (rc == -EAGAIN)
				break;
			if (rc < 0)
				return rc;
			posted++;
		}
		/* 0 also while the first post waits for the connection (-EAGAIN, none in flight) */
		int got = ops->poll(ch, cqe, 32, 100);
		if (got < 0)
			return got;
		if (got == 0) {
			if (++idle > 100000)
				return -ETIMEDOUT; /* 10 s without a completion */
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		}
		for (int i = 0; i < got; i++)
			if (cqe[i].status < 0)
				return cqe[i].status;
		if (got > 0)
			idle = 0;
		done += (size_t)got;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: chan_mem URL SECRET_FILE [CHANNELS]\n");
		return 2;
	}
	int nch = argc == 4 ? atoi(argv[3]) : 4;
	if (nch < 1 || nch > 64) {
		fprintf(stderr, "chan_mem: CHANNELS '%s': expected 1 to 64\n", argv[3]);
		return 2;
	}
	char secret[512], err[512];
	FILE *f = fopen(argv[2], "r");
	size_t slen = f ? fread(secret, 1, sizeof secret, f) : 0;
	if (f)
		fclose(f);
	while (slen > 0 && (secret[slen - 1] == '\n' || secret[slen - 1] == '\r'))
		slen--;
	if (slen == 0) {
		fprintf(stderr, "chan_mem: cannot read a secret from '%s'\n", argv[2]);
		return 1;
	}
	struct remote_target t;
	if (remote_parse_target(argv[1], strlen(argv[1]), &t, err, sizeof err) != 0) {
		fprintf(stderr, "chan_mem: %s\n", err);
		return 2;
	}
	const struct remote_ops *ops = &remote_fabric_ops;
	struct remote_conn *c;
	long base = rss_kb();
	if (ops->connect(&t, secret, slen, &c, err, sizeof err) != 0) {
		fprintf(stderr, "chan_mem: %s\n", err);
		return 1;
	}
	struct remote_lease l;
	if (ops->lease(c, LEN, &l, err, sizeof err) != 0) {
		fprintf(stderr, "chan_mem: lease: %s\n", err);
		return 1;
	}
	char *buf = aligned_alloc(4096, LEN);
	void *desc = NULL, *handle = NULL;
	if (!buf || ops->reg(c, buf, LEN, &desc, &handle) != 0) {
		fprintf(stderr, "chan_mem: cannot register the buffer\n");
		return 1;
	}
	memset(buf, 0x5a, LEN);
	long before = rss_kb(), opened = 0, moved = 0;
	printf("connected, leased, buffer registered: VmRSS %ld KiB (+%ld since start)\n", before,
	       before - base);
	for (int i = 0; i < nch; i++) {
		struct remote_chan *ch;
		long r0 = rss_kb();
		if (ops->chan_open(c, &ch) != 0) {
			fprintf(stderr, "chan_mem: cannot open channel %d\n", i + 1);
			return 1;
		}
		long r1 = rss_kb();
		int rc = move(ops, ch, buf, desc, &l, 1);
		if (rc == 0)
			rc = move(ops, ch, buf, desc, &l, 0);
		if (rc != 0) {
			fprintf(stderr, "chan_mem: transfer on channel %d: %s\n", i + 1, strerror(-rc));
			return 1;
		}
		long r2 = rss_kb();
		printf("channel %d: open +%ld KiB, first transfers +%ld KiB\n", i + 1, r1 - r0,
		       r2 - r1);
		opened += r1 - r0;
		moved += r2 - r1;
	}
	printf("per channel: %.1f MiB (%.1f MiB at open, %.1f MiB at its first transfers); "
	       "FI_OFI_RXM_MSG_RX_SIZE=%s\n",
	       (double)(opened + moved) / 1024 / nch, (double)opened / 1024 / nch,
	       (double)moved / 1024 / nch,
	       getenv("FI_OFI_RXM_MSG_RX_SIZE") ? getenv("FI_OFI_RXM_MSG_RX_SIZE") : "(unset)");
	/* The channels stay open: closing is not what is measured. */
	return 0;
}
