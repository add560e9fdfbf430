/*
 * The LSI 53C895A (Symbios 53C8xx family) parallel SCSI HBA as an HBA of scsi/hba.h, written
 * against QEMU's emulation (hw/scsi/lsi53c895a.c).
 *
 * The chip runs a SCRIPTS program that we write into .bss at attach time (lsi_build_scripts):
 * one command at a time per HBA, described by a command block (struct lsi_ccb) that DSA points
 * at and that the SCRIPTS reach with table-indirect moves. The C side fills the block, patches
 * two jumps that enter the data moves, writes DSP, and then polls ISTAT for the INT that ends
 * the program (or for a SCSI/DMA interrupt) against a TSC deadline. Runtime packets (no
 * FLAG_NOINTR) are started the same way and completed by lsi53c895a_intr(), called from a poll
 * loop or, for runtime I/O, from the interrupt handler (tran_intr): tran_intr_enable
 * turns on the chip's interrupt enables (DIEN, SIEN0/1: only conditions that end or stop a
 * command) and its PCI INTx, routed through the PIIX3 to a level-triggered I/O APIC pin
 * (bus/pci.h). Otherwise, and from the crash on (tran_intr_mute, tran_quiesce),
 * they are off and the INTx line stays low.
 *
 * What QEMU's emulation dictates (read from hw/scsi/lsi53c895a.c):
 *  - A READ that goes to the disk makes the target disconnect right after the CDB (MESSAGE IN
 *    SAVE DATA POINTER, DISCONNECT) and reselect (IDENTIFY) once the first piece of data is
 *    there; it never disconnects in the middle of the data. So the SCRIPTS handle
 *    disconnect / WAIT RESELECT, and a data phase is entered at most once per command.
 *  - After a disconnect SSTAT1 reads phase 0 (DATA OUT): phases are only tested while
 *    connected.
 *  - A READ that fails while the target is disconnected ends WAIT RESELECT with the bus in
 *    STATUS and no IDENTIFY (and QEMU leaks its request record): after WAIT RESELECT the
 *    SCRIPTS follow whatever phase the bus is in.
 *  - A command without data that does not complete at once (SYNCHRONIZE CACHE) leaves the
 *    bus in a fake DATA IN phase until it completes; a zero-length DATA IN move waits for it.
 *  - A short transfer (target done before the moves are) is a phase mismatch. In the middle
 *    of a move QEMU either raises MA and *resumes the SCRIPTS after the failing move* when the
 *    completion comes asynchronously, or honours the 53C1010-style phase-mismatch jump
 *    (CCNTL0 ENPMJ, PMJAD1). We use the jump: the handler stores DBC and IA (the failing
 *    move's address) into the command block. A move started in the wrong phase always raises
 *    MA and stops: the C side records DBC/DSP and restarts the SCRIPTS at the status phase.
 *  - Selection of a missing target raises STO (SIST1) and stops at the next bus instruction,
 *    but with a request cancelled under the chip (an unplug) its SCRIPTS stay marked running:
 *    the driver stops them after every STO.
 *  - Only LUN 0 exists (QEMU's bus has max_lun 0), targets 0-6; no tags are used.
 *  - A SCSI bus reset (SCNTL1 RST) cancels every request the chip holds (error recovery and
 *    quiesce use it); a soft reset (ISTAT SRST) is only safe at attach (see lsi_chip_init).
 *  - Register accesses are byte-wide inside QEMU; wider ones are split low byte first, so a
 *    32-bit write of DSP starts the SCRIPTS after all four bytes are in.
 */
#include "drivers/lsi53c895a.h"
#include "arch/x86/cpu.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "bus/pci.h"
#include "lib/errno.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

/* ---- registers ------------------------------------------------------------------------- */

#define SCNTL0		0x00
#define  SCNTL0_ARB	0xc0	/* full arbitration */
#define  SCNTL0_EPC	0x08	/* check SCSI parity */
#define SCNTL1		0x01
#define  SCNTL1_RST	0x08	/* assert SCSI RST */
#define  SCNTL1_CON	0x10	/* connected */
#define SCNTL2		0x02
#define SCNTL3		0x03
#define SCID		0x04
#define  SCID_RRE	0x40	/* respond to reselection */
#define SXFER		0x05
#define SDID		0x06
#define SFBR		0x08
#define SSID		0x0a
#define SBCL		0x0b
#define DSTAT		0x0c
#define  DSTAT_IID	0x01	/* illegal instruction */
#define  DSTAT_SIR	0x04	/* SCRIPTS INT instruction */
#define  DSTAT_SSI	0x08	/* single step */
#define  DSTAT_ABRT	0x10	/* aborted through ISTAT ABRT */
#define  DSTAT_BF	0x20	/* bus fault */
#define  DSTAT_MDPE	0x40	/* master data parity error */
#define  DSTAT_DFE	0x80	/* DMA FIFO empty (QEMU: always set) */
#define SSTAT0		0x0d
#define SSTAT1		0x0e
#define SSTAT2		0x0f
#define DSA		0x10
#define ISTAT		0x14
#define  ISTAT_DIP	0x01	/* DMA interrupt pending */
#define  ISTAT_SIP	0x02	/* SCSI interrupt pending */
#define  ISTAT_INTF	0x04
#define  ISTAT_CON	0x08
#define  ISTAT_SIGP	0x20	/* signal process: wakes WAIT RESELECT */
#define  ISTAT_SRST	0x40	/* software reset */
#define  ISTAT_ABRT	0x80	/* abort the SCRIPTS */
#define ISTAT1		0x15
#define  ISTAT1_SRUN	0x02	/* SCRIPTS running */
#define CTEST3		0x1b
#define  CTEST3_CLF	0x04	/* clear DMA FIFO */
#define TEMP		0x1c
#define DBC		0x24	/* 24 bits; DCMD in the top byte */
#define DNAD		0x28
#define DSP		0x2c
#define DSPS		0x30
#define SCRATCHA	0x34
#define DMODE		0x38
#define DIEN		0x39
#define DCNTL		0x3b
#define  DCNTL_COM	0x01	/* no 53C700 compatibility (SFBR untouched on reselection) */
#define SIEN0		0x40
#define SIEN1		0x41
/* The interrupt enables of the runtime workload: whatever ends or stops a command. Not CMP,
 * SEL, RSL, GEN, HTH (QEMU would stop the SCRIPTS on those once enabled). */
#define DIEN_RUNTIME	(DSTAT_IID | DSTAT_SIR | DSTAT_ABRT | DSTAT_BF | DSTAT_MDPE)
#define SIEN0_RUNTIME	(SIST0_PAR | SIST0_RST | SIST0_UDC | SIST0_SGE | SIST0_MA)
#define SIEN1_RUNTIME	SIST1_STO
#define SIST0		0x42
#define  SIST0_PAR	0x01
#define  SIST0_RST	0x02	/* SCSI reset seen */
#define  SIST0_UDC	0x04	/* unexpected disconnect */
#define  SIST0_SGE	0x08
#define  SIST0_RSL	0x10
#define  SIST0_SEL	0x20
#define  SIST0_CMP	0x40
#define  SIST0_MA	0x80	/* phase mismatch */
#define SIST1		0x43
#define  SIST1_HTH	0x01
#define  SIST1_GEN	0x02
#define  SIST1_STO	0x04	/* selection timeout */
#define STIME0		0x48
#define  STIME0_SEL_409MS 0x0d
#define RESPID0		0x4a
#define RESPID1		0x4b
#define STEST3		0x4f
#define  STEST3_CSF	0x02	/* clear SCSI FIFO */
#define CCNTL0		0x56
#define  CCNTL0_ENPMJ	0x80	/* phase mismatch: jump to PMJAD1 instead of interrupting */
#define PMJAD1		0xc0
#define PMJAD2		0xc4
#define IA		0xd4	/* address of the last block move */

/* SCSI phases: MSG, C/D, I/O */
#define PH_DATA_OUT	0
#define PH_DATA_IN	1
#define PH_COMMAND	2
#define PH_STATUS	3
#define PH_MSG_OUT	6
#define PH_MSG_IN	7

/* messages */
#define MSG_COMMAND_COMPLETE	0x00
#define MSG_SAVE_DATA_POINTER	0x02
#define MSG_RESTORE_POINTERS	0x03
#define MSG_DISCONNECT		0x04
#define MSG_ABORT		0x06
#define MSG_MESSAGE_REJECT	0x07
#define MSG_BUS_DEVICE_RESET	0x0c
#define MSG_IDENTIFY		0x80
#define MSG_IDENTIFY_DISCPRIV	0x40

/* ---- SCRIPTS instruction encoding (53C8xx programming guide; what QEMU decodes) ----------- */

/* block move: 00 i t o ppp count(24) | address, or the DSA offset of {count, address} */
#define BM_TABLE		(1u << 28)
#define BM_MOVE			(1u << 27)	/* MOVE (not CHMOV) */
#define BM_PHASE(p)		((uint32_t)(p) << 24)
#define S_MOVE_TBL(p)		(BM_TABLE | BM_MOVE | BM_PHASE(p))
#define S_MOVE(p, n)		(BM_MOVE | BM_PHASE(p) | (n))
/* I/O: 01 ooo r t a ... */
#define S_SELECT_TBL_ATN(off)	(0x40000000u | (1u << 25) | (1u << 24) | (off))	/* second: alt address */
#define S_WAIT_DISCONNECT	0x48000000u
#define S_WAIT_RESELECT		0x50000000u			/* second: address if SIGP */
#define S_CLEAR(bits)		(0x60000000u | (bits))
#define  S_ACK			(1u << 6)
#define  S_ATN			(1u << 3)
/* register moves: 01 ooo ppp reg(7) data(8) reg bit 7 */
#define S_REG(reg)		((((uint32_t)(reg) & 0x7f) << 16) | ((uint32_t)(reg) & 0x80))
#define S_LOAD_REG(reg, v)	(0x78000000u | S_REG(reg) | ((uint32_t)(v) << 8))	/* reg = v */
#define S_REG_TO_SFBR(reg)	(0x72000000u | S_REG(reg))			/* SFBR = reg | 0 */
/* transfer control: 10 ooo ppp r . c t d p w mask(8) data(8) | address */
#define S_JUMP			0x80000000u
#define S_INT			0x98000000u
#define  S_IF_TRUE		(1u << 19)
#define  S_CMP_DATA		(1u << 18)
#define  S_CMP_PHASE		(1u << 17)
#define  S_WAIT_VALID		(1u << 16)
#define S_ALWAYS		S_IF_TRUE
#define S_WHEN(p)		(S_IF_TRUE | S_CMP_PHASE | S_WAIT_VALID | BM_PHASE(p))
/* compare SFBR with `data`, ignoring the bits set in `ignore` */
#define S_IF_DATA(data, ignore)	(S_IF_TRUE | S_CMP_DATA | ((uint32_t)(ignore) << 8) | (data))
/* memory store: 111 1(DSA-relative) 000 0(store) reg(8) ... count(3) | DSA offset */
#define S_STORE_DSA(reg, n)	(0xf0000000u | ((uint32_t)(reg) << 16) | (n))

/* INT codes (DSPS) */
#define INT_DONE		0x4c530000u	/* 'LS' 00: command complete, bus free */
#define INT_MSG_SENT		0x4c530001u	/* message-only nexus done (BUS DEVICE RESET) */
#define INT_WOKEN		0x4c530002u	/* WAIT RESELECT woken by SIGP */
#define INT_BAD_PHASE		0x4c530010u	/* unexpected phase at dispatch */
#define INT_DATA_AGAIN		0x4c530011u	/* a second data phase (disconnect in mid-data) */
#define INT_OVERRUN		0x4c530012u	/* target wants more data than the packet has */
#define INT_BAD_MSG		0x4c530013u	/* a message we do not handle (in msgin_byte) */
#define INT_RESELECTED		0x4c530014u	/* reselected while selecting */
#define INT_NO_DATA_OUT		0x4c530015u	/* DATA OUT, but the packet has nothing to send */

/* SCRATCHA bytes the SCRIPTS use as flags */
#define FLAG_DATA_DONE		SCRATCHA	/* 1: every data move completed */
#define FLAG_DATA_SEEN		(SCRATCHA + 1)	/* 1: a data phase was entered */

/* ---- the command block (DSA) ------------------------------------------------------------- */

#define LSI_NSEG		SCSI_MAX_SGL
#define LSI_MAX_SEG_LEN		(8u << 20)	/* block move counts are 24 bits */
#define LSI_MAX_XFER		(16u << 20)
#define LSI_MAX_HBAS		4
#define LSI_MAX_TARGET		7		/* IDs 0-6; 7 is ours */
#define LSI_MAX_LUN		8		/* IDENTIFY carries 3 bits (QEMU: LUN 0 only) */
#define LSI_HOST_ID		7
#define LSI_DEFAULT_TIME_MS	30000
#define LSI_MSG_TIME_MS		2000		/* BUS DEVICE RESET nexus */
#define LSI_RESET_HOLD_US	50		/* RST asserted (spec: >= 25 us) */
#define LSI_RESET_SETTLE_MS	250		/* reset to selection (spec: 250 ms) */
#define LSI_SCRIPT_DWORDS	512

struct lsi_tbl {
	uint32_t count;
	uint32_t addr;
};

struct lsi_ccb {
	uint32_t select;		/* +0: SCNTL3 << 24 | ID << 16 | SXFER << 8 */
	uint32_t pad;
	struct lsi_tbl msgout;		/* +8 */
	struct lsi_tbl cmd;		/* +16 */
	struct lsi_tbl status;		/* +24 */
	struct lsi_tbl msgin;		/* +32 */
	struct lsi_tbl data[LSI_NSEG];	/* +40: the packet's sgl in the last k entries */
	uint32_t pm_dbc;		/* phase mismatch: bytes the move had left (24 bits) */
	uint32_t pm_ia;			/* ... and its address; 0: no mismatch */
	uint8_t msgout_buf[4];
	uint8_t cdb[SCSI_MAX_CDB];
	uint8_t status_byte;
	uint8_t msgin_byte;
	uint8_t zero_buf[2];
} __attribute__((aligned(16)));

#define CCB_OFF(field)		((uint32_t)__builtin_offsetof(struct lsi_ccb, field))
#define CCB_DATA_OFF(i)		(CCB_OFF(data) + 8u * (uint32_t)(i))

_Static_assert(__builtin_offsetof(struct lsi_ccb, msgout) == 8, "ccb layout");
_Static_assert(__builtin_offsetof(struct lsi_ccb, data) == 40, "ccb layout");

/* SCRIPTS labels */
enum {
	L_START, L_DISPATCH, L_AFTER_DATA, L_DATA_IN, L_DATA_OUT, L_MOVES_IN, L_MOVES_OUT,
	L_IN_END, L_OUT_END, L_WAIT_NODATA, L_OVERRUN, L_NO_DATA_OUT, L_STATUS, L_MSG_IN, L_ACK_NEXT,
	L_COMPLETE, L_DISCONNECTED, L_WOKEN, L_PM, L_RESELECTED, L_DATA_AGAIN, L_BAD_PHASE,
	L_MSG_START, L_COUNT
};

enum lsi_state {
	LSI_IDLE,
	LSI_CMD,		/* a packet's SCRIPTS are running */
};

struct lsi_softc {
	struct scsi_hba hba;
	struct pci_dev *pci;
	uintptr_t mmio;			/* registers through BAR1, or */
	uint16_t iobase;		/* ... through the I/O BAR0 */
	bool broken;
	bool quiesced;
	volatile bool intr_on;		/* runtime interrupts enabled (chip enables + INTx) */
	bool intx_routed;		/* tran_intr_enable routed INTx to intx_pin (bus/pci.h) */
	int intx_pin;			/* its I/O APIC pin */

	uint32_t *script;		/* = script_mem */
	uint32_t script_bytes;
	uint32_t label[L_COUNT];	/* physical addresses */
	uint32_t data_in_jump;		/* dword index of the patched jumps' address */
	uint32_t data_out_jump;

	enum lsi_state state;
	struct scsi_pkt *active;	/* the packet the SCRIPTS work for */
	uint16_t active_target;
	bool active_polled;
	uint64_t deadline;

	uint64_t commands, polled_commands, completions, timeouts, sel_timeouts, mismatches,
		 errors, bus_resets, chip_resets, bdrs, quiesces, interrupts, idle_interrupts;
	uint8_t last_dstat, last_sist0, last_sist1;
	uint32_t last_dsps;

	char name[32];
	uint32_t script_mem[LSI_SCRIPT_DWORDS] __attribute__((aligned(16)));
	struct lsi_ccb ccb;
};

/* The dump path's state (lib/dumpstate.h): a command patches the SCRIPTS and fills the CCB. */
static struct lsi_softc lsi_softc[LSI_MAX_HBAS] __dumpstate;
static int lsi_count;


/* ---- register access --------------------------------------------------------------------- */

static uint8_t rd8(struct lsi_softc *sc, uint8_t reg)
{
	return sc->mmio ? mmio_read8(sc->mmio + reg) : inb(sc->iobase + reg);
}

static uint32_t rd32(struct lsi_softc *sc, uint8_t reg)
{
	return sc->mmio ? mmio_read32(sc->mmio + reg) : inl(sc->iobase + reg);
}

static void wr8(struct lsi_softc *sc, uint8_t reg, uint8_t v)
{
	if (sc->mmio)
		mmio_write8(sc->mmio + reg, v);
	else
		outb(sc->iobase + reg, v);
}

static void wr32(struct lsi_softc *sc, uint8_t reg, uint32_t v)
{
	if (sc->mmio)
		mmio_write32(sc->mmio + reg, v);
	else
		outl(sc->iobase + reg, v);
}

static uint32_t phys32(const volatile void *p)
{
	return (uint32_t)(uintptr_t)p;
}

/* ---- the SCRIPTS program ----------------------------------------------------------------- */

struct sasm {
	struct lsi_softc *sc;
	int n;
	int nfix;
	struct {
		int at;
		int label;
	} fix[64];
	bool overflow;
};

static void s_emit(struct sasm *a, uint32_t w0, uint32_t w1)
{
	if (a->n + 2 > LSI_SCRIPT_DWORDS) {
		a->overflow = true;
		return;
	}
	a->sc->script[a->n++] = w0;
	a->sc->script[a->n++] = w1;
}

/* An instruction whose second dword is the address of a label. */
static void s_emit_to(struct sasm *a, uint32_t w0, int label)
{
	if (a->nfix == (int)(sizeof(a->fix) / sizeof(a->fix[0]))) {
		a->overflow = true;
		return;
	}
	a->fix[a->nfix].at = a->n + 1;
	a->fix[a->nfix++].label = label;
	s_emit(a, w0, 0);
}

static void s_label(struct sasm *a, int label)
{
	a->sc->label[label] = phys32(&a->sc->script[a->n]);
}

/*
 * The program. Entry L_START runs one command for the ccb at DSA; L_MSG_START selects and
 * sends the ccb's message bytes only (BUS DEVICE RESET). Every way out is an INT (DSPS says
 * which), a SCSI interrupt (STO, MA at the start of a move, RST, UDC) or our abort.
 */
static bool lsi_build_scripts(struct lsi_softc *sc)
{
	struct sasm a = { .sc = sc };

	sc->script = sc->script_mem;
	memset(sc->script, 0, sizeof(sc->script_mem));

	s_label(&a, L_START);
	s_emit_to(&a, S_SELECT_TBL_ATN(CCB_OFF(select)), L_RESELECTED);
	s_emit(&a, S_MOVE_TBL(PH_MSG_OUT), CCB_OFF(msgout));	/* IDENTIFY */
	s_emit(&a, S_MOVE_TBL(PH_COMMAND), CCB_OFF(cmd));	/* the CDB */

	/* Connected, phase unknown: follow the target. */
	s_label(&a, L_DISPATCH);
	s_emit_to(&a, S_JUMP | S_WHEN(PH_DATA_IN), L_DATA_IN);
	s_emit_to(&a, S_JUMP | S_WHEN(PH_DATA_OUT), L_DATA_OUT);
	s_label(&a, L_AFTER_DATA);
	s_emit_to(&a, S_JUMP | S_WHEN(PH_STATUS), L_STATUS);
	s_emit_to(&a, S_JUMP | S_WHEN(PH_MSG_IN), L_MSG_IN);
	s_emit_to(&a, S_JUMP | S_WHEN(PH_DATA_IN), L_OVERRUN);
	s_emit_to(&a, S_JUMP | S_WHEN(PH_DATA_OUT), L_OVERRUN);
	s_label(&a, L_BAD_PHASE);
	s_emit(&a, S_INT | S_ALWAYS, INT_BAD_PHASE);

	/* Data phases: once per command (QEMU never disconnects in mid-data); the jump into
	 * the moves is patched per command to run exactly the packet's k entries. */
	s_label(&a, L_DATA_IN);
	s_emit(&a, S_REG_TO_SFBR(FLAG_DATA_SEEN), 0);
	s_emit_to(&a, S_JUMP | S_IF_DATA(1, 0), L_DATA_AGAIN);
	s_emit(&a, S_LOAD_REG(FLAG_DATA_SEEN, 1), 0);
	sc->data_in_jump = a.n + 1;
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_WAIT_NODATA);
	s_label(&a, L_DATA_OUT);
	s_emit(&a, S_REG_TO_SFBR(FLAG_DATA_SEEN), 0);
	s_emit_to(&a, S_JUMP | S_IF_DATA(1, 0), L_DATA_AGAIN);
	s_emit(&a, S_LOAD_REG(FLAG_DATA_SEEN, 1), 0);
	sc->data_out_jump = a.n + 1;
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_NO_DATA_OUT);

	s_label(&a, L_MOVES_IN);
	for (int i = 0; i < LSI_NSEG; i++)
		s_emit(&a, S_MOVE_TBL(PH_DATA_IN), CCB_DATA_OFF(i));
	s_label(&a, L_IN_END);
	s_emit(&a, S_LOAD_REG(FLAG_DATA_DONE, 1), 0);
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_AFTER_DATA);

	s_label(&a, L_MOVES_OUT);
	for (int i = 0; i < LSI_NSEG; i++)
		s_emit(&a, S_MOVE_TBL(PH_DATA_OUT), CCB_DATA_OFF(i));
	s_label(&a, L_OUT_END);
	s_emit(&a, S_LOAD_REG(FLAG_DATA_DONE, 1), 0);
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_AFTER_DATA);

	/* No data in the packet but the bus says DATA IN: QEMU's way of keeping us connected
	 * while a data-less command (SYNCHRONIZE CACHE) runs. A zero-length move waits for it;
	 * if data does come, the dispatcher reports an overrun. */
	s_label(&a, L_WAIT_NODATA);
	s_emit(&a, S_MOVE(PH_DATA_IN, 0), phys32(&sc->ccb.zero_buf));
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_AFTER_DATA);
	s_label(&a, L_OVERRUN);
	s_emit(&a, S_INT | S_ALWAYS, INT_OVERRUN);
	s_label(&a, L_NO_DATA_OUT);
	s_emit(&a, S_INT | S_ALWAYS, INT_NO_DATA_OUT);

	s_label(&a, L_DATA_AGAIN);
	s_emit(&a, S_INT | S_ALWAYS, INT_DATA_AGAIN);

	s_label(&a, L_STATUS);
	s_emit(&a, S_MOVE_TBL(PH_STATUS), CCB_OFF(status));
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_AFTER_DATA);

	/* One message byte at a time; SFBR holds it. */
	s_label(&a, L_MSG_IN);
	s_emit(&a, S_MOVE_TBL(PH_MSG_IN), CCB_OFF(msgin));
	s_emit_to(&a, S_JUMP | S_IF_DATA(MSG_COMMAND_COMPLETE, 0), L_COMPLETE);
	s_emit_to(&a, S_JUMP | S_IF_DATA(MSG_DISCONNECT, 0), L_DISCONNECTED);
	s_emit_to(&a, S_JUMP | S_IF_DATA(MSG_SAVE_DATA_POINTER, 0), L_ACK_NEXT);
	s_emit_to(&a, S_JUMP | S_IF_DATA(MSG_RESTORE_POINTERS, 0), L_ACK_NEXT);
	s_emit_to(&a, S_JUMP | S_IF_DATA(MSG_IDENTIFY, 0x7f), L_ACK_NEXT);	/* after reselection */
	s_emit(&a, S_INT | S_ALWAYS, INT_BAD_MSG);
	s_label(&a, L_ACK_NEXT);
	s_emit(&a, S_CLEAR(S_ACK), 0);
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_DISPATCH);

	s_label(&a, L_COMPLETE);
	s_emit(&a, S_CLEAR(S_ACK), 0);
	s_emit(&a, S_WAIT_DISCONNECT, 0);
	s_emit(&a, S_INT | S_ALWAYS, INT_DONE);

	/* The target left to fetch data: wait for it to come back. Reselection puts the bus
	 * in MESSAGE IN with an IDENTIFY, which the dispatcher takes. */
	s_label(&a, L_DISCONNECTED);
	s_emit(&a, S_CLEAR(S_ACK), 0);
	s_emit(&a, S_WAIT_DISCONNECT, 0);
	s_emit_to(&a, S_WAIT_RESELECT, L_WOKEN);
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_DISPATCH);
	s_label(&a, L_WOKEN);
	s_emit(&a, S_INT | S_ALWAYS, INT_WOKEN);

	/* Phase mismatch in the middle of a data move (CCNTL0 ENPMJ -> PMJAD1): remember how far
	 * the move got, then carry on with status and messages. */
	s_label(&a, L_PM);
	s_emit(&a, S_STORE_DSA(DBC, 3), CCB_OFF(pm_dbc));
	s_emit(&a, S_STORE_DSA(IA, 4), CCB_OFF(pm_ia));
	s_emit_to(&a, S_JUMP | S_ALWAYS, L_AFTER_DATA);

	s_label(&a, L_RESELECTED);
	s_emit(&a, S_INT | S_ALWAYS, INT_RESELECTED);

	/* Message-only nexus: select, IDENTIFY + one message, the target drops the bus. */
	s_label(&a, L_MSG_START);
	s_emit_to(&a, S_SELECT_TBL_ATN(CCB_OFF(select)), L_RESELECTED);
	s_emit(&a, S_MOVE_TBL(PH_MSG_OUT), CCB_OFF(msgout));
	s_emit(&a, S_CLEAR(S_ACK | S_ATN), 0);
	s_emit(&a, S_WAIT_DISCONNECT, 0);
	s_emit(&a, S_INT | S_ALWAYS, INT_MSG_SENT);

	for (int i = 0; i < a.nfix; i++)
		sc->script[a.fix[i].at] = sc->label[a.fix[i].label];
	sc->script_bytes = 4u * (uint32_t)a.n;
	return !a.overflow;
}

/* ---- chip control ------------------------------------------------------------------------ */

/* Read and so clear whatever interrupt status is pending (bounded). */
static void lsi_clear_status(struct lsi_softc *sc)
{
	for (int i = 0; i < 16; i++) {
		uint8_t istat = rd8(sc, ISTAT);

		if (!(istat & (ISTAT_DIP | ISTAT_SIP)))
			return;
		if (istat & ISTAT_SIP) {
			(void)rd8(sc, SIST0);
			(void)rd8(sc, SIST1);
		}
		if (istat & ISTAT_DIP)
			(void)rd8(sc, DSTAT);
	}
}

/*
 * Program the chip: our ID, async narrow transfers, no interrupts, SCRIPTS started by writing
 * DSP, phase mismatches in data moves jump to L_PM.
 *
 * The soft reset (ISTAT SRST) is for attach only. QEMU 7.2 leaks its request record when a
 * disconnected command fails before reselecting (lsi_command_complete frees only the
 * connected one), and a later SRST then trips an assertion in lsi_soft_reset that takes the
 * whole VM down. Later recoveries rewrite every register instead; the bus reset before them
 * has cancelled what QEMU held, and the next selection clears its SCRIPTS wait state.
 */
static void lsi_chip_init(struct lsi_softc *sc, bool soft_reset)
{
	bool intr = sc->intr_on;

	pci_set_command_bits(sc->pci, PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER |
					      (intr ? 0 : PCI_COMMAND_INTX_DISABLE),
			     intr ? PCI_COMMAND_INTX_DISABLE : 0);
	if (soft_reset) {
		wr8(sc, ISTAT, ISTAT_SRST);
		udelay(10);
		wr8(sc, ISTAT, 0);
		udelay(10);
	}
	sc->chip_resets++;

	wr8(sc, DIEN, 0);
	wr8(sc, SIEN0, 0);
	wr8(sc, SIEN1, 0);
	wr8(sc, SCNTL0, SCNTL0_ARB | SCNTL0_EPC);
	wr8(sc, SCNTL1, 0);
	wr8(sc, SCNTL2, 0);
	wr8(sc, SCNTL3, 0);
	wr8(sc, SCID, SCID_RRE | LSI_HOST_ID);
	wr8(sc, RESPID0, 1u << LSI_HOST_ID);
	wr8(sc, RESPID1, 0);
	wr8(sc, SXFER, 0);
	wr8(sc, STIME0, STIME0_SEL_409MS);
	wr8(sc, DMODE, 0);
	wr8(sc, DCNTL, DCNTL_COM);
	wr32(sc, PMJAD1, sc->label[L_PM]);
	wr32(sc, PMJAD2, sc->label[L_PM]);
	wr8(sc, CCNTL0, CCNTL0_ENPMJ);
	wr32(sc, DSA, phys32(&sc->ccb));
	lsi_clear_status(sc);
	if (intr) {
		/* Runtime interrupts survive recoveries (enabled after the status is cleared). */
		wr8(sc, DIEN, DIEN_RUNTIME);
		wr8(sc, SIEN0, SIEN0_RUNTIME);
		wr8(sc, SIEN1, SIEN1_RUNTIME);
	}
}

/* Stop the SCRIPTS wherever they are: SIGP wakes a WAIT RESELECT (QEMU would otherwise
 * resume it on the next reselection), ABRT stops everything else. */
static void lsi_stop_scripts(struct lsi_softc *sc)
{
	uint64_t deadline;

	wr8(sc, ISTAT, ISTAT_SIGP);
	wr8(sc, ISTAT, ISTAT_ABRT);
	deadline = deadline_after_ms(10);
	while (!(rd8(sc, ISTAT) & ISTAT_DIP) && !deadline_passed(deadline))
		cpu_relax();
	wr8(sc, ISTAT, 0);
	lsi_clear_status(sc);
}

/* SCSI bus reset: every target drops what it was doing (QEMU cancels every request). */
static void lsi_bus_reset(struct lsi_softc *sc)
{
	wr8(sc, SCNTL1, SCNTL1_RST);
	udelay(LSI_RESET_HOLD_US);
	wr8(sc, SCNTL1, 0);
	udelay(LSI_RESET_SETTLE_MS * 1000ull);
	lsi_clear_status(sc);
	sc->bus_resets++;
}

/* Back to a clean, idle chip and bus, whatever state they were in. */
static void lsi_recover(struct lsi_softc *sc)
{
	lsi_stop_scripts(sc);
	lsi_bus_reset(sc);
	lsi_chip_init(sc, false);
}

static void lsi_start_scripts(struct lsi_softc *sc, uint32_t entry)
{
	wr8(sc, SCRATCHA, 0);		/* FLAG_DATA_DONE */
	wr8(sc, SCRATCHA + 1, 0);	/* FLAG_DATA_SEEN */
	wr32(sc, DSA, phys32(&sc->ccb));
	mb();				/* the ccb and the patched SCRIPTS before the chip runs */
	wr32(sc, DSP, entry);
}

/* ---- commands ------------------------------------------------------------------------------ */

static void lsi_ccb_nexus(struct lsi_softc *sc, uint16_t target)
{
	struct lsi_ccb *c = &sc->ccb;

	c->select = (uint32_t)target << 16;	/* SCNTL3 0, SXFER 0: asynchronous, narrow */
	c->msgout.addr = phys32(c->msgout_buf);
	c->status.count = 1;
	c->status.addr = phys32(&c->status_byte);
	c->msgin.count = 1;
	c->msgin.addr = phys32(&c->msgin_byte);
	c->status_byte = 0xff;
	c->msgin_byte = 0xff;
	c->pm_dbc = 0;
	c->pm_ia = 0;
}

static void lsi_setup_cmd(struct lsi_softc *sc, const struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct lsi_ccb *c = &sc->ccb;
	int k = pkt->pkt_sgl_count, first = LSI_NSEG - k;

	lsi_ccb_nexus(sc, ap->a_target);
	c->msgout_buf[0] = MSG_IDENTIFY | MSG_IDENTIFY_DISCPRIV | (ap->a_lun & 7);
	c->msgout.count = 1;
	memcpy(c->cdb, pkt->pkt_cdbp, pkt->pkt_cdblen);
	c->cmd.count = pkt->pkt_cdblen;
	c->cmd.addr = phys32(c->cdb);
	memset(c->data, 0, sizeof(c->data));
	for (int i = 0; i < k; i++) {
		c->data[first + i].count = pkt->pkt_sgl[i].len;
		c->data[first + i].addr = (uint32_t)pkt->pkt_sgl[i].addr;
	}

	/* Enter the moves so that exactly the last k run. */
	sc->script[sc->data_in_jump] = (k && (pkt->pkt_flags & FLAG_DATA_IN)) ?
					       sc->label[L_MOVES_IN] + 8u * first : sc->label[L_WAIT_NODATA];
	sc->script[sc->data_out_jump] = (k && (pkt->pkt_flags & FLAG_DATA_OUT)) ?
						sc->label[L_MOVES_OUT] + 8u * first : sc->label[L_NO_DATA_OUT];
}

/* Bytes not transferred: from the mismatch record if there is one, else all or nothing. */
static uint32_t lsi_resid(struct lsi_softc *sc, struct scsi_pkt *pkt, bool data_done)
{
	uint32_t ia = READ_ONCE(sc->ccb.pm_ia), base, resid;
	int k = pkt->pkt_sgl_count, idx;

	if (!pkt->pkt_datalen)
		return 0;
	if (!ia)
		return data_done ? 0 : pkt->pkt_datalen;
	base = (pkt->pkt_flags & FLAG_DATA_IN) ? sc->label[L_MOVES_IN] : sc->label[L_MOVES_OUT];
	idx = (int)((ia - base) / 8) - (LSI_NSEG - k);
	if (ia < base || (ia - base) % 8 || idx < 0 || idx >= k)
		return pkt->pkt_datalen;
	resid = READ_ONCE(sc->ccb.pm_dbc) & 0xffffff;
	if (resid > pkt->pkt_sgl[idx].len)
		resid = pkt->pkt_sgl[idx].len;
	for (int j = idx + 1; j < k; j++)
		resid += pkt->pkt_sgl[j].len;
	return resid;
}

/* Is `addr` one of the data moves? */
static bool lsi_is_data_move(struct lsi_softc *sc, uint32_t addr)
{
	uint32_t in = sc->label[L_MOVES_IN], out = sc->label[L_MOVES_OUT];

	return (addr >= in && addr < in + 8u * LSI_NSEG && (addr - in) % 8 == 0) ||
	       (addr >= out && addr < out + 8u * LSI_NSEG && (addr - out) % 8 == 0);
}

/* What a finished command leaves to clean up. */
enum lsi_cleanup {
	CLEAN_NONE,		/* the SCRIPTS ended where they should: bus free */
	CLEAN_CHIP,		/* bus free, but the SCRIPTS engine's state is suspect */
	CLEAN_BUS,		/* a target may still hold the nexus: bus reset, chip reset */
};

/* The packet is over: results in, the HBA idle. Runtime packets go to pkt_comp. */
static void lsi_finish(struct lsi_softc *sc, uint8_t reason, enum lsi_cleanup cleanup)
{
	struct scsi_pkt *pkt = sc->active;
	bool data_done = false;

	if (!pkt)
		return;
	if (reason == CMD_CMPLT && READ_ONCE(sc->ccb.msgin_byte) == MSG_COMMAND_COMPLETE &&
	    READ_ONCE(sc->ccb.status_byte) != 0xff) {
		data_done = rd8(sc, FLAG_DATA_DONE) == 1;
		pkt->pkt_scbp = READ_ONCE(sc->ccb.status_byte);
		pkt->pkt_resid = lsi_resid(sc, pkt, data_done);
	} else {
		if (reason == CMD_CMPLT) {	/* "done" without a status byte: not believable */
			reason = CMD_TRAN_ERR;
			cleanup = CLEAN_BUS;
		}
		pkt->pkt_scbp = 0;
		pkt->pkt_resid = pkt->pkt_datalen;
		sc->errors += reason != CMD_INCOMPLETE;
	}
	pkt->pkt_reason = reason;
	pkt->pkt_sense_len = 0;		/* no autosense: the packet layer asks for it */
	if (cleanup == CLEAN_BUS) {
		lsi_recover(sc);
	} else if (cleanup == CLEAN_CHIP) {
		lsi_stop_scripts(sc);
		lsi_chip_init(sc, false);
	}
	sc->active = 0;
	sc->state = LSI_IDLE;
	pkt->pkt_ha_private = 0;
	sc->completions++;
	if (!sc->active_polled && pkt->pkt_comp)
		pkt->pkt_comp(pkt);
}

/*
 * One look at the chip for the running command. Returns 1 when the packet is finished.
 */
static int lsi_service(struct lsi_softc *sc)
{
	uint8_t istat, dstat = 0, sist0 = 0, sist1 = 0;
	uint32_t dsps, dsp;

	if (sc->state != LSI_CMD)
		return 0;
	istat = rd8(sc, ISTAT);
	if (!(istat & (ISTAT_DIP | ISTAT_SIP))) {
		if (deadline_passed(sc->deadline)) {
			sc->timeouts++;
			lsi_finish(sc, CMD_TIMEOUT, CLEAN_BUS);
			return 1;
		}
		return 0;
	}
	if (istat & ISTAT_SIP) {
		sist0 = rd8(sc, SIST0);
		sist1 = rd8(sc, SIST1);
	}
	if (istat & ISTAT_DIP)
		dstat = rd8(sc, DSTAT) & ~DSTAT_DFE;
	sc->last_dstat = dstat;
	sc->last_sist0 = sist0;
	sc->last_sist1 = sist1;

	if (sist0 & SIST0_RST) {		/* somebody reset the bus under us */
		lsi_finish(sc, CMD_RESET, CLEAN_CHIP);
		return 1;
	}
	if (sist1 & SIST1_STO) {		/* nobody at that ID */
		/* The SCRIPTS engine may still count as running: QEMU 7.2 resumes after an STO
		 * only when its wait state is clear, and a request cancelled under it (the disk
		 * unplugged mid-transfer) leaves it waiting for data that never comes, so every
		 * later DSP write would be ignored until the I/O timeout. Stop it. */
		sc->sel_timeouts++;
		lsi_finish(sc, CMD_INCOMPLETE, CLEAN_CHIP);
		return 1;
	}
	if ((sist0 & (SIST0_UDC | SIST0_SGE | SIST0_PAR)) ||
	    (dstat & (DSTAT_IID | DSTAT_BF | DSTAT_MDPE))) {
		lsi_finish(sc, CMD_TRAN_ERR, CLEAN_BUS);
		return 1;
	}
	if (dstat & DSTAT_SIR) {
		dsps = rd32(sc, DSPS);
		sc->last_dsps = dsps;
		if (dsps == INT_DONE) {
			lsi_finish(sc, CMD_CMPLT, CLEAN_NONE);
			return 1;
		}
		/* INT_BAD_PHASE, INT_DATA_AGAIN, INT_OVERRUN, INT_BAD_MSG, INT_RESELECTED, ... */
		lsi_finish(sc, CMD_TRAN_ERR, CLEAN_BUS);
		return 1;
	}
	if (sist0 & SIST0_MA) {
		/* A move started in a phase the target had already left (short transfer ending
		 * on an entry boundary): note where, clear the FIFOs, go on with status. */
		dsp = rd32(sc, DSP);
		if (!lsi_is_data_move(sc, dsp - 8)) {
			lsi_finish(sc, CMD_TRAN_ERR, CLEAN_BUS);
			return 1;
		}
		sc->mismatches++;
		WRITE_ONCE(sc->ccb.pm_dbc, rd32(sc, DBC) & 0xffffff);
		WRITE_ONCE(sc->ccb.pm_ia, dsp - 8);
		wr8(sc, CTEST3, CTEST3_CLF);
		wr8(sc, STEST3, STEST3_CSF);
		mb();
		wr32(sc, DSP, sc->label[L_AFTER_DATA]);
		return 0;
	}
	if (dstat & DSTAT_ABRT) {		/* not ours: somebody aborted the SCRIPTS */
		lsi_finish(sc, CMD_ABORTED, CLEAN_BUS);
		return 1;
	}
	/* Nothing that ends the command (e.g. a stray GEN/HTH): keep waiting. */
	return 0;
}

static int lsi_check_pkt(struct lsi_softc *sc, struct scsi_address *ap, struct scsi_pkt *pkt)
{
	uint64_t datalen = 0;

	if (pkt->pkt_cdblen == 0 || pkt->pkt_cdblen > SCSI_MAX_CDB || pkt->pkt_sgl_count < 0 ||
	    (uint32_t)pkt->pkt_sgl_count > sc->hba.limits.max_segs ||
	    pkt->pkt_datalen > sc->hba.limits.max_xfer || ap->a_target >= sc->hba.max_target ||
	    ap->a_target == LSI_HOST_ID || ap->a_lun >= sc->hba.max_lun ||
	    ((pkt->pkt_flags & FLAG_DATA_IN) && (pkt->pkt_flags & FLAG_DATA_OUT)))
		return 0;
	for (int i = 0; i < pkt->pkt_sgl_count; i++) {
		const struct scsi_sgl *s = &pkt->pkt_sgl[i];

		if (s->len == 0 || s->len > sc->hba.limits.max_seg_len ||
		    s->addr + s->len - 1 > sc->hba.limits.dma_addr_max)
			return 0;
		datalen += s->len;
	}
	return datalen == pkt->pkt_datalen &&
	       (!datalen || (pkt->pkt_flags & (FLAG_DATA_IN | FLAG_DATA_OUT)));
}

/*
 * Poll the command in flight to its end (bounded by its deadline). A few quick looks first (a
 * command without data ends within them); then 50 us between looks. Each look is an exit to
 * QEMU that takes the lock its main loop needs to complete the disk I/O: with 64 quick looks
 * and 5 us between the rest, QEMU took 1.2-2.2 ms (median per run) for a 2 MiB write on
 * kvm-pvm, 1.1-1.5 ms so; 1 GiB dumps 2.57-3.92 s from the crash to DONE, 2.33-2.73 so (six
 * alternated runs each). 150 us was slower again.
 */
static void lsi_run_polled(struct lsi_softc *sc)
{
	for (unsigned n = 0; sc->state == LSI_CMD && !lsi_service(sc); n++) {
		if (n < 4)
			cpu_relax();
		else
			udelay(50);
	}
}

static int lsi_tran_start(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct lsi_softc *sc = ap->a_hba->hba_private;
	bool polled = pkt->pkt_flags & FLAG_NOINTR;
	uint64_t flags;

	if (sc->broken)
		return TRAN_FATAL_ERROR;
	if (!lsi_check_pkt(sc, ap, pkt))
		return TRAN_BADPKT;
	if (sc->quiesced && !polled)
		return TRAN_FATAL_ERROR;

	flags = irq_save();
	/* A polled command behind a runtime one: finish that one first (its pkt_comp may
	 * start another; a few rounds at most). */
	for (int round = 0; polled && sc->state != LSI_IDLE && round < 8; round++)
		lsi_run_polled(sc);
	if (sc->state != LSI_IDLE) {
		irq_restore(flags);
		return TRAN_BUSY;
	}
	pkt->pkt_reason = CMD_INCOMPLETE;
	pkt->pkt_scbp = 0;
	pkt->pkt_resid = pkt->pkt_datalen;
	pkt->pkt_sense_len = 0;
	pkt->pkt_ha_private = sc;
	sc->active = pkt;
	sc->active_target = ap->a_target;
	sc->active_polled = polled;
	sc->state = LSI_CMD;
	sc->deadline = deadline_after_ms(pkt->pkt_time ? pkt->pkt_time : LSI_DEFAULT_TIME_MS);
	sc->commands++;
	sc->polled_commands += polled;
	lsi_clear_status(sc);
	lsi_setup_cmd(sc, ap, pkt);
	lsi_start_scripts(sc, sc->label[L_START]);
	irq_restore(flags);

	if (polled && !(pkt->pkt_flags & FLAG_NOWAIT))
		lsi_run_polled(sc);
	return TRAN_ACCEPT;	/* FLAG_NOWAIT: lsi_poll completes it */
}

/* tran_poll: the one FLAG_NOWAIT command to its end, as tran_start would have polled it (the
 * same deadline, from its tran_start). The chip runs one command at a time (max_polled 1): a
 * posted one still lets the dump's writer do its own work (the next piece's CRC) while the
 * SCRIPTS move the data. A reset since its tran_start dropped it: CMD_RESET at once. */
static int lsi_poll(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct lsi_softc *sc = ap->a_hba->hba_private;

	if (sc->active != pkt) {	/* lsi_finish forgot it: a reset, not its own end */
		pkt->pkt_ha_private = 0;
		pkt->pkt_reason = CMD_RESET;
		return TRAN_ACCEPT;
	}
	lsi_run_polled(sc);
	return TRAN_ACCEPT;
}

int lsi53c895a_intr(struct scsi_hba *hba)
{
	struct lsi_softc *sc = hba->hba_private;
	uint64_t flags = irq_save();
	int done = 0;

	sc->interrupts++;
	if (sc->state == LSI_CMD && !sc->active_polled) {
		done = lsi_service(sc);
	} else if (sc->state == LSI_IDLE && (rd8(sc, ISTAT) & (ISTAT_DIP | ISTAT_SIP))) {
		/* Status nobody waits for (left by a polled command's recovery, say): read it, so
		 * that a level-triggered line does not stay up. */
		sc->idle_interrupts++;
		lsi_clear_status(sc);
	}
	irq_restore(flags);
	return done;
}

/* ---- runtime interrupts (tran_intr_*) ------------------------------------------------------ */

/* The chip's interrupt enables (what ends or stops a command) and its PCI INTx on; they
 * survive chip recoveries until lsi_mute_chip (tran_intr_mute, tran_quiesce). */
static int lsi_enable_chip_interrupts(struct lsi_softc *sc)
{
	uint64_t flags;

	if (sc->broken || sc->quiesced)
		return EIO;
	flags = irq_save();
	sc->intr_on = true;
	pci_set_command_bits(sc->pci, 0, PCI_COMMAND_INTX_DISABLE);
	wr8(sc, DIEN, DIEN_RUNTIME);
	wr8(sc, SIEN0, SIEN0_RUNTIME);
	wr8(sc, SIEN1, SIEN1_RUNTIME);
	irq_restore(flags);
	return 0;
}

/* Register writes only (crash time, first thing; and the quiesce). The enables first (QEMU
 * lowers the line as soon as nothing enabled is pending), then INTx off for good measure. */
static void lsi_mute_chip(struct lsi_softc *sc)
{
	sc->intr_on = false;
	wr8(sc, DIEN, 0);
	wr8(sc, SIEN0, 0);
	wr8(sc, SIEN1, 0);
	pci_set_command_bits(sc->pci, PCI_COMMAND_INTX_DISABLE, 0);
}

/* INTx through the PIIX3's PIRQ routing to a level-triggered I/O APIC pin (bus/pci.h), masked
 * until the chip's enables are on. */
static int lsi_tran_intr_enable(struct scsi_hba *hba, uint8_t vector)
{
	struct lsi_softc *sc = hba->hba_private;
	int pin, err;

	if (sc->broken || sc->quiesced)
		return EIO;
	if (!sc->intx_routed) {
		err = pci_intx_route(sc->pci, vector, &pin);
		if (err)
			return err;
		sc->intx_pin = pin;
		sc->intx_routed = true;
		printf("%s: INTx on ISA IRQ %d, I/O APIC pin %d, vector %#x (level)\n", sc->name, pin,
		       pin, vector);
	}
	err = lsi_enable_chip_interrupts(sc);
	if (err)
		return err;
	pci_intx_unmask(sc->intx_pin);
	return 0;
}

static void lsi_tran_intr(struct scsi_hba *hba)
{
	(void)lsi53c895a_intr(hba);
}

/* Crash time, IF = 0, first thing: the chip's enables off (its line drops), INTx disabled,
 * the I/O APIC pin masked. (tran_quiesce mutes the chip again but leaves the I/O APIC alone:
 * the dump path must not touch what it has not pinned.) */
static void lsi_tran_intr_mute(struct scsi_hba *hba)
{
	struct lsi_softc *sc = hba->hba_private;

	lsi_mute_chip(sc);
	if (sc->intx_routed)
		pci_intx_mask(sc->intx_pin);
}

/* BUS DEVICE RESET to `target`: 1 if the target took the message. */
static int lsi_send_bdr(struct lsi_softc *sc, uint16_t target, uint16_t lun)
{
	uint64_t deadline = deadline_after_ms(LSI_MSG_TIME_MS);
	uint8_t istat, dstat = 0, sist1 = 0;

	lsi_clear_status(sc);
	lsi_ccb_nexus(sc, target);
	sc->ccb.msgout_buf[0] = MSG_IDENTIFY | (lun & 7);
	sc->ccb.msgout_buf[1] = MSG_BUS_DEVICE_RESET;
	sc->ccb.msgout.count = 2;
	lsi_start_scripts(sc, sc->label[L_MSG_START]);
	for (;;) {
		istat = rd8(sc, ISTAT);
		if (istat & (ISTAT_DIP | ISTAT_SIP))
			break;
		if (deadline_passed(deadline))
			return 0;
		cpu_relax();
	}
	if (istat & ISTAT_SIP) {
		(void)rd8(sc, SIST0);
		sist1 = rd8(sc, SIST1);
	}
	if (istat & ISTAT_DIP)
		dstat = rd8(sc, DSTAT);
	sc->bdrs++;
	return !(sist1 & SIST1_STO) && (dstat & DSTAT_SIR) && rd32(sc, DSPS) == INT_MSG_SENT;
}

/* A runtime command caught by a reset or an abort: it is gone. */
static void lsi_drop_active(struct lsi_softc *sc, uint8_t reason)
{
	if (sc->state == LSI_CMD)
		lsi_finish(sc, reason, CLEAN_NONE);
}

static int lsi_tran_reset(struct scsi_address *ap, int level)
{
	struct lsi_softc *sc = ap->a_hba->hba_private;
	uint64_t flags;
	int ok = 0;

	if (sc->broken)
		return 0;
	flags = irq_save();
	if (level == RESET_TARGET || level == RESET_LUN) {
		if (sc->state == LSI_IDLE && ap->a_target < sc->hba.max_target &&
		    ap->a_target != LSI_HOST_ID)
			ok = lsi_send_bdr(sc, ap->a_target, ap->a_lun);
		if (!ok) {
			/* Busy, or the target did not take the message: the bus then. */
			lsi_stop_scripts(sc);
			lsi_drop_active(sc, CMD_RESET);
			lsi_recover(sc);
			ok = 1;
		} else {
			lsi_clear_status(sc);
		}
	} else if (level == RESET_ALL) {
		lsi_stop_scripts(sc);
		lsi_drop_active(sc, CMD_RESET);
		lsi_recover(sc);
		ok = 1;
	}
	irq_restore(flags);
	return ok;
}

static int lsi_tran_abort(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct lsi_softc *sc = ap->a_hba->hba_private;
	uint64_t flags;

	if (sc->broken)
		return 0;
	flags = irq_save();
	if (sc->state == LSI_CMD && (pkt ? sc->active == pkt : sc->active_target == ap->a_target)) {
		/* QEMU keeps the request alive past a SCRIPTS abort; only a bus reset (or an
		 * ABORT message, which the chip cannot send to a connected target we no longer
		 * drive) cancels it. Best effort: the bus. */
		lsi_stop_scripts(sc);
		lsi_finish(sc, CMD_ABORTED, CLEAN_BUS);
	}
	irq_restore(flags);
	return 1;
}

static int lsi_tran_quiesce(struct scsi_hba *hba)
{
	struct lsi_softc *sc = hba->hba_private;
	uint64_t flags = irq_save();
	bool busy;

	lsi_mute_chip(sc);	/* interrupts off for good (chip init keeps them off) */
	busy = sc->state != LSI_IDLE || (rd8(sc, ISTAT1) & ISTAT1_SRUN) ||
	       (rd8(sc, SCNTL1) & SCNTL1_CON);
	sc->quiesced = true;	/* first: runtime commands stop here */
	sc->active = 0;		/* forgotten: never completed, never requeued */
	sc->state = LSI_IDLE;
	sc->quiesces++;
	if (testfault(TF_MASK_ONLY)) {
		/* Deliberately wrong: interrupts masked, nothing reset or aborted on the bus. */
		irq_restore(flags);
		return 0;
	}
	if (busy) {
		/* A command was on the bus (the crash interrupted it): targets must drop it. */
		lsi_recover(sc);
	} else {
		/* Idle chip, free bus: a chip reset is enough, no bus reset settle time. */
		lsi_stop_scripts(sc);
		lsi_chip_init(sc, false);
	}
	sc->broken = (rd8(sc, ISTAT1) & ISTAT1_SRUN) != 0;
	irq_restore(flags);
	return sc->broken ? EIO : 0;
}

static void lsi_tran_print_info(struct scsi_hba *hba)
{
	struct lsi_softc *sc = hba->hba_private;

	printf("  %s: registers at %s %#lx, SCRIPTS at %#x (%u bytes), ccb at %#x, ID %u\n", sc->name,
	       sc->mmio ? "mmio" : "io", sc->mmio ? (unsigned long)sc->mmio : (unsigned long)sc->iobase,
	       sc->label[L_START], sc->script_bytes,
	       phys32(&sc->ccb), LSI_HOST_ID);
	printf("  state %s%s%s, %s; last dstat 0x%02x sist0 0x%02x sist1 0x%02x dsps 0x%08x\n",
	       sc->state == LSI_IDLE ? "idle" : "command", sc->quiesced ? ", quiesced" : "",
	       sc->broken ? ", BROKEN" : "", sc->intr_on ? "interrupts on (runtime)" : "interrupts off (polled)",
	       sc->last_dstat, sc->last_sist0, sc->last_sist1, sc->last_dsps);
	printf("  interrupts taken %llu (%llu with nothing in flight)\n",
	       (unsigned long long)sc->interrupts, (unsigned long long)sc->idle_interrupts);
	printf("  commands %llu (polled %llu), completed %llu, timeouts %llu, selection timeouts %llu, "
	       "phase mismatches %llu, errors %llu, bus resets %llu, chip reinits %llu, BDRs %llu, "
	       "quiesces %llu\n",
	       (unsigned long long)sc->commands, (unsigned long long)sc->polled_commands,
	       (unsigned long long)sc->completions, (unsigned long long)sc->timeouts,
	       (unsigned long long)sc->sel_timeouts, (unsigned long long)sc->mismatches,
	       (unsigned long long)sc->errors, (unsigned long long)sc->bus_resets,
	       (unsigned long long)sc->chip_resets, (unsigned long long)sc->bdrs,
	       (unsigned long long)sc->quiesces);
}

/* DUMPINIT / DUMPTERM: the operating registers (256 bytes of BAR1) when the chip is driven
 * through memory space; port I/O needs nothing pinned. The SCRIPTS and the ccb are in .bss. */
#define LSI_REG_WINDOW	0x100

static int lsi_tran_dump_pin(struct scsi_hba *hba)
{
	struct lsi_softc *sc = hba->hba_private;

	return sc->mmio ? pin_phys(sc->mmio, LSI_REG_WINDOW) : 0;
}

static void lsi_tran_dump_unpin(struct scsi_hba *hba)
{
	struct lsi_softc *sc = hba->hba_private;

	if (sc->mmio)
		unpin_phys(sc->mmio, LSI_REG_WINDOW);
}

static const struct scsi_hba_tran lsi_tran = {
	.tran_name = LSI_TRAN_NAME,
	.tran_start = lsi_tran_start,
	.tran_poll = lsi_poll,
	.tran_reset = lsi_tran_reset,
	.tran_abort = lsi_tran_abort,
	.tran_quiesce = lsi_tran_quiesce,
	.tran_print_info = lsi_tran_print_info,
	.tran_dump_pin = lsi_tran_dump_pin,
	.tran_dump_unpin = lsi_tran_dump_unpin,
	.tran_intr_enable = lsi_tran_intr_enable,
	.tran_intr = lsi_tran_intr,
	.tran_intr_mute = lsi_tran_intr_mute,
};

/* ---- probe ------------------------------------------------------------------------------- */

static int lsi_attach(struct lsi_softc *sc, struct pci_dev *pci)
{
	memset(sc, 0, sizeof(*sc));
	sc->pci = pci;
	snprintf(sc->name, sizeof(sc->name), "lsi53c895a %02x:%02x.%x", pci->bus, pci->dev, pci->fn);
	/* BAR1: registers in memory space; BAR0: the same in I/O space. */
	if (pci->nbars > 1 && !pci->bar[1].io && pci->bar[1].base && pci->bar[1].size >= 0x100 &&
	    pci->bar[1].base < (4ull << 30))
		sc->mmio = (uintptr_t)pci->bar[1].base;
	else if (pci->bar[0].io && pci->bar[0].base && pci->bar[0].size >= 0x100)
		sc->iobase = (uint16_t)pci->bar[0].base;
	else
		return ENXIO;
	if (!lsi_build_scripts(sc))
		return ENOSPC;
	lsi_chip_init(sc, true);
	if (rd8(sc, SCID) != (SCID_RRE | LSI_HOST_ID))
		return EIO;		/* no chip answering there */

	sc->hba.tran = &lsi_tran;
	sc->hba.limits.dma_addr_max = 0xffffffffull;
	sc->hba.limits.max_xfer = LSI_MAX_XFER;
	sc->hba.limits.max_segs = LSI_NSEG;
	sc->hba.limits.max_seg_len = LSI_MAX_SEG_LEN;
	sc->hba.max_target = LSI_MAX_TARGET;
	sc->hba.max_lun = LSI_MAX_LUN;
	sc->hba.max_polled = 1;		/* one command at a time, posted or not */
	sc->hba.initiator_id = LSI_HOST_ID;
	sc->hba.hba_private = sc;
	sc->hba.name = sc->name;
	return 0;
}

int lsi53c895a_probe(void)
{
	static const uint16_t ids[] = { LSI_PCI_DEVICE_53C895A };
	struct pci_dev *pci;
	int registered = 0;

	for (int i = 0; (pci = pci_find(LSI_PCI_VENDOR, ids, 1, i)) != 0; i++) {
		struct lsi_softc *sc;
		int err;

		if (lsi_count == LSI_MAX_HBAS) {
			printf("lsi53c895a: more than %d HBAs, ignoring %02x:%02x.%x\n", LSI_MAX_HBAS,
			       pci->bus, pci->dev, pci->fn);
			break;
		}
		sc = &lsi_softc[lsi_count];
		err = lsi_attach(sc, pci);
		if (!err)
			err = scsi_hba_register(&sc->hba);
		if (err) {
			printf("lsi53c895a at %02x:%02x.%x: not attached: %s\n", pci->bus, pci->dev,
			       pci->fn, errno_name(err));
			continue;
		}
		lsi_count++;
		registered++;
	}
	return registered;
}
SCSI_HBA_DRIVER("lsi53c895a", "lsi", lsi53c895a_probe);

/* ---- for the console self-test (test/lsi_selftest.c) -------------------------------------- */

int lsi53c895a_count(void)
{
	return lsi_count;
}

struct lsi53c895a_stats lsi53c895a_get_stats(struct scsi_hba *hba)
{
	const struct lsi_softc *sc = hba->hba_private;

	return (struct lsi53c895a_stats){ .mismatches = sc->mismatches, .bus_resets = sc->bus_resets };
}
