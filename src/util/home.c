/* home.c — see home.h. */
#include "util/home.h"
#include "util/fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_home(char *out, size_t n, kiln_err *e) {
  const char *k = getenv("KILN_HOME"), *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
  if (k && *k) snprintf(out, n, "%s", k);
  else if (x && *x) snprintf(out, n, "%s/kiln", x);
  else if (h && *h) snprintf(out, n, "%s/.local/share/kiln", h);
  else return kiln_fail(e, KILN_EINVAL, "cannot tell where kiln keeps its data: set KILN_HOME");
  char p[4096];
  snprintf(p, sizeof p, "%s/", out);                /* trailing '/': make the folder itself */
  return kiln_mkdirs(p, 0700, e);
}
