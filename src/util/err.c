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

size_t kiln_utf8_seq(const unsigned char *p, size_t n) {
  if (n == 0) return 0;
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned min;
  if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
  else return 0;
  if (n < len) return 0;
  unsigned cp = c & (0xff >> (len + 1));
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

char *kiln_utf8_sanitize(const char *in, char *out, size_t n) {
  if (n == 0) return out;
  const unsigned char *p = (const unsigned char *)in;
  size_t left = strlen(in), o = 0;
  while (left > 0) {
    size_t k = kiln_utf8_seq(p, left);
    if (k == 0) {                                 /* one bad byte, escaped */
      if (o + 4 >= n) break;
      snprintf(out + o, 5, "\\x%02X", *p);
      o += 4, p++, left--;
      continue;
    }
    if (o + k >= n) break;                        /* cut between characters */
    memcpy(out + o, p, k);
    o += k, p += k, left -= k;
  }
  out[o] = 0;
  return out;
}

char *kiln_clip(char *buf, size_t max, const char *s) {
  char full[4096];
  kiln_utf8_sanitize(s, full, sizeof full);
  if (strlen(full) <= max) return memcpy(buf, full, strlen(full) + 1);
  kiln_utf8_sanitize(full, buf, max + 1);         /* valid text: cut between characters */
  return strcat(buf, "...");
}

/* After a vsnprintf that ran out of room: drops a character it cut in half. */
static void drop_cut_tail(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--;
  if (i > 0 && (unsigned char)s[i - 1] >= 0xc2 && kiln_utf8_seq((unsigned char *)s + i - 1, n - i + 1) == 0) s[i - 1] = 0;
}

char *kiln_vformat(char *out, size_t n, const char *fmt, va_list ap) {
  char tmp[4096];
  if (n > sizeof tmp) n = sizeof tmp;
  if (vsnprintf(tmp, n, fmt, ap) >= (int)n) drop_cut_tail(tmp);
  return kiln_utf8_sanitize(tmp, out, n);
}

int kiln_fail(kiln_err *e, int code, const char *fmt, ...) {
  if (!e) return code;
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  kiln_vformat(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return code;
}

void kiln_err_prefix(kiln_err *e, const char *fmt, ...) {
  if (!e) return;
  char pre[KILN_ERR_MSG_MAX], old[KILN_ERR_MSG_MAX], tmp[KILN_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  if (snprintf(tmp, sizeof tmp, "%s: %s", pre, old) >= (int)sizeof tmp) drop_cut_tail(tmp);
  kiln_utf8_sanitize(tmp, e->msg, sizeof e->msg);
}

const char *kiln_averr(int averror, char *buf, size_t n) {
  if (av_strerror(averror, buf, n) < 0) snprintf(buf, n, "libav error %d", averror);
  return buf;
}
