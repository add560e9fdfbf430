/* The word lookup of linker sets (lib/linkset.h). */
#include "lib/linkset.h"
#include "lib/string.h"

const void *linkset_find_word(const void *start, const void *end, size_t stride, size_t word_off, const char *v,
			      size_t len)
{
	for (const char *e = start; e < (const char *)end; e += stride) {
		const char *word = *(const char *const *)(e + word_off);

		if (strlen(word) == len && strncmp(word, v, len) == 0)
			return e;
	}
	return 0;
}
