/* fz.c — the harnesses' shared helpers (see fz.h). */
#include "fz.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[4096];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  remove(p);
  return 0;
}

void fz_rm_rf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void cleanup(void) {
  if (scratch[0]) fz_rm_rf(scratch);
}

const char *fz_scratch(void) {
  if (scratch[0]) return scratch;
  const char *t = getenv("TMPDIR");
  snprintf(scratch, sizeof scratch, "%s/kiln-fuzz-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(scratch)) fz_fail("cannot make a scratch folder under %s: %s", t && *t ? t : "/tmp", strerror(errno));
  atexit(cleanup);
  return scratch;
}

char *fz_str(const uint8_t *data, size_t n) {
  char *s = malloc(n + 1);
  if (!s) abort();
  memcpy(s, data, n);
  s[n] = 0;
  return s;
}

void fz_write(const char *path, const void *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fz_fail("cannot write %s: %s", path, strerror(errno));
  const char *p = data;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k <= 0) fz_fail("cannot write %s: %s", path, strerror(errno));
    p += k;
    n -= (size_t)k;
  }
  close(fd);
}

void fz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "==fuzz== invariant broken: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

void fz_check_msg(int rc, const kiln_err *e, const char *where) {
  static int verbose = -1;                        /* FZ_VERBOSE=1: say what each call answered (checking seeds) */
  if (verbose < 0) verbose = getenv("FZ_VERBOSE") != NULL;
  if (verbose) fprintf(stderr, "%s: %d%s%s\n", where, rc, rc < 0 ? " " : "", rc < 0 ? e->msg : "");
  if (rc >= 0) return;
  if (!e->msg[0]) fz_fail("%s returned %d without a message", where, rc);
  if (memchr(e->msg, 0, sizeof e->msg) == NULL) fz_fail("%s: message not terminated", where);
  json_t *j = json_string(e->msg);                /* NULL: not valid UTF-8 */
  if (!j) fz_fail("%s: message is not valid UTF-8: %s", where, e->msg);
  json_decref(j);
}

struct ks_store *fz_store(void) {
  static ks_store *store;
  if (store) return store;
  char root[4200];
  snprintf(root, sizeof root, "%s/store", fz_scratch());
  kiln_err e = {0};
  static const uint8_t secret[] = "fuzz-secret";
  if (ks_open_local(&store, root, secret, sizeof secret - 1, &e) < 0) fz_fail("store: %s", e.msg);
  return store;
}
