/* The pinned pool: a first-fit page allocator over one pinned range. */
#include "kern/pinpool.h"
#include "arch/x86/boot.h"
#include "arch/x86/pin.h"
#include "kern/memmap.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define PAGE		4096ull
#define SIZE_ALIGN	(2ull << 20)
#define DEFAULT_MAX	(64ull << 20)
#define LOW_4G		(4ull << 30)
/* Global buffer, one staging buffer per component, the shared one, and a reallocation's
 * overlap: far more than ever in use at once. */
#define MAX_BLOCKS	80

struct block {
	uint64_t first;		/* page index within the pool */
	uint64_t pages;
};

static uint64_t pool_base, pool_pages;
/* Allocated blocks sorted by first page: the gaps between them are the free space. */
static struct block blocks[MAX_BLOCKS];
static int nblocks;

int pinpool_init(uint64_t bytes)
{
	const struct mem_region *top = 0;
	uint64_t size, start, end, floor;
	uint64_t kend = ((uintptr_t)__kernel_end + PAGE - 1) & ~(PAGE - 1);
	int err;

	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);

		if (r->type == MMAP_TYPE_USABLE && r->base < LOW_4G && (!top || r->base > top->base))
			top = r;
	}
	if (!top) {
		printf("pinpool: no usable RAM below 4 GiB\n");
		return ENOMEM;
	}
	size = bytes;
	if (size) {
		/* An explicit size is a minimum: round it up, never down to an empty pool. */
		size = (size + SIZE_ALIGN - 1) & ~(SIZE_ALIGN - 1);
	} else {
		size = memmap_usable_bytes() / 4;
		if (size > DEFAULT_MAX)
			size = DEFAULT_MAX;
		size &= ~(SIZE_ALIGN - 1);
		if (!size)
			size = SIZE_ALIGN;
	}

	end = top->base + top->len;
	if (end > LOW_4G)
		end = LOW_4G;
	end &= ~(PAGE - 1);
	/* Never over the kernel image (the region that holds it also holds the pool on small
	 * guests) nor below the first page of the region. */
	floor = (top->base + PAGE - 1) & ~(PAGE - 1);
	if (floor < kend && kend <= end)
		floor = kend;
	if (size > end || end - size < floor) {
		printf("pinpool: %llu bytes do not fit in RAM %#llx-%#llx above the kernel\n",
		       (unsigned long long)size, (unsigned long long)floor, (unsigned long long)end);
		return ENOMEM;
	}
	start = end - size;
	if (size) {
		err = pin((const void *)(uintptr_t)start, size);
		if (err) {
			printf("pinpool: pin %#llx-%#llx: %s\n", (unsigned long long)start,
			       (unsigned long long)end, errno_name(err));
			return err;
		}
	}
	pool_base = start;
	pool_pages = size / PAGE;
	nblocks = 0;
	printf("pinpool: %llu KiB at %#llx-%#llx\n", (unsigned long long)(size >> 10),
	       (unsigned long long)start, (unsigned long long)end);
	return 0;
}

void *pinpool_alloc(uint64_t bytes)
{
	uint64_t pages, at = 0;
	int i;

	if (bytes == 0 || bytes > pool_pages * PAGE || nblocks == MAX_BLOCKS)
		return 0;
	pages = (bytes + PAGE - 1) / PAGE;
	/* The first gap (before block i, or after the last) with room. */
	for (i = 0; i < nblocks; i++) {
		if (blocks[i].first - at >= pages)
			break;
		at = blocks[i].first + blocks[i].pages;
	}
	if (i == nblocks && pool_pages - at < pages)
		return 0;
	memmove(&blocks[i + 1], &blocks[i], (size_t)(nblocks - i) * sizeof(blocks[0]));
	blocks[i] = (struct block){ at, pages };
	nblocks++;
	return (void *)(uintptr_t)(pool_base + at * PAGE);
}

int pinpool_free(void *p)
{
	uint64_t a = (uintptr_t)p;

	if (a < pool_base || (a - pool_base) % PAGE)
		return EINVAL;
	for (int i = 0; i < nblocks; i++)
		if (blocks[i].first == (a - pool_base) / PAGE) {
			memmove(&blocks[i], &blocks[i + 1], (size_t)(nblocks - i - 1) * sizeof(blocks[0]));
			nblocks--;
			return 0;
		}
	return EINVAL;
}

bool pinpool_range(uint64_t *base, uint64_t *bytes)
{
	*base = pool_pages ? pool_base : 0;
	*bytes = pool_pages * PAGE;
	return pool_pages != 0;
}

int pinpool_blocks(uint64_t (*out)[2], int max)
{
	for (int i = 0; i < nblocks && i < max; i++) {
		out[i][0] = pool_base + blocks[i].first * PAGE;
		out[i][1] = blocks[i].pages * PAGE;
	}
	return nblocks;
}

uint64_t pinpool_free_bytes(void)
{
	uint64_t used = 0;

	for (int i = 0; i < nblocks; i++)
		used += blocks[i].pages;
	return (pool_pages - used) * PAGE;
}
