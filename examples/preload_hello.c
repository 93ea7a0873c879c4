/*
 * preload_hello -- an ordinary malloc program, to run under tiered-run.
 *
 * Nothing here knows about libtiered: it builds a list of records with
 * malloc, grows an array with realloc, frees everything and prints a
 * checksum.  Run it as
 *
 *   tiered-run --dram-limit 16M --stats json -- ./preload_hello 64
 *
 * and every allocation goes to tiered arenas.  The program only looks up
 * tiered_version_string() with dlsym() to say whether libtiered is serving
 * its malloc; the output is otherwise the same with and without it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record {
	struct record *next;
	size_t len;
	char text[]; /* len bytes */
};

int main(int argc, char **argv)
{
	/* MiB to allocate; 64 by default */
	long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 64;
	if (mib <= 0 || mib > 65536) {
		fprintf(stderr, "usage: preload_hello [MiB]\n");
		return 2;
	}

	const char *(*version)(void) =
	    (const char *(*)(void))dlsym(RTLD_DEFAULT, "tiered_version_string");
	if (version)
		fprintf(stderr, "preload_hello: malloc is served by libtiered %s\n", version());
	else
		fprintf(stderr,
		        "preload_hello: malloc is the system's (start me with tiered-run)\n");

	/* A linked list of records from 32 bytes to 64 KiB, about mib MiB in all. */
	size_t goal = (size_t)mib << 20, total = 0, count = 0;
	struct record *head = NULL;
	uint32_t x = 12345;
	while (total < goal) {
		x = x * 1103515245u + 12345u;
		size_t len = 32 + (x >> 8) % (64 << 10);
		struct record *r = malloc(sizeof *r + len);
		if (!r) {
			perror("preload_hello: malloc");
			return 1;
		}
		r->len = len;
		for (size_t i = 0; i < len; i++)
			r->text[i] = (char)('a' + (count + i) % 26);
		r->next = head;
		head = r;
		total += len;
		count++;
	}

	/* An array grown by realloc, one pointer at a time. */
	struct record **index = NULL;
	size_t n = 0;
	for (struct record *r = head; r; r = r->next) {
		struct record **bigger = realloc(index, (n + 1) * sizeof *index);
		if (!bigger) {
			perror("preload_hello: realloc");
			return 1;
		}
		index = bigger;
		index[n++] = r;
	}

	/* Checksum every byte, then free it all. */
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < index[i]->len; j++)
			sum = sum * 31 + (unsigned char)index[i]->text[j];
		free(index[i]);
	}
	free(index);
	printf("hello from preload_hello: %zu records, %zu bytes, checksum %016llx\n", count, total,
	       (unsigned long long)sum);
	return 0;
}
