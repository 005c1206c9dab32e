/* t.h — the smallest test harness: CHECK records a failure with its place
 * and carries on; T_RUN runs a test function; t_done() prints the closing
 * line ("N passed, N failed") and gives the exit status. Helpers make a
 * scratch folder and read media back for golden comparisons. */
#ifndef KILN_T_H
#define KILN_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_checks, t_pass, t_fail, t_cur_failed;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "  FAIL %s:%d: %s — ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
      t_failed_checks++;                                                   \
      t_cur_failed = 1;                                                    \
    }                                                                      \
  } while (0)

/* CHECK as an expression: its value is whether cond held. */
static inline int t_check_failed(const char *file, int line, const char *cond) {
  fprintf(stderr, "  FAIL %s:%d: %s — ", file, line, cond);
  t_failed_checks++;
  t_cur_failed = 1;
  return 0;
}
#define CHECKV(cond, ...) \
  ((cond) ? 1 : (t_check_failed(__FILE__, __LINE__, #cond), fprintf(stderr, __VA_ARGS__), fprintf(stderr, "\n"), 0))

#define T_RUN(fn)                                                          \
  do {                                                                     \
    t_cur_failed = 0;                                                      \
    fprintf(stderr, "test %s\n", #fn);                                     \
    fn();                                                                  \
    if (t_cur_failed) { t_fail++; fprintf(stderr, "  -> failed\n"); }      \
    else t_pass++;                                                         \
  } while (0)

static inline int t_done(void) {
  printf("%d passed, %d failed\n", t_pass, t_fail);
  return t_fail ? 1 : 0;
}

#endif
