/* Closed-loop TCP echo load generator for benchmarks/bench_echo.py.
 *
 *   echo_client HOST PORT CONNS SECONDS [WARMUP_SECONDS] [MSG_BYTES]
 *       Open CONNS connections, keep exactly one MSG_BYTES (default 64)
 *       message in flight on each, and count completed round trips (the
 *       whole message echoed back). After the warm-up it prints "start" and
 *       flushes, so the caller can sample the server's CPU time; after
 *       SECONDS it prints
 *           done roundtrips=N seconds=S
 *       and exits. One thread, one epoll set, edge-free (level-triggered)
 *       EPOLLIN only: a send of 64 bytes on a fresh loop-back socket never
 *       blocks, so the generator spends ~1 syscall per send and ~1 per
 *       receive and stays far from being the bottleneck (check with the
 *       reference server below).
 *
 *   echo_client --server PORT
 *       A reference single-threaded epoll echo server (the machine's
 *       ceiling for this client). Prints "port N" once listening (PORT 0
 *       picks a free port) and serves until killed.
 *
 * Any short read, error or peer close is fatal: the benchmark is only
 * meaningful if every connection stays in lockstep.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSG 65536

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static __attribute__((noreturn)) void serve(int port) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(ls, 1024) < 0) die("listen");
    socklen_t len = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &len);
    printf("port %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static char buf[MAX_MSG];
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(fd);
                continue;
            }
            /* Echo back; loop-back sends of small messages do not block. */
            ssize_t off = 0;
            while (off < r) {
                ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
                if (w < 0) {
                    if (errno == EAGAIN) continue;
                    close(fd);
                    break;
                }
                off += w;
            }
        }
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "--server") == 0) serve(atoi(argv[2]));
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT CONNS SECONDS [WARMUP] [MSG_BYTES]\n"
                        "       %s --server PORT\n", argv[0], argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    double warmup = argc > 5 ? atof(argv[5]) : 1.0;
    int msg = argc > 6 ? atoi(argv[6]) : 64;
    if (conns < 1 || msg < 1 || msg > MAX_MSG) {
        fprintf(stderr, "bad CONNS or MSG_BYTES\n");
        return 2;
    }

    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }

    int *fds = calloc((size_t)conns, sizeof *fds);
    int *got = calloc((size_t)conns, sizeof *got); /* bytes of the echo so far */
    char out[MAX_MSG], in[MAX_MSG];
    memset(out, 'x', sizeof out);
    int one = 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < conns; i++) {
        /* Blocking connect (the server's backlog absorbs the burst), then
         * non-blocking for the measurement. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl");
        fds[i] = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }

    /* Prime: one message in flight per connection. */
    for (int i = 0; i < conns; i++)
        if (send(fds[i], out, (size_t)msg, MSG_NOSIGNAL) != msg) die("send");

    struct epoll_event *evs = calloc((size_t)conns, sizeof *evs);
    long long count = 0;
    int started = 0;
    double t0 = now(), t_start = 0, t_end = 0;
    double deadline = t0 + warmup;
    for (;;) {
        int n = epoll_wait(ep, evs, conns, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            ssize_t r = recv(fds[i], in, (size_t)(msg - got[i]), 0);
            if (r < 0) {
                if (errno == EAGAIN) continue;
                die("recv");
            }
            if (r == 0) {
                fprintf(stderr, "server closed connection %d\n", i);
                return 1;
            }
            got[i] += (int)r;
            if (got[i] < msg) continue;
            got[i] = 0;
            count++;
            if (send(fds[i], out, (size_t)msg, MSG_NOSIGNAL) != msg) die("send");
        }
        double t = now();
        if (t >= deadline) {
            if (!started) {
                /* Warm-up over: start counting. */
                started = 1;
                count = 0;
                t_start = t;
                deadline = t + seconds;
                printf("start\n");
                fflush(stdout);
            } else {
                t_end = t;
                break;
            }
        }
    }
    printf("done roundtrips=%lld seconds=%.6f\n", count, t_end - t_start);
    fflush(stdout);
    for (int i = 0; i < conns; i++) close(fds[i]);
    return 0;
}
