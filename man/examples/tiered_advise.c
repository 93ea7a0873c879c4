/* Keep an index on DRAM; let a journal go to the CXL tier first. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <tiered.h>

/* n rounded up to a whole number of blocks */
static size_t round_to_block(size_t n, size_t block)
{
	return (n + block - 1) / block * block;
}

int main(void)
{
	size_t block, len = sizeof(block);
	size_t index_size, journal_size;
	uint64_t *index;
	char *journal;
	int rc, local;

	rc = tiered_ctl("opt.block_size", &block, &len, NULL, 0);
	if (rc < 0) {
		fprintf(stderr, "opt.block_size: %s\n",
		        tiered_strerror(rc));
		return 1;
	}
	index_size = round_to_block((size_t)8 << 20, block);
	journal_size = round_to_block((size_t)64 << 20, block);

	/* Block-aligned: no other allocation shares these blocks. */
	index = tiered_aligned_alloc(NULL, block, index_size);
	journal = tiered_aligned_alloc(NULL, block, journal_size);
	if (index == NULL || journal == NULL) {
		perror("tiered_aligned_alloc");
		return 1;
	}

	/* The index is read on every request: it must stay on DRAM. */
	rc = tiered_advise(index, index_size, TIERED_ADV_PIN);
	if (rc == 0) /* The journal is written once and seldom read. */
		rc = tiered_advise(journal, journal_size,
		                   TIERED_ADV_STREAMING);
	if (rc < 0) {
		fprintf(stderr, "tiered_advise: %s: %s\n",
		        tiered_strerror(rc), tiered_errormsg());
		return 1;
	}
	memset(index, 0, index_size);
	memset(journal, 'x', journal_size);

	/* About to replay the journal: back to DRAM if there is room.
	 */
	rc = tiered_advise(journal, journal_size, TIERED_ADV_WILLNEED);
	if (rc < 0)
		fprintf(stderr, "tiered_advise: %s\n",
		        tiered_strerror(rc));

	/* Memory that does not come from libtiered is refused. */
	rc = tiered_advise(&local, sizeof(local), TIERED_ADV_HOT);
	printf("advice on a stack variable: %s\n",
	       rc == -EFAULT ? "EFAULT" : "unexpected");

	tiered_advise(index, index_size, TIERED_ADV_UNPIN);
	tiered_free(journal);
	tiered_free(index);
	return 0;
}
