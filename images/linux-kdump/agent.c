/* dumpbed's agent in the linux-kdump guest (docs/linux-kdump.md, "The contract").
 *
 *   agent line TEXT...                 write "TEXT...\n" to the result channel (port 0xE9)
 *   agent exit VALUE                   write VALUE to isa-debug-exit (port 0xf4): QEMU exits (VALUE << 1) | 1
 *   agent gpt DISK TYPE-GUID [first]   the partition of that type on DISK's GPT: prints
 *                                      "NUMBER FIRST_LBA LAST_LBA BLOCK"; exactly one unless "first"
 *   agent pattern SIZE RUNID DEVICE    the workload: fill, mlock, list the pages onto DEVICE, print the
 *                                      PATTERN line, then hold the pages until killed
 *
 * Built static (gcc -static -O2) by images/linux-kdump/build.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define RESULT_PORT 0xE9
#define EXIT_PORT 0xF4
#define WDT_PORT_DISABLE 0x441 /* QEMU's ib700: a write stops it */
#define WDT_PORT_ENABLE 0x443 /* a write (re)starts it */
#define PAGE 4096u
#define PATTERN_MAGIC 0x4e52545441504244ull /* "DBPATTRN" */

static int die(const char *what)
{
    fprintf(stderr, "agent: %s: %s\n", what, errno ? strerror(errno) : "failed");
    return 1;
}

static int result_line(const char *text)
{
    if (ioperm(RESULT_PORT, 1, 1) != 0)
        return die("ioperm 0xe9");
    for (const char *p = text; *p; p++)
        outb((unsigned char)*p, RESULT_PORT);
    outb('\n', RESULT_PORT);
    return 0;
}

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---- GPT ------------------------------------------------------------------------------- */

static void guid_text(const unsigned char *g, char *out)
{
    /* GPT stores the first three fields little-endian */
    sprintf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
            g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

static int cmd_gpt(const char *disk, const char *type, int first_only)
{
    int fd = open(disk, O_RDONLY);
    if (fd < 0)
        return die(disk);
    int block = 512;
    if (ioctl(fd, BLKSSZGET, &block) != 0 || block < 512)
        block = 512;
    unsigned char *hdr = malloc(block);
    if (!hdr || pread(fd, hdr, block, block) != block)
        return die("read GPT header");
    if (memcmp(hdr, "EFI PART", 8) != 0) {
        fprintf(stderr, "agent: %s: no GPT\n", disk);
        return 2;
    }
    uint64_t entries_lba;
    uint32_t count, esize;
    memcpy(&entries_lba, hdr + 72, 8);
    memcpy(&count, hdr + 80, 4);
    memcpy(&esize, hdr + 84, 4);
    if (esize < 128 || esize > 4096 || count == 0 || count > 4096) {
        fprintf(stderr, "agent: %s: bad GPT header\n", disk);
        return 2;
    }
    size_t bytes = (size_t)count * esize;
    unsigned char *ents = malloc(bytes);
    if (!ents || pread(fd, ents, bytes, (off_t)entries_lba * block) != (ssize_t)bytes)
        return die("read GPT entries");
    int found = 0;
    unsigned number = 0;
    uint64_t first = 0, last = 0;
    for (uint32_t i = 0; i < count; i++) {
        char g[40];
        guid_text(ents + (size_t)i * esize, g);
        if (strcasecmp(g, type) != 0)
            continue;
        if (found++ == 0) {
            number = i + 1; /* Linux names GPT partitions by entry index + 1 */
            memcpy(&first, ents + (size_t)i * esize + 32, 8);
            memcpy(&last, ents + (size_t)i * esize + 40, 8);
        }
        if (first_only)
            break;
    }
    close(fd);
    if (found != 1 && !(first_only && found)) {
        fprintf(stderr, "agent: %s: %d partitions of type %s\n", disk, found, type);
        return 3;
    }
    printf("%u %llu %llu %d\n", number, (unsigned long long)first, (unsigned long long)last, block);
    return 0;
}

/* ---- the pattern workload -------------------------------------------------------------- */

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'K': case 'k': v <<= 10; end++; break;
    case 'M': case 'm': v <<= 20; end++; break;
    case 'G': case 'g': v <<= 30; end++; break;
    }
    if (*end)
        return -1;
    *out = (v + PAGE - 1) / PAGE * PAGE;
    return 0;
}

static int cmd_pattern(const char *size_text, const char *runid_text, const char *device, const char *disk_name,
                       unsigned long long list_offset)
{
    uint64_t size, runid;
    char *end;
    if (parse_size(size_text, &size) != 0 || size == 0) {
        fprintf(stderr, "agent: bad pattern size %s\n", size_text);
        return 2;
    }
    runid = strtoull(runid_text, &end, 16);
    if (*end || end == runid_text || strlen(runid_text) > 16) {
        fprintf(stderr, "agent: bad run id %s\n", runid_text);
        return 2;
    }
    double t0 = now();
    uint64_t pages = size / PAGE;
    uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return die("mmap");
    madvise(mem, size, MADV_NOHUGEPAGE);
    for (uint64_t i = 0; i < pages; i++) {
        uint64_t *w = mem + i * (PAGE / 8);
        uint64_t x = PATTERN_MAGIC ^ runid ^ i;
        w[0] = PATTERN_MAGIC;
        w[1] = runid;
        w[2] = i;
        for (unsigned k = 4; k < PAGE / 8; k++) {
            w[k] = splitmix64(runid + i * 512 + k);
            x ^= w[k];
        }
        w[3] = x;
    }
    if (mlock(mem, size) != 0)
        return die("mlock");

    /* the page list: a 4 KiB header, then one u64 physical address per page */
    uint64_t list_bytes = PAGE + pages * 8;
    unsigned char *list = calloc(1, list_bytes);
    if (!list)
        return die("calloc");
    uint64_t *ent = (uint64_t *)(list + PAGE);
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0)
        return die("/proc/self/pagemap");
    uint64_t first_vpn = (uintptr_t)mem / PAGE, missing = 0;
    const uint64_t chunk = 4096;
    uint64_t *buf = malloc(chunk * 8);
    for (uint64_t i = 0; i < pages; i += chunk) {
        uint64_t n = pages - i < chunk ? pages - i : chunk;
        if (pread(pm, buf, n * 8, (off_t)((first_vpn + i) * 8)) != (ssize_t)(n * 8))
            return die("read pagemap");
        for (uint64_t k = 0; k < n; k++) {
            uint64_t e = buf[k];
            uint64_t pfn = e & ((1ull << 55) - 1);
            if (!(e >> 63) || pfn == 0) {
                ent[i + k] = 0;
                missing++;
            } else {
                ent[i + k] = pfn * PAGE;
            }
        }
    }
    close(pm);
    uint64_t fnv = 0xcbf29ce484222325ull;
    for (uint64_t b = 0; b < pages * 8; b++) {
        fnv ^= ((unsigned char *)ent)[b];
        fnv *= 0x100000001b3ull;
    }
    uint32_t version = 1, psize = PAGE;
    memcpy(list, "DBPGLST1", 8);
    memcpy(list + 8, &version, 4);
    memcpy(list + 12, &psize, 4);
    memcpy(list + 16, &runid, 8);
    memcpy(list + 24, &pages, 8);
    memcpy(list + 32, &missing, 8);
    memcpy(list + 40, &fnv, 8);

    int fd = open(device, O_WRONLY);
    if (fd < 0)
        return die(device);
    off_t dev_size = lseek(fd, 0, SEEK_END);
    if (dev_size >= 0 && (uint64_t)dev_size < list_bytes) {
        fprintf(stderr, "agent: the page list (%llu bytes) does not fit in %s (%lld bytes)\n",
                (unsigned long long)list_bytes, device, (long long)dev_size);
        return 4;
    }
    for (uint64_t done = 0; done < list_bytes;) {
        ssize_t w = pwrite(fd, list + done, list_bytes - done, (off_t)done);
        if (w <= 0)
            return die("write page list");
        done += (uint64_t)w;
    }
    if (fsync(fd) != 0)
        return die("fsync page list");
    close(fd);
    free(list);
    free(buf);

    char line[512];
    snprintf(line, sizeof line,
             "DUMPBED PATTERN pages=%llu bytes=%llu runid=%016llx disk=%s list_offset=%llu list_bytes=%llu "
             "missing=%llu seconds=%.2f",
             (unsigned long long)pages, (unsigned long long)size, (unsigned long long)runid, disk_name, list_offset,
             (unsigned long long)list_bytes, (unsigned long long)missing, now() - t0);
    if (result_line(line) != 0)
        return 1;
    fprintf(stderr, "agent: %s\n", line);
    /* tell /init, then hold the pages until the crash */
    int ready = open("/run/pattern.done", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (ready >= 0) {
        dprintf(ready, "%llu\n", (unsigned long long)pages);
        close(ready);
    }
    close(0);
    close(1);
    close(2);
    for (;;)
        pause();
}

/* agent hang SECONDS: the console's `hang` (docs/linux-kdump.md, "Crash kinds"). Arms QEMU's
 * ib700 watchdog (its enable port 0x443 takes an index into 30, 28, .., 0 seconds) and never pets
 * it: this process takes the only CPU as a SCHED_FIFO 99 spinner with the real-time throttle off,
 * so nothing else in user space runs again, and the watchdog's expiry (-action
 * watchdog=inject-nmi) sends the NMI that unknown_nmi_panic turns into the panic. */
static int cmd_hang(const char *seconds_text)
{
    long seconds = strtol(seconds_text, NULL, 10);
    if (seconds < 0 || seconds > 30 || seconds % 2)
        return die("hang: SECONDS must be even, 0..30");
    int fd = open("/proc/sys/kernel/sched_rt_runtime_us", O_WRONLY);
    if (fd < 0 || write(fd, "-1\n", 3) != 3)
        return die("hang: sched_rt_runtime_us");
    close(fd);
    struct sched_param param = {.sched_priority = 99};
    if (sched_setscheduler(0, SCHED_FIFO, &param) != 0)
        return die("hang: SCHED_FIFO");
    if (ioperm(WDT_PORT_DISABLE, 4, 1) != 0)
        return die("hang: ioperm 0x441");
    fprintf(stderr, "agent: hang: the ib700 watchdog armed for %ld s, spinning\n", seconds);
    outb((unsigned char)((30 - seconds) / 2), WDT_PORT_ENABLE);
    for (;;)
        __asm__ volatile("pause");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "line") == 0) {
        char text[4096] = "";
        size_t len = 0;
        for (int i = 2; i < argc; i++) {
            int n = snprintf(text + len, sizeof text - len, "%s%s", i > 2 ? " " : "", argv[i]);
            if (n < 0 || (size_t)n >= sizeof text - len)
                break;
            len += n;
        }
        return result_line(text);
    }
    if (argc == 3 && strcmp(argv[1], "exit") == 0) {
        unsigned v = (unsigned)strtoul(argv[2], NULL, 0);
        if (ioperm(EXIT_PORT, 4, 1) != 0)
            return die("ioperm 0xf4");
        outl(v, EXIT_PORT);
        return 1; /* still here: no isa-debug-exit device */
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "gpt") == 0)
        return cmd_gpt(argv[2], argv[3], argc == 5 && strcmp(argv[4], "first") == 0);
    if (argc == 3 && strcmp(argv[1], "hang") == 0)
        return cmd_hang(argv[2]);
    if (argc == 7 && strcmp(argv[1], "pattern") == 0)
        return cmd_pattern(argv[2], argv[3], argv[4], argv[5], strtoull(argv[6], NULL, 10));
    fprintf(stderr,
            "usage: agent line TEXT... | agent exit VALUE | agent gpt DISK TYPE-GUID [first] |\n"
            "       agent pattern SIZE RUNID DEVICE DISKNAME LIST_OFFSET | agent hang SECONDS\n");
    return 2;
}
