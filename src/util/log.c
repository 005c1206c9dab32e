/* log.c — see log.h. State: the minimum level and the output mode, set once
 * at start-up by klog_setup() before any thread is started. */
#include "util/log.h"
#include "util/err.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static klog_level g_min = KLOG_INFO;
static int g_json = 0;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const g_names[] = {"debug", "info", "warn", "error", "quiet"};

void klog_setup(klog_level min_level, int json) {
  g_min = min_level;
  g_json = json;
}

klog_level klog_min_level(void) { return g_min; }

int klog_parse_level(const char *s) {
  for (int i = 0; i <= KLOG_QUIET; i++)
    if (strcmp(s, g_names[i]) == 0) return i;
  return -1;
}

void klog(klog_level lvl, const char *fmt, ...) {
  if (lvl < g_min || lvl >= KLOG_QUIET) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  kiln_vformat(msg, sizeof msg, fmt, ap);        /* valid UTF-8: a JSON log line never fails to encode */
  va_end(ap);

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(tv.tv_usec / 1000));

  pthread_mutex_lock(&g_lock);
  if (g_json) {
    json_t *o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", g_names[lvl], "msg", msg);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line) fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(o);
  } else {
    fprintf(stderr, "kiln: %s%s\n", lvl >= KLOG_WARN ? (lvl == KLOG_WARN ? "warning: " : "error: ") : "", msg);
  }
  fflush(stderr);
  pthread_mutex_unlock(&g_lock);
}
