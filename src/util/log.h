/* log.h — leveled logging to stderr: plain text for people (the default,
 * and what a TTY gets) or one JSON object per line with --log-json.
 * Thread-safe: each record is written with a single fwrite under a lock.
 * Never pass secrets to the logger; it writes what it is given. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

typedef enum { KLOG_DEBUG = 0, KLOG_INFO, KLOG_WARN, KLOG_ERROR, KLOG_QUIET } klog_level;

void klog_setup(klog_level min_level, int json);
klog_level klog_min_level(void);
/* Parses "debug", "info", "warn", "error", "quiet"; returns -1 if unknown. */
int klog_parse_level(const char *s);
void klog(klog_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define KLOG_D(...) klog(KLOG_DEBUG, __VA_ARGS__)
#define KLOG_I(...) klog(KLOG_INFO, __VA_ARGS__)
#define KLOG_W(...) klog(KLOG_WARN, __VA_ARGS__)
#define KLOG_E(...) klog(KLOG_ERROR, __VA_ARGS__)

#endif
