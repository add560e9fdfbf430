/*
 * The I/O APIC, for level-triggered PCI INTx lines (runtime I/O only; bus/pci.c brings a PCI
 * interrupt pin to an ISA IRQ, which on QEMU's `pc` machine is the I/O APIC pin of that number)
 * and the edge-triggered ISA line of COM1 (IRQ 4, the shell's wait for a key: kern/irq.h).
 */
#ifndef ARCH_X86_IOAPIC_H
#define ARCH_X86_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

/* Route I/O APIC pin `pin` to `vector` on this CPU: fixed, physical, active high,
 * level-triggered, masked until ioapic_unmask(). false if there is no such pin. */
bool ioapic_route_level(int pin, uint8_t vector);
/* The same, edge-triggered (an ISA line). */
bool ioapic_route_edge(int pin, uint8_t vector);
void ioapic_unmask(int pin);
/* Mask the pin: safe at any time, also in NMI context (two register writes). */
void ioapic_mask(int pin);

#endif
