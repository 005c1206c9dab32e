/* home.c — see home.h. */
#include "util/home.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int kiln_home(char *out, size_t n, kiln_err *e) {
  const char *k = getenv("KILN_HOME"), *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
  if (k && *k) snprintf(out, n, "%s", k);
  else if (x && *x) snprintf(out, n, "%s/kiln", x);
  else if (h && *h) snprintf(out, n, "%s/.local/share/kiln", h);
  else return kiln_fail(e, KILN_EINVAL, "cannot tell where kiln keeps its data: set KILN_HOME");
  /* make every missing folder on the way */
  char p[4096];
  snprintf(p, sizeof p, "%s/", out);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/') continue;
    *c = 0;
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
      return kiln_fail(e, KILN_EIO, "cannot create kiln's folder '%s': %s", p, strerror(errno));
    *c = '/';
  }
  return 0;
}
