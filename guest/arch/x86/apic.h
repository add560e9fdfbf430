#ifndef ARCH_X86_APIC_H
#define ARCH_X86_APIC_H

#include <stdbool.h>
#include <stdint.h>

/* Enable the local APIC with every LVT masked except LINT1, which delivers NMIs (QEMU routes
 * the monitor's inject-nmi through LINT1 when the APIC is emulated in user space). */
bool apic_init(void);

/* Send an NMI to this CPU through the ICR. */
void apic_self_nmi(void);

uint64_t apic_base(void);
uint32_t apic_id(void);

#endif
