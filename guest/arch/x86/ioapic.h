/*
 * The I/O APIC, for one level-triggered PCI INTx line (the LSI HBA's runtime workload), and
 * the PIIX3's PIRQ routing that brings a PCI interrupt pin to an ISA IRQ (QEMU's `pc`
 * machine: the ISA IRQs reach the 8259s, which stay masked, and I/O APIC pins 0-15).
 */
#ifndef ARCH_X86_IOAPIC_H
#define ARCH_X86_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

struct pci_dev;

/*
 * The ISA IRQ a PCI function's INTx pin reaches through the PIIX3's PIRQ routing: the
 * firmware's choice if it made one, otherwise `fallback_irq`, which is then programmed (and
 * marked level-triggered in the ELCR, for the 8259s' sake). -1 without an interrupt pin or a
 * PIIX3 to route it.
 */
int pci_intx_to_isa_irq(const struct pci_dev *d, int fallback_irq);

/* Route I/O APIC pin `pin` to `vector` on this CPU: fixed, physical, active high,
 * level-triggered, masked until ioapic_unmask(). false if there is no such pin. */
bool ioapic_route_level(int pin, uint8_t vector);
void ioapic_unmask(int pin);
/* Mask the pin: safe at any time, also in NMI context (two register writes). */
void ioapic_mask(int pin);

#endif
