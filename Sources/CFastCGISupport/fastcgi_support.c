#define _GNU_SOURCE
#include "fastcgi_support.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int signal) {
    (void)signal;
    stop_requested = 1;
}

int fastcgi_support_install_stop_handler(void) {
    struct sigaction action;
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
    return sigaction(SIGINT, &action, NULL);
}

int fastcgi_support_stop_requested(void) { return stop_requested != 0; }

int fastcgi_support_wait_readable(int fd) { return fastcgi_support_wait_readable_for(fd, -1); }

int fastcgi_support_wait_readable_for(int fd, int timeout_ms) {
    sigset_t during_wait;
    if (sigprocmask(SIG_BLOCK, NULL, &during_wait) != 0) return -1;
    sigdelset(&during_wait, SIGTERM);
    sigdelset(&during_wait, SIGINT);
    struct timespec deadline = {0, 0};
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    for (;;) {
        if (stop_requested) return 0;
        struct timespec remaining;
        struct timespec *limit = NULL;
        if (timeout_ms >= 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            remaining.tv_sec = deadline.tv_sec - now.tv_sec;
            remaining.tv_nsec = deadline.tv_nsec - now.tv_nsec;
            if (remaining.tv_nsec < 0) {
                remaining.tv_sec -= 1;
                remaining.tv_nsec += 1000000000L;
            }
            if (remaining.tv_sec < 0) return 2;
            limit = &remaining;
        }
        struct pollfd target = {.fd = fd, .events = POLLIN, .revents = 0};
        int ready = ppoll(&target, 1, limit, &during_wait);
        if (ready > 0) return 1;
        if (ready == 0) return 2;
        if (errno != EINTR) return -1;
    }
}

int fastcgi_support_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0UL, 0UL, 0UL);
}

void fastcgi_support_finish(FCGX_Request *request) {
    int keep = request->keepConnection;
    if (request->in) {
        // As FCGX_Finish_r: flush and end the answer's streams (FCGI_END_REQUEST).
        if (FCGX_FClose(request->err) != 0) keep = 0;
        if (FCGX_FClose(request->out) != 0) keep = 0;
        if (FCGX_GetError(request->in) != 0) keep = 0;
        // The end of the web server's input (its empty FCGI_STDIN record) is read, so what it
        // sent is not left unread when the connection closes. Bounded: a body refused unread
        // (413) is not read through to its end; its connection closes with it unread, which a
        // Unix socket reports to the web server only after the answer.
        char rest[4096];
        for (int chunk = 0; keep == 0 && chunk < 16; chunk++) {
            if (FCGX_GetStr(rest, (int)sizeof rest, request->in) <= 0) break;
        }
    }
    int fd = request->ipcFd;
    FCGX_Free(request, 0);
    if (keep) return;
    if (fd >= 0) close(fd);
    request->ipcFd = -1;
    request->detached = 0;
}
