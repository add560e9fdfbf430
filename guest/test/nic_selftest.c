/*
 * `nictest [DRIVER] [N [MTU]]` (MTU 1500 unless given): a network dump NIC exercised through its dddump only
 * (dump/dumpnic.h), before and without the netdump client: attach the N-th NIC of DRIVER
 * (e1000e by default), DUMPINIT, DUMPQUERY, DUMPSTART, then an ARP request (broadcast, who-has
 * 10.0.2.2 tell 10.0.2.15, the harness's and QEMU user networking's addresses) through the
 * dumpwrite routine, DUMPREAD until the reply comes, DUMPEND, DUMPTERM. Prints `nictest: PASS`
 * or `nictest: FAIL ...`. testfault=irq-on is in force from DUMPSTART to DUMPEND, as in a dump.
 *
 * Before DUMPSTART one request goes out with the runtime's interrupts on and its reply is left
 * unread (the runtime's frame that DUMPSTART must drop; its interrupt shows in QEMU's trace):
 * the reply taken after DUMPSTART is the second request's. From DUMPSTART to DUMPEND pinning is
 * enforced (arch/x86/pin.h), as in a dump: a touch of anything DUMPINIT did not pin fails it.
 */
#include "kern/shell.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "dump/dumpnic.h"
#include "dump/netdump.h"
#include "lib/byteorder.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"
#include "net/inet.h"

#define ARP_TRIES		3
#define ARP_WAIT_MS		1000
#define NICTEST_IOTIMEOUT_MS	1000
#define RUNTIME_WAIT_MS		20

#define GUEST_IP		0x0a00020fu	/* 10.0.2.15 */
#define SERVER_IP		0x0a000202u	/* 10.0.2.2 */

static int send_frame(struct dump_nic *nic, int (*dumpwrite)(struct dump_nic *, struct uio *), uint8_t *f,
		      size_t len)
{
	struct iovec out = { f, len };
	struct uio u = { .uio_iov = &out, .uio_iovcnt = 1, .uio_resid = len };

	return dumpwrite(nic, &u);
}

/* The ARP request (who-has SERVER_IP tell GUEST_IP), padded with zeros to the 60-byte minimum
 * frame. */
static void build_arp_request(uint8_t f[ETHER_MIN_FRAME], const uint8_t mac[ETHER_ADDR_LEN])
{
	static const uint8_t zero_mac[ETHER_ADDR_LEN];
	struct inet_endpoint self = { .ip = GUEST_IP };
	size_t len;

	memcpy(self.mac, mac, ETHER_ADDR_LEN);
	len = inet_arp_build(f, ARP_OP_REQUEST, &self, inet_broadcast_mac, zero_mac, SERVER_IP);
	memset(f + len, 0, ETHER_MIN_FRAME - len);
}

/* Send the request and wait for the reply, ARP_TRIES times: 0, or the errno that ended it. */
static uint8_t req[ETHER_MIN_FRAME], frame[ETHER_HEADER + 9000 + 4];

static int arp_exchange(struct dump_nic *nic, int (*dumpwrite)(struct dump_nic *, struct uio *))
{
	build_arp_request(req, nic->mac);
	for (int t = 0; t < ARP_TRIES; t++) {
		uint64_t start = rdtsc(), deadline = deadline_after_ms(ARP_WAIT_MS);
		int err = send_frame(nic, dumpwrite, req, sizeof(req));

		if (err) {
			printf("nictest: dumpwrite failed: %s\n", errno_name(err));
			return err;
		}
		printf("nictest: sent ARP who-has 10.0.2.2 tell 10.0.2.15 (%u bytes), try %d\n",
		       (unsigned)sizeof(req), t + 1);
		while (!deadline_passed(deadline)) {
			struct iovec in = { frame, sizeof(frame) };
			struct uio r = { .uio_iov = &in, .uio_iovcnt = 1, .uio_resid = sizeof(frame) };
			struct inet_frame f;
			uint64_t len;

			err = nic->dddump(nic, &r, DUMPREAD, (void *)(uintptr_t)ms_until(deadline));
			if (err == ETIMEDOUT)
				break;
			if (err) {
				printf("nictest: DUMPREAD failed: %s\n", errno_name(err));
				if (err == EMSGSIZE)
					continue;
				return err;
			}
			len = sizeof(frame) - r.uio_resid;
			if (inet_parse(frame, len, &f) == INET_ARP && f.arp_op == ARP_OP_REPLY &&
			    f.arp_sender_ip == SERVER_IP && f.arp_target_ip == GUEST_IP) {
				const uint8_t *m = f.arp_sender_mac;

				printf("nictest: ARP reply: 10.0.2.2 is at %02x:%02x:%02x:%02x:%02x:%02x (%llu bytes, "
				       "after %llu us)\n", m[0], m[1], m[2], m[3], m[4], m[5], (unsigned long long)len,
				       (unsigned long long)tsc_to_us(rdtsc() - start));
				return 0;
			}
			printf("nictest: ignored a frame: %llu bytes, type %#06x, from %02x:%02x:%02x:%02x:%02x:%02x\n",
			       (unsigned long long)len, len >= ETHER_HEADER ? get_be16(frame + 12) : 0, frame[6], frame[7],
			       frame[8], frame[9], frame[10], frame[11]);
		}
	}
	printf("nictest: no ARP reply in %d tries of %d ms\n", ARP_TRIES, ARP_WAIT_MS);
	return ETIMEDOUT;
}

/* DUMPSTART..DUMPEND as in a dump: under pinning enforcement (arch/x86/pin.h), guarded. */
static uint64_t guarded_exchange(uint64_t nic_p, uint64_t dumpwrite_p, uint64_t unused)
{
	struct dump_nic *nic = (struct dump_nic *)(uintptr_t)nic_p;
	struct dumpio_stat st;
	int err = arp_exchange(nic, (int (*)(struct dump_nic *, struct uio *))(uintptr_t)dumpwrite_p);
	int end = nic->dddump(nic, 0, DUMPEND, &st);

	if (end)
		printf("nictest: DUMPEND failed: %s\n", errno_name(end));
	return (uint64_t)(err ? err : end);
}

static void nictest_run(const char *word, int index, uint32_t mtu)
{
	const struct dump_nic_driver *drv = dump_nic_driver_find(word, strlen(word));
	struct dump_nic nic;
	struct dumpio_stat st;
	struct dmp_query q;
	bool violated = false;
	int err;

	if (!drv) {
		printf("nictest: FAIL no NIC driver \"%s\"\n", word);
		return;
	}
	memset(&nic, 0, sizeof(nic));
	err = drv->attach(index, mtu, NICTEST_IOTIMEOUT_MS, &nic);
	if (err) {
		printf("nictest: FAIL attach %s:%d: %s\n", word, index, errno_name(err));
		return;
	}
	printf("nictest: %s:%d at %s, MAC %02x:%02x:%02x:%02x:%02x:%02x, MTU %u\n", word, index, nic.where,
	       nic.mac[0], nic.mac[1], nic.mac[2], nic.mac[3], nic.mac[4], nic.mac[5], nic.mtu);
	err = nic.dddump(&nic, 0, DUMPINIT, &st);
	if (err) {
		printf("nictest: FAIL DUMPINIT: %s (device status %#x)\n", errno_name(err), st.device_status);
		return;
	}
	memset(&q, 0, sizeof(q));
	err = nic.dddump(&nic, 0, DUMPQUERY, &q);
	if (err || !q.dumpwrite) {
		printf("nictest: DUMPQUERY failed: %s\n", err ? errno_name(err) : "no dumpwrite routine");
		err = err ? err : EINVAL;
		goto term;
	}
	printf("nictest: DUMPQUERY min_tsize=%u max_tsize=%u\n", q.min_tsize, q.max_tsize);

	/* The runtime's frame: a reply nobody reads before DUMPSTART. */
	build_arp_request(req, nic.mac);
	err = send_frame(&nic, q.dumpwrite, req, sizeof(req));
	if (err) {
		printf("nictest: runtime dumpwrite failed: %s\n", errno_name(err));
		goto term;
	}
	udelay(RUNTIME_WAIT_MS * 1000);
	printf("nictest: runtime ARP request sent, its reply left unread\n");

	testfault_irq_on_now = testfault(TF_IRQ_ON);	/* as the crash sequence does */
	err = nic.dddump(&nic, 0, DUMPSTART, &st);
	if (err) {
		printf("nictest: DUMPSTART failed: %s (device status %#x)\n", errno_name(err), st.device_status);
		goto term;
	}
	printf("nictest: DUMPSTART done; pinning enforced until DUMPEND\n");
	err = pin_enforce_begin();
	if (err) {
		printf("nictest: pin_enforce_begin failed: %s\n", errno_name(err));
	} else {
		err = (int)pin_guarded_call(guarded_exchange, (uint64_t)(uintptr_t)&nic,
					    (uint64_t)(uintptr_t)q.dumpwrite, 0, &violated);
		pin_enforce_end();
	}
	if (violated) {
		printf("nictest: pinning violation in the dump path\n");
		err = EFAULT;
	}
	nic.dddump(&nic, 0, DUMPEND, &st);	/* again, in case the guarded part never got there */
	printf("nictest: DUMPEND done\n");
term:
	testfault_irq_on_now = false;
	if (nic.print_info)
		nic.print_info(nic.softc);
	nic.dddump(&nic, 0, DUMPTERM, 0);
	if (err)
		printf("nictest: FAIL %s\n", errno_name(err));
	else
		printf("nictest: PASS\n");
}

/*
 * The arguments of nictest and nicpair: an optional driver word (else "e1000e") into word[],
 * then up to nv decimal numbers into v[] (those not given keep their defaults).
 */
static void parse_nic_args(const char *args, char word[24], uint32_t *v, int nv)
{
	size_t n = 0;

	if (*args && !isdigit(*args)) {
		while (args[n] && args[n] != ' ' && n < 23) {
			word[n] = args[n];
			n++;
		}
		word[n] = 0;
		args += n;
		while (*args == ' ')
			args++;
	}
	for (int i = 0; i < nv && *args; i++) {
		v[i] = 0;
		while (isdigit(*args) && v[i] < 100000)
			v[i] = v[i] * 10 + (uint32_t)(*args++ - '0');
		while (*args == ' ')
			args++;
	}
}

/* nictest [DRIVER] [N [MTU]] */
static void cmd_nictest(const char *args)
{
	char word[24] = "e1000e";
	uint32_t v[2] = { 0, NETDUMP_MTU_DEFAULT };

	parse_nic_args(args, word, v, 2);
	nictest_run(word, (int)v[0], v[1]);
}
SHELL_COMMAND(180, "nictest", "[DRIVER] [N [MTU]]: ARP for 10.0.2.2 through NIC N's dump interface (e1000e)",
	      cmd_nictest);

/*
 * `nicpair [DRIVER] [A B [MTU]]`: two NICs of one driver on one Ethernet segment (QEMU: both on
 * one hub), MTU 9000 unless given: A sends B max_tsize-byte frames (one iovec, then header and
 * payload in two) and B must read them back whole (a jumbo frame spans several receive
 * buffers); then a frame B's reader has no room for must give EMSGSIZE and be dropped. The
 * exchanges run under pinning enforcement. Prints `nicpair: PASS` or `nicpair: FAIL ...`.
 */
#define NICPAIR_ETHERTYPE	0x88b5	/* IEEE local experimental */

static uint8_t pair_out[ETHER_HEADER + 9000], pair_in[ETHER_HEADER + 9000 + 4];

/* The next frame of ours at b within 1 s: its length, or -errno. */
static int64_t pair_read(struct dump_nic *b, uint8_t *buf, uint64_t room)
{
	uint64_t deadline = deadline_after_ms(ARP_WAIT_MS);

	while (!deadline_passed(deadline)) {
		struct iovec in = { buf, room };
		struct uio r = { .uio_iov = &in, .uio_iovcnt = 1, .uio_resid = room };
		int err = b->dddump(b, &r, DUMPREAD, (void *)(uintptr_t)ARP_WAIT_MS);

		if (err)
			return -err;
		if (room - r.uio_resid >= ETHER_HEADER && get_be16(buf + 12) == NICPAIR_ETHERTYPE)
			return (int64_t)(room - r.uio_resid);
	}
	return -ETIMEDOUT;
}

static int pair_exchange(struct dump_nic *a, struct dump_nic *b, int (*dumpwrite)(struct dump_nic *, struct uio *),
			 uint32_t len, int seq, int niov)
{
	struct iovec out[2] = { { pair_out, ETHER_HEADER }, { pair_out + ETHER_HEADER, len - ETHER_HEADER } };
	struct uio u = { .uio_iov = out, .uio_iovcnt = niov, .uio_resid = len };
	int64_t got;
	int err;

	if (niov == 1)
		out[0].iov_len = len;
	memcpy(pair_out, b->mac, ETHER_ADDR_LEN);
	memcpy(pair_out + 6, a->mac, ETHER_ADDR_LEN);
	put_be16(pair_out + 12, NICPAIR_ETHERTYPE);
	for (uint32_t i = ETHER_HEADER; i < len; i++)
		pair_out[i] = (uint8_t)(i * 7 + (uint32_t)seq);
	err = dumpwrite(a, &u);
	if (err) {
		printf("nicpair: dumpwrite of %u bytes failed: %s\n", len, errno_name(err));
		return err;
	}
	got = pair_read(b, pair_in, sizeof(pair_in));
	if (got < 0) {
		printf("nicpair: DUMPREAD of %u bytes failed: %s\n", len, errno_name((int)-got));
		return (int)-got;
	}
	if ((uint64_t)got != len || memcmp(pair_in, pair_out, len) != 0) {
		printf("nicpair: frame %d: sent %u bytes, received %lld, %s\n", seq, len, (long long)got,
		       (uint64_t)got == len ? "contents differ" : "length differs");
		return EIO;
	}
	printf("nicpair: frame %d: %u bytes in %d iovec(s) received intact\n", seq, len, niov);
	return 0;
}

/* The exchanges, under pinning enforcement like a dump's (a0, a1: the NICs, a2: the query). */
static uint64_t guarded_pair(uint64_t a0, uint64_t a1, uint64_t a2)
{
	struct dump_nic *a = (struct dump_nic *)(uintptr_t)a0, *b = (struct dump_nic *)(uintptr_t)a1;
	const struct dmp_query *q = (const struct dmp_query *)(uintptr_t)a2;
	struct iovec out = { pair_out, q->max_tsize };
	struct uio u = { .uio_iov = &out, .uio_iovcnt = 1, .uio_resid = q->max_tsize };
	uint8_t small[100];
	int64_t got;
	int err;

	err = pair_exchange(a, b, q->dumpwrite, q->max_tsize, 1, 1);
	if (!err)
		err = pair_exchange(a, b, q->dumpwrite, q->max_tsize, 2, 2);
	if (!err)
		err = pair_exchange(a, b, q->dumpwrite, q->min_tsize * 3, 3, 2);
	if (err)
		return (uint64_t)err;
	/* No room for it: EMSGSIZE, and the frame is gone (the next read finds nothing). */
	err = q->dumpwrite(a, &u);
	got = err ? -err : pair_read(b, small, sizeof(small));
	if (got == -EMSGSIZE)
		got = pair_read(b, pair_in, sizeof(pair_in));
	printf("nicpair: a %u-byte frame into %u bytes: %s, then %s\n", q->max_tsize, (unsigned)sizeof(small),
	       err ? errno_name(err) : "EMSGSIZE", got < 0 ? errno_name((int)-got) : "a frame");
	return got == -ETIMEDOUT ? 0 : EIO;
}

static void nicpair_run(const char *word, int ia, int ib, uint32_t mtu)
{
	const struct dump_nic_driver *drv = dump_nic_driver_find(word, strlen(word));
	struct dump_nic a, b;
	struct dumpio_stat st;
	struct dmp_query q;
	bool inited_a = false, inited_b = false, violated = false;
	int err;

	if (!drv) {
		printf("nicpair: FAIL no NIC driver \"%s\"\n", word);
		return;
	}
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	err = drv->attach(ia, mtu, NICTEST_IOTIMEOUT_MS, &a);
	if (!err)
		err = drv->attach(ib, mtu, NICTEST_IOTIMEOUT_MS, &b);
	if (err) {
		printf("nicpair: FAIL attach: %s\n", errno_name(err));
		return;
	}
	err = a.dddump(&a, 0, DUMPINIT, &st);
	inited_a = !err;
	if (!err)
		err = b.dddump(&b, 0, DUMPINIT, &st);
	inited_b = inited_a && !err;
	if (!err)
		err = a.dddump(&a, 0, DUMPQUERY, &q);
	if (!err)
		err = a.dddump(&a, 0, DUMPSTART, &st);
	if (!err)
		err = b.dddump(&b, 0, DUMPSTART, &st);
	if (err) {
		printf("nicpair: FAIL setting up: %s\n", errno_name(err));
		goto out;
	}
	printf("nicpair: %s:%d (%s) -> %s:%d (%s), MTU %u/%u, max_tsize %u\n", word, ia, a.where, word, ib, b.where,
	       a.mtu, b.mtu, q.max_tsize);
	err = pin_enforce_begin();
	if (!err) {
		err = (int)pin_guarded_call(guarded_pair, (uint64_t)(uintptr_t)&a, (uint64_t)(uintptr_t)&b,
					    (uint64_t)(uintptr_t)&q, &violated);
		pin_enforce_end();
	}
	if (violated) {
		printf("nicpair: pinning violation in the dump path\n");
		err = EFAULT;
	}
out:
	if (inited_a) {
		a.dddump(&a, 0, DUMPEND, &st);
		a.print_info(a.softc);
		a.dddump(&a, 0, DUMPTERM, 0);
	}
	if (inited_b) {
		b.dddump(&b, 0, DUMPEND, &st);
		b.print_info(b.softc);
		b.dddump(&b, 0, DUMPTERM, 0);
	}
	if (err)
		printf("nicpair: FAIL %s\n", errno_name(err));
	else
		printf("nicpair: PASS\n");
}

/* nicpair [DRIVER] [A B [MTU]] */
static void cmd_nicpair(const char *args)
{
	char word[24] = "e1000e";
	uint32_t v[3] = { 0, 1, 9000 };

	parse_nic_args(args, word, v, 3);
	nicpair_run(word, (int)v[0], (int)v[1], v[2]);
}
SHELL_COMMAND(190, "nicpair", "[DRIVER] [A B [MTU]]: NIC A sends NIC B full-size frames (one segment, MTU 9000)",
	      cmd_nicpair);
