/* xenlab guest heartbeat: one UDP datagram "NAME BOOT SEQ MAC\n" every INTERVAL_MS to HOST:PORT.
 * Built static at image-build time and run by the PV guest's init. The collector on the
 * services node timestamps arrivals; gaps in the sequence measure guest downtime.
 * Usage: xenlab-heartbeat HOST PORT NAME KEY [INTERVAL_MS]
 * KEY is the lab's heartbeat key (given on the guest's kernel command line); MAC is the
 * first 32 hex digits of HMAC-SHA256(KEY, "NAME BOOT SEQ"), so the collector takes only
 * this lab's guests' heartbeats. BOOT is a random 64-bit number drawn at start: with SEQ it
 * makes every datagram unique, so the collector refuses one replayed from an earlier boot.
 * Sends are paced on an absolute CLOCK_MONOTONIC schedule so a slow iteration does not
 * drift the rate; after a pause (migration) it resumes at once rather than catching up. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* -- SHA-256 (FIPS 180-4) and HMAC (RFC 2104): no libcrypto in a static busybox guest -- */
typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t used;
} sha256;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256 *s, const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->bytes = 0;
    s->used = 0;
}

static void sha256_update(sha256 *s, const unsigned char *p, size_t n) {
    s->bytes += n;
    while (n--) {
        s->block[s->used++] = *p++;
        if (s->used == 64) {
            sha256_block(s, s->block);
            s->used = 0;
        }
    }
}

static void sha256_final(sha256 *s, unsigned char out[32]) {
    uint64_t bits = s->bytes * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    sha256_update(s, &pad, 1);
    while (s->used != 56) sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->h[i] >> 24), out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 8), out[4 * i + 3] = (unsigned char)s->h[i];
    }
}

static void hmac_sha256(const char *key, const char *msg, size_t n, unsigned char out[32]) {
    unsigned char k[64] = {0}, ipad[64], opad[64], inner[32];
    size_t klen = strlen(key);
    sha256 s;
    if (klen > 64) {
        sha256_init(&s);
        sha256_update(&s, (const unsigned char *)key, klen);
        sha256_final(&s, k);
    } else {
        memcpy(k, key, klen);
    }
    for (int i = 0; i < 64; i++) ipad[i] = k[i] ^ 0x36, opad[i] = k[i] ^ 0x5c;
    sha256_init(&s);
    sha256_update(&s, ipad, 64);
    sha256_update(&s, (const unsigned char *)msg, n);
    sha256_final(&s, inner);
    sha256_init(&s);
    sha256_update(&s, opad, 64);
    sha256_update(&s, inner, 32);
    sha256_final(&s, out);
}

static unsigned long long boot_number(void) {
    unsigned long long value = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, &value, sizeof value) != (ssize_t)sizeof value) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        value = (unsigned long long)now.tv_nsec << 32 ^ (unsigned long long)now.tv_sec ^ (unsigned long long)getpid();
    }
    if (fd >= 0) close(fd);
    return value;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT NAME KEY [INTERVAL_MS]\n", argv[0]);
        return 2;
    }
    long interval_ns = (argc > 5 ? atol(argv[5]) : 10) * 1000000L;
    const char *name = argv[3], *key = argv[4];
    if (strlen(name) > 63) {
        fprintf(stderr, "name too long: %s\n", name);
        return 2;
    }
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    unsigned long long boot = boot_number();
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    char buf[192];
    unsigned char mac[32];
    for (unsigned long long seq = 0;; seq++) {
        int n = snprintf(buf, sizeof buf, "%s %016llx %llu", name, boot, seq);
        hmac_sha256(key, buf, (size_t)n, mac);
        n += snprintf(buf + n, sizeof buf - (size_t)n, " ");
        for (int i = 0; i < 16; i++) n += snprintf(buf + n, sizeof buf - (size_t)n, "%02x", mac[i]);
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\n");
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&to, sizeof to); /* errors: keep going */
        next.tv_nsec += interval_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1) next = now; /* we were paused: no burst to catch up */
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
