/*
 * Interrupts, for two things only: the runtime workload (docs/guest.md, "SCSI"), one vector for
 * a device's MSI-X message or level-triggered I/O APIC pin; and the shell's wait for a key, COM1's
 * receive interrupt. Plus the local APIC's spurious vector. Both are taken only in the shell's
 * idle loop; the crash path runs with IF = 0 from the NMI on, never returns, and silences both
 * sources before anything slow (kern/crash.c).
 */
#ifndef KERN_IRQ_H
#define KERN_IRQ_H

#include <stdbool.h>
#include <stdint.h>

#define IRQ_VECTOR_DEVICE	0x40
#define IRQ_VECTOR_CONSOLE	0x41
#define IRQ_CONSOLE_PIN		4	/* COM1's ISA IRQ: the I/O APIC pin of that number on QEMU's pc */
#define IRQ_VECTOR_SPURIOUS	0xff	/* the local APIC's (apic.c programs SVR with it) */

/* Install the two IDT gates. Needs the local APIC (for EOI). 0 or ENODEV. */
int irq_init(void);
bool irq_ready(void);

/* The function the device vector calls (in interrupt context, IF = 0), before the EOI. */
void irq_set_device_handler(void (*fn)(void *arg), void *arg);

static inline void irq_on(void) { __asm__ __volatile__("sti" ::: "memory"); }
static inline void irq_off(void) { __asm__ __volatile__("cli" ::: "memory"); }

/*
 * The shell's wait for a key. A guest at its prompt halts (HLT) instead of reading the UART's
 * line status in a loop: each read is an exit to QEMU, and the loop kept a host core busy for as
 * long as the prompt waited (a person's session, every run's moments between READY and the
 * crash). irq_console_init() routes COM1's line (edge-triggered) to IRQ_VECTOR_CONSOLE; false
 * when there is no local APIC or I/O APIC pin, and the shell polls as before.
 * irq_console_wait(), with or without IF, turns the UART's receive interrupt on and halts with
 * IF = 1; a byte already waiting raises the line at once, so no key is missed between the
 * caller's last look and the HLT. It returns with IF = 0 after any interrupt (a key, an NMI that
 * came back, a spurious one): the caller looks again. The handler turns the UART's interrupt off
 * and ends it, and writes no memory (the kernel stack is dump path state): the host's snapshot
 * of a crash typed at the console, taken before the Enter that wakes the guest, stays true.
 * irq_console_mute(), for the crash path: pin masked, UART quiet; NMI-safe.
 */
bool irq_console_init(void);
void irq_console_wait(void);
void irq_console_mute(void);

extern volatile uint64_t irq_device_count, irq_spurious_count;

/* Called by kern/irq_entry.S. */
void irq_device_dispatch(void);
void irq_device_entry(void);
void irq_console_dispatch(void);
void irq_console_entry(void);
void irq_spurious_entry(void);

#endif
