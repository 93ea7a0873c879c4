/* Allocate, grow and free memory from the default arena. */
#include <stdio.h>
#include <tiered.h>

struct point {
	double x, y;
};

int main(void)
{
	size_t n = 1000;
	struct point *pts, *more;
	void *page;

	pts = tiered_calloc(NULL, n, sizeof(*pts));
	if (pts == NULL) {
		perror("tiered_calloc");
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		pts[i].x = pts[i].y = (double)i;

	/* Grow the array; on failure the old one is still valid. */
	more = tiered_realloc(NULL, pts, 2 * n * sizeof(*pts));
	if (more == NULL) {
		perror("tiered_realloc");
		tiered_free(pts);
		return 1;
	}
	pts = more;

	page = tiered_aligned_alloc(NULL, 4096, 4096);
	if (page == NULL) {
		perror("tiered_aligned_alloc");
		tiered_free(pts);
		return 1;
	}

	printf("points: %zu usable bytes at %p\n",
	       tiered_malloc_usable_size(pts), (void *)pts);
	printf("page:   %zu usable bytes at %p\n",
	       tiered_malloc_usable_size(page), page);

	tiered_free(page);
	tiered_free(pts);
	return 0;
}
