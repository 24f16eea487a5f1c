/*
 * ferry lab guest agent: heartbeat, memory writer, disk writer, verifiers.
 *
 * Built with `gcc -static -O2` by ferry.lab.guest and run by the guest's /init.
 * One process per role (fork), so a slow disk write or a busy memory writer
 * never delays a heartbeat; the roles share state through one MAP_SHARED page.
 *
 * Usage: ferry-agent --name N --collector IP:PORT --listen IP:PORT
 *                    [--heartbeat 0|1] [--memory MIB] [--disk DEVICE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FBLOCK 4096
#define REGION_MAX (64ULL * 1024 * 1024)
#define HEADER_SIZE 32
#define PAYLOAD_SIZE (FBLOCK - HEADER_SIZE)
#define HB_PERIOD_NS 10000000LL
#define MAGIC "FRYBLK01"

struct shared {
    volatile uint64_t disk_acked;
    volatile int disk_stop;
    /* A memory check: asked by the command loop, run by the memory writer
     * between two pages, its counts handed back here. */
    volatile uint64_t mem_asked, mem_done;
    volatile uint64_t mem_spoil; /* 1 + a page to mark as lost first (to test the check) */
    volatile uint64_t mem_pages, mem_valid, mem_stale, mem_torn, mem_misplaced, mem_pass;
};

static struct shared *shm;
static const char *vm_name = "unnamed";
static struct sockaddr_in collector;
static struct sockaddr_in listen_addr;

/* A worker must not outlive the agent: /init respawns the agent, and an
 * orphaned heartbeat process would then send a second, duplicate stream. */
static pid_t spawn_worker(void) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
    }
    return pid;
}

static void die(const char *what) {
    fprintf(stderr, "ferry-agent: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int parse_addr(const char *text, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static uint64_t xorshift64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static uint64_t fnv1a(const unsigned char *data, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Payload depends only on (block, seq) so the verifier can regenerate it. */
static void fill_payload(unsigned char *payload, uint64_t block, uint64_t seq) {
    uint64_t state = (block * 0x9E3779B97F4A7C15ULL) ^ (seq * 0xC2B2AE3D27D4EB4FULL) ^ 1;
    for (size_t i = 0; i < PAYLOAD_SIZE; i += 8) {
        uint64_t v = xorshift64(&state);
        memcpy(payload + i, &v, PAYLOAD_SIZE - i < 8 ? PAYLOAD_SIZE - i : 8);
    }
}

static double uptime_seconds(void) {
    double up = 0;
    FILE *f = fopen("/proc/uptime", "r");
    if (f != NULL) {
        if (fscanf(f, "%lf", &up) != 1) up = 0;
        fclose(f);
    }
    return up;
}

static void heartbeat_loop(void) {
    /* Real-time priority: under TCG the memory writer saturates the vCPU and a
     * normal-priority heartbeat would show scheduler latency, not migration
     * downtime. Failure is harmless (we just run at normal priority). */
    struct sched_param sp = {.sched_priority = 50};
    (void)sched_setscheduler(0, SCHED_FIFO, &sp);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("heartbeat socket");
    uint64_t seq = 1;
    int announced = 0;
    struct timespec next, now;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        char msg[256];
        int64_t mono_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
        int n = snprintf(msg, sizeof msg, "FERRYHB1 name=%s seq=%llu mono_ns=%lld disk_acked=%llu",
                         vm_name, (unsigned long long)seq, (long long)mono_ns,
                         (unsigned long long)shm->disk_acked);
        ssize_t sent = sendto(fd, msg, (size_t)n, 0, (struct sockaddr *)&collector, sizeof collector);
        if (sent == n && !announced) {
            printf("FERRY-FIRST-HEARTBEAT uptime=%.2f\n", uptime_seconds());
            fflush(stdout);
            announced = 1;
        }
        /* The sequence advances per attempt, so a datagram lost in the guest
         * (e.g. ARP not resolved yet) still shows up as a gap at the collector. */
        seq++;
        next.tv_nsec += HB_PERIOD_NS;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec)) {
            /* Late (guest paused, e.g. at migration switch-over): send now and
             * restart the schedule from here instead of bursting to catch up. */
            next = now;
            continue;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
    }
}

/* A memory page: its index, the pass that wrote it, then data derived from both,
 * so that any page can be checked on its own: a page the migration lost shows an
 * older pass, a torn one data that does not match its header. */
static void fill_page(uint64_t *words, size_t nwords, uint64_t index, uint64_t pass) {
    uint64_t state = (index * 0x9E3779B97F4A7C15ULL) ^ (pass * 0xC2B2AE3D27D4EB4FULL) ^ 1;
    words[0] = index;
    words[1] = pass;
    for (size_t i = 2; i < nwords; i++) words[i] = xorshift64(&state);
}

static int page_matches(const uint64_t *words, size_t nwords, uint64_t index, uint64_t pass) {
    uint64_t state = (index * 0x9E3779B97F4A7C15ULL) ^ (pass * 0xC2B2AE3D27D4EB4FULL) ^ 1;
    for (size_t i = 2; i < nwords; i++)
        if (words[i] != xorshift64(&state)) return 0;
    return 1;
}

/* Pages before `next` were rewritten in `pass`, the others still hold `pass - 1`. */
static void check_memory(unsigned char *mem, size_t npages, size_t page, size_t next,
                         uint64_t pass) {
    uint64_t valid = 0, stale = 0, torn = 0, misplaced = 0;
    if (shm->mem_spoil > 0 && shm->mem_spoil <= npages) {
        uint64_t *words = (uint64_t *)(mem + (shm->mem_spoil - 1) * page);
        words[1] -= 1; /* the page as a lost write leaves it: one pass behind */
        shm->mem_spoil = 0;
    }
    for (size_t i = 0; i < npages; i++) {
        const uint64_t *words = (uint64_t *)(mem + i * page);
        uint64_t expect = i < next ? pass : pass - 1;
        if (words[0] != i) misplaced++;
        else if (words[1] != expect) stale++;
        else if (!page_matches(words, page / 8, i, expect)) torn++;
        else valid++;
    }
    shm->mem_pages = npages;
    shm->mem_valid = valid;
    shm->mem_stale = stale;
    shm->mem_torn = torn;
    shm->mem_misplaced = misplaced;
    shm->mem_pass = pass;
    __sync_synchronize();
    shm->mem_done = shm->mem_asked;
}

static void memory_loop(long mib) {
    (void)setpriority(PRIO_PROCESS, 0, 19);
    size_t size = (size_t)mib * 1024 * 1024;
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("memory writer mmap");
    size_t page = (size_t)sysconf(_SC_PAGESIZE), npages = size / page;
    for (size_t i = 0; i < npages; i++) fill_page((uint64_t *)(mem + i * page), page / 8, i, 0);
    printf("FERRY-MEMORY-WRITER mib=%ld\n", mib);
    fflush(stdout);
    for (uint64_t pass = 1;; pass++) {
        /* Page by page so every page keeps getting dirtied during pre-copy. */
        for (size_t i = 0; i < npages; i++) {
            if (shm->mem_asked != shm->mem_done) check_memory(mem, npages, page, i, pass);
            fill_page((uint64_t *)(mem + i * page), page / 8, i, pass);
        }
    }
}

static uint64_t region_blocks(int fd) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
        struct stat st;
        if (fstat(fd, &st) != 0) return 0;
        size = (uint64_t)st.st_size;
    }
    if (size > REGION_MAX) size = REGION_MAX;
    return size / FBLOCK;
}

static void disk_loop(const char *device) {
    (void)setpriority(PRIO_PROCESS, 0, 5);
    int fd = open(device, O_RDWR | O_DIRECT | O_DSYNC);
    if (fd < 0) die("disk writer open");
    uint64_t nblocks = region_blocks(fd);
    if (nblocks == 0) {
        fprintf(stderr, "ferry-agent: %s is smaller than one block\n", device);
        exit(1);
    }
    unsigned char *buf;
    if (posix_memalign((void **)&buf, FBLOCK, FBLOCK) != 0) die("disk writer buffer");
    printf("FERRY-DISK-WRITER device=%s blocks=%llu\n", device, (unsigned long long)nblocks);
    fflush(stdout);
    for (uint64_t seq = 1; !shm->disk_stop; seq++) {
        uint64_t block = (seq - 1) % nblocks;
        fill_payload(buf + HEADER_SIZE, block, seq);
        uint64_t sum = fnv1a(buf + HEADER_SIZE, PAYLOAD_SIZE);
        memcpy(buf, MAGIC, 8);
        memcpy(buf + 8, &block, 8);
        memcpy(buf + 16, &seq, 8);
        memcpy(buf + 24, &sum, 8);
        ssize_t n = pwrite(fd, buf, FBLOCK, (off_t)(block * FBLOCK));
        if (n != FBLOCK) die("disk writer pwrite");
        /* O_DSYNC: once pwrite returns the block is durable, so it may be
         * acknowledged to the outside world. */
        __atomic_store_n(&shm->disk_acked, seq, __ATOMIC_RELEASE);
    }
    exit(0);
}

struct verify_counts {
    uint64_t blocks, written, valid, corrupt, stale, max_seq;
};

static int is_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0) return 0;
    return 1;
}

static void verify_region(const char *device, uint64_t acked, struct verify_counts *c) {
    memset(c, 0, sizeof *c);
    int fd = open(device, O_RDONLY | O_DIRECT);
    if (fd < 0) return;
    uint64_t nblocks = region_blocks(fd);
    c->blocks = nblocks;
    unsigned char *buf, *expect;
    if (posix_memalign((void **)&buf, FBLOCK, FBLOCK) != 0) die("verify buffer");
    expect = malloc(PAYLOAD_SIZE);
    if (expect == NULL) die("verify buffer");
    for (uint64_t b = 0; b < nblocks; b++) {
        /* The newest seq acknowledged for this block: largest s <= acked with
         * (s - 1) mod nblocks == b. The block must hold it or something newer. */
        uint64_t want = 0;
        if (acked >= b + 1) want = b + 1 + ((acked - 1 - b) / nblocks) * nblocks;
        if (pread(fd, buf, FBLOCK, (off_t)(b * FBLOCK)) != FBLOCK) {
            c->corrupt++;
            continue;
        }
        if (memcmp(buf, MAGIC, 8) != 0) {
            if (!is_zero(buf, FBLOCK))
                c->corrupt++;
            else if (want != 0)
                c->stale++;
            continue;
        }
        c->written++;
        uint64_t index, seq, sum;
        memcpy(&index, buf + 8, 8);
        memcpy(&seq, buf + 16, 8);
        memcpy(&sum, buf + 24, 8);
        fill_payload(expect, b, seq);
        if (index != b || seq == 0 || (seq - 1) % nblocks != b ||
            fnv1a(buf + HEADER_SIZE, PAYLOAD_SIZE) != sum ||
            memcmp(buf + HEADER_SIZE, expect, PAYLOAD_SIZE) != 0) {
            c->corrupt++;
            continue;
        }
        c->valid++;
        if (seq > c->max_seq) c->max_seq = seq;
        if (seq < want) c->stale++;
    }
    free(expect);
    free(buf);
    close(fd);
}

static void usage(void) {
    fprintf(stderr,
            "usage: ferry-agent --name N --collector IP:PORT --listen IP:PORT "
            "[--heartbeat 0|1] [--memory MIB] [--disk DEVICE]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int heartbeat = 1;
    long memory_mib = 0;
    const char *disk = NULL;
    const char *collector_text = NULL, *listen_text = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *opt = argv[i], *val = argv[++i];
        if (strcmp(opt, "--name") == 0) vm_name = val;
        else if (strcmp(opt, "--collector") == 0) collector_text = val;
        else if (strcmp(opt, "--listen") == 0) listen_text = val;
        else if (strcmp(opt, "--heartbeat") == 0) heartbeat = atoi(val);
        else if (strcmp(opt, "--memory") == 0) memory_mib = atol(val);
        else if (strcmp(opt, "--disk") == 0) disk = val[0] ? val : NULL;
        else usage();
    }
    if (collector_text == NULL || listen_text == NULL) usage();
    if (parse_addr(collector_text, &collector) != 0 || parse_addr(listen_text, &listen_addr) != 0) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);

    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) die("shared mmap");

    pid_t disk_pid = -1;
    if (disk != NULL && access(disk, F_OK) == 0) {
        disk_pid = spawn_worker();
        if (disk_pid == 0) disk_loop(disk);
    } else {
        disk = NULL;
    }
    int memory_running = memory_mib > 0;
    if (memory_running && spawn_worker() == 0) memory_loop(memory_mib);
    if (heartbeat && spawn_worker() == 0) heartbeat_loop();

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("command socket");
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* The interface address may not be usable yet; retry instead of failing. */
    while (bind(fd, (struct sockaddr *)&listen_addr, sizeof listen_addr) != 0) {
        listen_addr.sin_addr.s_addr = htonl(INADDR_ANY);
        sleep(1);
    }
    for (;;) {
        char cmd[256];
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, cmd, sizeof cmd - 1, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) continue;
        cmd[n] = '\0';
        char reply[512];
        int len;
        unsigned long long acked;
        if (strncmp(cmd, "ping", 4) == 0) {
            len = snprintf(reply, sizeof reply, "FERRYPONG name=%s", vm_name);
        } else if (sscanf(cmd, "verify %llu", &acked) == 1) {
            if (disk_pid > 0) {
                /* Stop the writer between two writes so the region is quiet. */
                shm->disk_stop = 1;
                (void)waitpid(disk_pid, NULL, 0);
                disk_pid = -1;
            }
            struct verify_counts c;
            if (disk != NULL)
                verify_region(disk, acked, &c);
            else
                memset(&c, 0, sizeof c);
            len = snprintf(reply, sizeof reply,
                           "FERRYVR1 name=%s blocks=%llu written=%llu valid=%llu corrupt=%llu "
                           "stale=%llu max_seq=%llu ok=%d",
                           vm_name, (unsigned long long)c.blocks, (unsigned long long)c.written,
                           (unsigned long long)c.valid, (unsigned long long)c.corrupt,
                           (unsigned long long)c.stale, (unsigned long long)c.max_seq,
                           c.corrupt == 0 && c.stale == 0);
            printf("%s\n", reply);
        } else if (strncmp(cmd, "memcheck", 8) == 0) {
            if (!memory_running) continue;
            unsigned long long spoil;
            if (sscanf(cmd, "memcheck spoil=%llu", &spoil) == 1) shm->mem_spoil = spoil + 1;
            uint64_t asked = shm->mem_asked + 1;
            shm->mem_asked = asked;
            while (shm->mem_done != asked) {
                struct timespec pause = {0, 10000000L};
                nanosleep(&pause, NULL);
            }
            len = snprintf(reply, sizeof reply,
                           "FERRYMC1 name=%s pages=%llu valid=%llu stale=%llu torn=%llu "
                           "misplaced=%llu pass=%llu ok=%d",
                           vm_name, (unsigned long long)shm->mem_pages,
                           (unsigned long long)shm->mem_valid, (unsigned long long)shm->mem_stale,
                           (unsigned long long)shm->mem_torn,
                           (unsigned long long)shm->mem_misplaced,
                           (unsigned long long)shm->mem_pass,
                           shm->mem_valid == shm->mem_pages);
            printf("%s\n", reply);
        } else {
            continue;
        }
        (void)sendto(fd, reply, (size_t)len, 0, (struct sockaddr *)&peer, plen);
    }
}
