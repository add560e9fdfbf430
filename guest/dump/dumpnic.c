/* The network dump NIC drivers built in (DUMP_NIC_DRIVER, gathered by linker.ld). */
#include "dump/dumpnic.h"
#include "lib/string.h"

extern const struct dump_nic_driver __dump_nic_drivers_start[], __dump_nic_drivers_end[];

const struct dump_nic_driver *dump_nic_driver_find(const char *v, size_t len)
{
	for (const struct dump_nic_driver *d = __dump_nic_drivers_start; d < __dump_nic_drivers_end; d++)
		if (strlen(d->word) == len && strncmp(d->word, v, len) == 0)
			return d;
	return 0;
}
