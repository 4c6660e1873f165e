/* xenlab guest TCP traffic: guest-to-guest throughput without iperf3 in a busybox initramfs.
 * Built static at image-build time and started by the guest's init from its kernel command
 * line. Results go to stdout, the guest's console, which dom0's xenconsoled keeps in
 * /var/log/xen/console/guest-NAME.log; xenlab reads the one line each side prints:
 *   xenlab-traffic: received BYTES bytes in SECONDS s from ADDRESS
 *   xenlab-traffic: sent BYTES bytes in SECONDS s to ADDRESS
 * The receiver's figure is the measurement (as iperf3's server side): bytes counted from
 * the first byte to the sender's close.
 * Usage: xenlab-traffic sink PORT
 *        xenlab-traffic send HOST PORT SECONDS   (retries the connection for 600 s: the
 *                                                 sink's guest may still be booting) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char buf[65536];

static int sink(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in at = {0};
    at.sin_family = AF_INET;
    at.sin_port = htons((unsigned short)port);
    at.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || bind(fd, (struct sockaddr *)&at, sizeof at) != 0 || listen(fd, 4) != 0) {
        perror("xenlab-traffic: sink");
        return 1;
    }
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        int conn = accept(fd, (struct sockaddr *)&from, &len);
        if (conn < 0) continue;
        unsigned long long bytes = 0;
        double first = 0;
        ssize_t n;
        while ((n = read(conn, buf, sizeof buf)) > 0) {
            if (bytes == 0) first = now();
            bytes += (unsigned long long)n;
        }
        double seconds = bytes ? now() - first : 0;
        close(conn);
        printf("xenlab-traffic: received %llu bytes in %.3f s from %s\n", bytes, seconds, inet_ntoa(from.sin_addr));
        fflush(stdout);
    }
}

static int send_for(const char *host, int port, double seconds) {
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
        fprintf(stderr, "xenlab-traffic: bad address %s\n", host);
        return 2;
    }
    int fd = -1;
    double give_up = now() + 600;
    while (now() < give_up) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&to, sizeof to) == 0) break;
        close(fd);
        fd = -1;
        usleep(500000);
    }
    if (fd < 0) {
        printf("xenlab-traffic: no sink at %s:%d after 600 s\n", host, port);
        fflush(stdout);
        return 1;
    }
    memset(buf, 0x5a, sizeof buf);
    unsigned long long bytes = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n <= 0) break;
        bytes += (unsigned long long)n;
    }
    close(fd);
    printf("xenlab-traffic: sent %llu bytes in %.3f s to %s\n", bytes, now() - start, host);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "sink") == 0) return sink(atoi(argv[2]));
    if (argc == 5 && strcmp(argv[1], "send") == 0) return send_for(argv[2], atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: %s sink PORT | send HOST PORT SECONDS\n", argv[0]);
    return 2;
}
