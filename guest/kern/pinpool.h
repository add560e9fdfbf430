/*
 * The pinned pool (docs/components.md, "Pinned memory"): one range carved at boot from the top
 * of the highest usable RAM region below 4 GiB and pinned for the life of the system. The dump
 * facility's global buffer and the RAS staging buffers come from it, at configuration time
 * only: nothing is allocated after a crash.
 */
#ifndef KERN_PINPOOL_H
#define KERN_PINPOOL_H

#include <stdbool.h>
#include <stdint.h>

/* Carve and pin the pool: at least `bytes` (pinpool=), or the default size for 0. Needs the memory
 * map and paging. 0, ENOMEM if the size does not fit above the kernel image, or pin()'s error. */
int pinpool_init(uint64_t bytes);

/* `bytes` rounded up to pages, page aligned, first fit; NULL if it does not fit. The contents
 * are whatever was there (the boot fill pattern, a previous user's data). */
void *pinpool_alloc(uint64_t bytes);
/* 0, or EINVAL if `p` is not the start of an allocation. */
int pinpool_free(void *p);

/* The pool's range; false (and 0, 0) if there is none. */
bool pinpool_range(uint64_t *base, uint64_t *bytes);
/* Bytes not allocated. */
uint64_t pinpool_free_bytes(void);
/* The allocated blocks, in address order, as (physical address, bytes): fills at most `max`,
 * returns how many there are. */
int pinpool_blocks(uint64_t (*out)[2], int max);

#endif
