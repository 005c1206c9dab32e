/* token.c — `kiln token create --name N | list | revoke NAME`: API tokens
 * for `kiln serve`. The token is printed once, on stdout, and never stored:
 * kiln keeps its SHA-256 under $KILN_HOME. */
#include "api/auth.h"
#include "cli/cli.h"
#include "util/home.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *USAGE = "kiln token create --name NAME | kiln token list | kiln token revoke NAME";

static int print_one(void *arg, const char *name, long long created) {
  (void)arg;
  char ts[32];
  time_t t = (time_t)created;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%-32s created %s\n", name, ts);
  return 0;
}

int kc_token(int argc, char **argv) {
  kiln_err e = {0};
  char home[4096];
  if (argc < 2) { kiln_fail(&e, KILN_EUSAGE, "token needs create, list or revoke"); return kc_report(&e, USAGE); }
  if (kiln_home(home, sizeof home, &e) < 0) return kc_report(&e, USAGE);
  if (!strcmp(argv[1], "create")) {
    const char *name = NULL;
    for (int i = 2; i < argc; i++)
      if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
    if (!name) { kiln_fail(&e, KILN_EUSAGE, "token create needs --name NAME"); return kc_report(&e, USAGE); }
    char tok[KA_TOKEN_LEN];
    if (ka_token_create(home, name, tok, &e) < 0) return kc_report(&e, USAGE);
    printf("%s\n", tok);
    fprintf(stderr, "kiln: token '%s' created; it is shown only this once (kiln keeps its SHA-256)\n", name);
    return 0;
  }
  if (!strcmp(argv[1], "list")) return ka_token_list(home, print_one, NULL, &e) < 0 ? kc_report(&e, USAGE) : 0;
  if (!strcmp(argv[1], "revoke") && argc == 3) return ka_token_revoke(home, argv[2], &e) < 0 ? kc_report(&e, USAGE) : 0;
  kiln_fail(&e, KILN_EUSAGE, "unknown token command '%s'", argv[1]);
  return kc_report(&e, USAGE);
}
