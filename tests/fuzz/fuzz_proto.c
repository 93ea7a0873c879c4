/*
 * fuzz_proto.c -- the control protocol's parser (lib/proto.c) under a
 * coverage-guided fuzzer.
 *
 * The input is a byte stream as a peer would send it: header, payload,
 * header, payload...  Each message is checked and decoded exactly as
 * tieredd and the library do (tdp_check_hdr, then tdp_decode on the
 * payload); every message that decodes is encoded again and must come out
 * byte for byte as it went in (the wire form is canonical), and decode again
 * to the same fields.  The whole input also goes through the rdma-rc
 * decoders (queue-pair private data, rejections, the WELCOME address).  A crash, a sanitizer report or a failed comparison is
 * a finding.
 *
 * Two builds:
 *  - with libFuzzer (clang -fsanitize=fuzzer): `make fuzz` (tests/fuzz/local.mk);
 *  - with -DFUZZ_REPLAY, a plain program that runs the function once per file
 *    named on its command line (directories: every file in them), for
 *    `make check` to replay the corpus and every past crash
 *    (tests/fuzz/corpus, tests/fuzz/regressions).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void finding(const char *what, const struct tdp_hdr *h)
{
	fprintf(stderr, "fuzz_proto: %s (message type %u, payload %u bytes)\n", what, h->type,
		h->len);
	abort();
}

/*
 * The rdma-rc decoders: a queue pair's private data as tieredd's rdma_cm
 * listener gets it (any bytes, any length), a rejection as a client gets it,
 * and a WELCOME's rdma-rc address; what decodes must encode back the same.
 */
static void rdma_rc(const uint8_t *data, size_t size)
{
	static const struct tdp_hdr none;
	char err[256];
	uint64_t id;
	uint8_t proof[TDP_MAC_LEN], buf[TDP_QP_PDATA_LEN > TDP_RC_ADDR_LEN ? TDP_QP_PDATA_LEN
									: TDP_RC_ADDR_LEN];
	err[0] = 0;
	if (tdp_qp_pdata_get(data, size, &id, proof, err, sizeof err) == 0) {
		tdp_qp_pdata_put(buf, id, proof);
		if (memcmp(buf, data, TDP_QP_PDATA_LEN) != 0)
			finding("queue-pair private data does not encode back", &none);
	} else if (!err[0]) {
		finding("refused private data without a message", &none);
	}
	int code = tdp_qp_reject_get(data, size);
	if (code < 0 || code > 4095)
		finding("a rejection's code out of range", &none);
	struct tdp_rc_addr a;
	err[0] = 0;
	if (tdp_rc_addr_get(data, size, &a, err, sizeof err) == 0) {
		tdp_rc_addr_put(buf, &a);
		if (memcmp(buf, data, TDP_RC_ADDR_LEN) != 0)
			finding("an rdma-rc address does not encode back", &none);
	} else if (!err[0]) {
		finding("refused rdma-rc address without a message", &none);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[TDP_MAX_MSG];
	char err[256];
	rdma_rc(data, size);
	while (size >= TDP_HDR_LEN) {
		struct tdp_hdr h;
		if (tdp_check_hdr(data, &h, err, sizeof err) != 0)
			break;
		if (h.len > size - TDP_HDR_LEN)
			break; /* a peer's short message: the reader waits for more */
		struct tdp_msg m, m2;
		err[0] = 0;
		if (tdp_decode(h.type, data + TDP_HDR_LEN, h.len, &m, err, sizeof err) == 0) {
			ssize_t n = tdp_encode(&m, out, sizeof out);
			if (n < 0)
				finding("a decoded message does not encode", &h);
			if ((size_t)n != TDP_HDR_LEN + h.len ||
			    memcmp(out, data, (size_t)n) != 0)
				finding("encode(decode(x)) differs from x", &h);
			if (tdp_decode(h.type, out + TDP_HDR_LEN, h.len, &m2, err, sizeof err) != 0)
				finding("an encoded message does not decode", &h);
			if (memcmp(&m, &m2, sizeof m) != 0)
				finding("decode(encode(m)) differs from m", &h);
			if (h.type == TDP_WELCOME &&
			    strcmp(m.u.welcome.provider, TDP_RC_PROVIDER) == 0)
				rdma_rc(m.u.welcome.addr, m.u.welcome.addr_len);
		} else if (strlen(err) == 0) {
			finding("a refusal without a message", &h);
		}
		data += TDP_HDR_LEN + h.len;
		size -= TDP_HDR_LEN + h.len;
	}
	return 0;
}

#ifdef FUZZ_REPLAY
static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

static int replay(const char *path, unsigned *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		++*count;
		return replay_file(path);
	}
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		return 1;
	}
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", path, e->d_name);
		rc |= replay(p, count);
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int rc = 0;
	for (int i = 1; i < argc; i++)
		rc |= replay(argv[i], &count);
#ifdef FUZZ_DIRS
	if (argc == 1) { /* make check: the corpus and every past finding */
		static const char *dirs[] = {FUZZ_DIRS};
		for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
			rc |= replay(dirs[i], &count);
	}
#endif
	printf("fuzz_proto: replayed %u inputs\n", count);
	return rc || count == 0;
}
#endif
