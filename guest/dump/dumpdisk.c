/* The dump disk drivers built in (DUMP_DISK_DRIVER, gathered by linker.ld). */
#include "dump/dumpdisk.h"
#include "lib/linkset.h"
#include "lib/string.h"

extern const struct dump_disk_driver __dump_disk_drivers_start[], __dump_disk_drivers_end[];

const struct dump_disk_driver *dump_disk_driver_find(const char *v, size_t len)
{
	return linkset_find_word(__dump_disk_drivers_start, __dump_disk_drivers_end, sizeof(struct dump_disk_driver),
				 offsetof(struct dump_disk_driver, word), v, len);
}
