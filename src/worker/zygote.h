/* zygote.h — the worker-starting process and its message helpers (zygote.c). */
#ifndef KILN_ZYGOTE_H
#define KILN_ZYGOTE_H

#include <stddef.h>
#include <sys/types.h>

/* Sends one message, with fd attached when fd >= 0. 0 or -1. */
int kz_send(int sock, const char *msg, int fd);
/* Receives one message into buf (NUL-terminated) and an attached fd (or
 * -1). Returns its length, 0 at EOF, -1 on error (EAGAIN with MSG_DONTWAIT). */
ssize_t kz_recv(int sock, char *buf, size_t n, int *fd, int flags);
/* The zygote's loop on sock; returns when the server closes it. */
int kz_main(int sock, const char *config);

#endif
