/*
 * Device interrupts, for the runtime workload only (docs/guest.md, "SCSI"): one vector for a
 * device's MSI-X message or level-triggered I/O APIC pin, plus the local APIC's spurious
 * vector. Nothing else ever interrupts this kernel; the crash path runs with IF = 0 from the
 * NMI on and never returns.
 */
#ifndef KERN_IRQ_H
#define KERN_IRQ_H

#include <stdbool.h>
#include <stdint.h>

#define IRQ_VECTOR_DEVICE	0x40
#define IRQ_VECTOR_SPURIOUS	0xff	/* the local APIC's (apic.c programs SVR with it) */

/* Install the two IDT gates. Needs the local APIC (for EOI). 0 or ENODEV. */
int irq_init(void);
bool irq_ready(void);

/* The function the device vector calls (in interrupt context, IF = 0), before the EOI. */
void irq_set_device_handler(void (*fn)(void *arg), void *arg);

static inline void irq_on(void) { __asm__ __volatile__("sti" ::: "memory"); }
static inline void irq_off(void) { __asm__ __volatile__("cli" ::: "memory"); }

extern volatile uint64_t irq_device_count, irq_spurious_count;

/* Called by kern/irq_entry.S. */
void irq_device_dispatch(void);
void irq_device_entry(void);
void irq_spurious_entry(void);

#endif
