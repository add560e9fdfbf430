/* The dump disk drivers built in (DUMP_DISK_DRIVER, gathered by linker.ld). */
#include "dump/dumpdisk.h"
#include "lib/string.h"

extern const struct dump_disk_driver __dump_disk_drivers_start[], __dump_disk_drivers_end[];

const struct dump_disk_driver *dump_disk_driver_find(const char *v, size_t len)
{
	for (const struct dump_disk_driver *d = __dump_disk_drivers_start; d < __dump_disk_drivers_end; d++)
		if (strlen(d->word) == len && strncmp(d->word, v, len) == 0)
			return d;
	return 0;
}
