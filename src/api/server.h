/* server.h — the HTTP server of `kiln serve` (see server.c for the routes). */
#ifndef KILN_SERVER_H
#define KILN_SERVER_H

#include <stdint.h>
#include <sys/socket.h>

#include "store/store.h"
#include "util/err.h"

struct MHD_Daemon;

typedef struct kiln_server {
  char home[4096];              /* $KILN_HOME: tokens */
  ks_store *store;              /* borrowed */
  int64_t max_upload;           /* bytes */
  struct MHD_Daemon *d;
  unsigned port;                /* the port actually bound (for :0) */
} kiln_server;

int kiln_server_start(kiln_server *s, const struct sockaddr *addr, int threads, kiln_err *e);
void kiln_server_stop(kiln_server *s);

#endif
