/* progress.c — progress for people: on a TTY one line redrawn in place
 * (bar, frames, fps, ETA) at most 10 times a second; on a pipe or file a
 * log line every 2 seconds (JSON with --log-json). Writes to stderr only, so
 * stdout stays clean for --json. */
#include "cli/cli.h"
#include "util/log.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double kc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void kc_progress_init(kc_progress *p, const char *label, int quiet) {
  p->label = label;
  p->tty = isatty(2);
  p->quiet = quiet;
  p->t0 = p->last = kc_now();
  p->last_frames = 0;
}

static void fmt_eta(char *buf, size_t n, double s) {
  if (s < 0 || s > 360000) snprintf(buf, n, "--");
  else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
  else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%ds", (int)(s + 0.5));
}

void kc_progress_cb(void *arg, int64_t done, int64_t total) {
  kc_progress *p = arg;
  if (p->quiet) return;
  double now = kc_now();
  if (now - p->last < (p->tty ? 0.1 : 2.0) && done < total) return;
  p->last = now;
  p->last_frames = done;
  double el = now - p->t0, fps = el > 0 ? done / el : 0;
  double pct = total > 0 ? 100.0 * done / total : 0;
  char eta[32];
  fmt_eta(eta, sizeof eta, fps > 0 ? (total - done) / fps : -1);
  if (p->tty) {
    char bar[31];
    int fill = (int)(pct * 30 / 100);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r%s [%s] %3.0f%%  %lld/%lld frames  %.1f fps  ETA %s   ", p->label, bar, pct,
            (long long)done, (long long)total, fps, eta);
    fflush(stderr);
  } else {
    klog(KLOG_INFO, "%s: %lld/%lld frames (%.0f%%), %.1f fps, ETA %s", p->label, (long long)done, (long long)total,
         pct, fps, eta);
  }
}

void kc_progress_end(kc_progress *p, int64_t frames, int ok) {
  if (p->quiet) return;
  if (p->tty && p->last_frames > 0) fprintf(stderr, "\n");
  (void)frames;
  (void)ok;
}
