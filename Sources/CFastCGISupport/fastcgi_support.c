#define _GNU_SOURCE
#include "fastcgi_support.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>

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

int fastcgi_support_wait_readable(int fd) {
    sigset_t during_wait;
    if (sigprocmask(SIG_BLOCK, NULL, &during_wait) != 0) return -1;
    sigdelset(&during_wait, SIGTERM);
    sigdelset(&during_wait, SIGINT);
    for (;;) {
        if (stop_requested) return 0;
        struct pollfd target = {.fd = fd, .events = POLLIN, .revents = 0};
        int ready = ppoll(&target, 1, NULL, &during_wait);
        if (ready > 0) return 1;
        if (ready < 0 && errno != EINTR) return -1;
    }
}

int fastcgi_support_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0UL, 0UL, 0UL);
}
