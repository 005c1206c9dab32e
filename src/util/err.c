/* err.c — the tables behind KILN_ERRNO_MAP and the message helpers.
 * Owns nothing beyond static strings; kiln_err buffers belong to callers. */
#include "util/err.h"

#include <libavutil/error.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define KILN_ERR_CASE_NAME(name, num, cls, msg) case KILN_E##name: return "E" #name;
#define KILN_ERR_CASE_CLASS(name, num, cls, msg) case KILN_E##name: return cls;
#define KILN_ERR_CASE_MSG(name, num, cls, msg) case KILN_E##name: return msg;

const char *kiln_errname(int code) {
  switch (code) {
    case 0: return "OK";
    KILN_ERRNO_MAP(KILN_ERR_CASE_NAME)
    default: return "EUNKNOWN";
  }
}

const char *kiln_errclass(int code) {
  switch (code) {
    case 0: return "none";
    KILN_ERRNO_MAP(KILN_ERR_CASE_CLASS)
    default: return "internal";
  }
}

const char *kiln_strerror(int code) {
  switch (code) {
    case 0: return "success";
    KILN_ERRNO_MAP(KILN_ERR_CASE_MSG)
    default: return "unknown error";
  }
}

int kiln_fail(kiln_err *e, int code, const char *fmt, ...) {
  if (!e) return code;
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return code;
}

void kiln_err_prefix(kiln_err *e, const char *fmt, ...) {
  if (!e) return;
  char pre[KILN_ERR_MSG_MAX], old[KILN_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
}

const char *kiln_averr(int averror, char *buf, size_t n) {
  if (av_strerror(averror, buf, n) < 0) snprintf(buf, n, "libav error %d", averror);
  return buf;
}
