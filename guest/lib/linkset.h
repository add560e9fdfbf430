/*
 * Linker sets (entries gathered into one section by linker.ld, between a start and an end
 * symbol): the lookup of an entry by the word it is known by on the command line.
 */
#ifndef LIB_LINKSET_H
#define LIB_LINKSET_H

#include <stddef.h>

/*
 * The entry of the set [start, end) (entries `stride` bytes apart) whose `const char *` member
 * at byte offset `word_off` is v[0..len), or NULL.
 */
const void *linkset_find_word(const void *start, const void *end, size_t stride, size_t word_off, const char *v,
			      size_t len);

#endif
