/* xenlab guest heartbeat: one UDP datagram "NAME SEQ\n" every INTERVAL_MS to HOST:PORT.
 * Built static at image-build time and run by the PV guest's init. The collector on the
 * services node timestamps arrivals; gaps in the sequence measure guest downtime.
 * Usage: xenlab-heartbeat HOST PORT NAME [INTERVAL_MS]
 * Sends are paced on an absolute CLOCK_MONOTONIC schedule so a slow iteration does not
 * drift the rate; after a pause (migration) it resumes at once rather than catching up. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT NAME [INTERVAL_MS]\n", argv[0]);
        return 2;
    }
    long interval_ns = (argc > 4 ? atol(argv[4]) : 10) * 1000000L;
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
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    char buf[128];
    for (unsigned long long seq = 0;; seq++) {
        int n = snprintf(buf, sizeof buf, "%s %llu\n", argv[3], seq);
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
