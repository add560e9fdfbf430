/* The network dump NIC drivers built in (DUMP_NIC_DRIVER, gathered by linker.ld). */
#include "dump/dumpnic.h"
#include "lib/linkset.h"

extern const struct dump_nic_driver __dump_nic_drivers_start[], __dump_nic_drivers_end[];

const struct dump_nic_driver *dump_nic_driver_find(const char *v, size_t len)
{
	return linkset_find_word(__dump_nic_drivers_start, __dump_nic_drivers_end, sizeof(struct dump_nic_driver),
				 offsetof(struct dump_nic_driver, word), v, len);
}
