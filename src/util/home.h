/* home.h — where kiln keeps its state: $KILN_HOME, else
 * $XDG_DATA_HOME/kiln, else ~/.local/share/kiln (DESIGN.md, "Where things
 * live"). Created (0700) on first use. */
#ifndef KILN_HOME_H
#define KILN_HOME_H

#include <stddef.h>
#include "util/err.h"

int kiln_home(char *out, size_t n, kiln_err *e);

#endif
