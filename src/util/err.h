/* err.h — kiln's error codes and the message buffer that carries detail.
 *
 * Every fallible kiln function returns 0 or a negative KILN_E* code from the
 * one list below (like libuv's UV_ERRNO_MAP) and, when given a kiln_err,
 * writes one sentence into it that names the field or file at fault and what
 * was expected. The caller owns the kiln_err; callees only overwrite it.
 * Invariant: a code is never returned without a message having been set. */
#ifndef KILN_ERR_H
#define KILN_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* X(NAME, number, class, default message). The class is what a job's error
 * reports (bad_input is never retried; internal may be). */
#define KILN_ERRNO_MAP(X)                                                   \
  X(INVAL,    1, "bad_input", "invalid argument")                           \
  X(PARAM,    2, "bad_input", "invalid parameter")                          \
  X(NOENT,    3, "bad_input", "no such file")                               \
  X(NOTMEDIA, 4, "bad_input", "not a media file")                           \
  X(CORRUPT,  5, "bad_input", "corrupt or truncated media")                 \
  X(NOFRAMES, 6, "bad_input", "no video frames")                            \
  X(IO,       7, "internal",  "input/output error")                         \
  X(NOMEM,    8, "internal",  "out of memory")                              \
  X(CODEC,    9, "internal",  "codec error")                                \
  X(CANCELLED,10, "cancelled", "cancelled")                                 \
  X(INTERNAL, 11, "internal",  "internal error")                            \
  X(USAGE,    12, "bad_input", "bad command line")                         \
  X(CONFLICT, 13, "bad_input", "conflicts with an existing object")         \
  X(NOSPACE,  14, "internal",  "no space left on the device")               \
  X(TOOBIG,   15, "bad_input", "over a configured limit")                   \
  X(OOM,      16, "out_of_memory", "over the worker's memory limit")     \
  X(UNAVAIL,  17, "internal",  "a service kiln needs cannot be reached")

enum {
  KILN_OK = 0,
#define KILN_ERR_ENUM(name, num, cls, msg) KILN_E##name = -(num),
  KILN_ERRNO_MAP(KILN_ERR_ENUM)
#undef KILN_ERR_ENUM
};

#define KILN_ERR_MSG_MAX 512

typedef struct kiln_err {
  int code;                    /* last code set, 0 if none */
  char msg[KILN_ERR_MSG_MAX];  /* one sentence, no trailing newline */
} kiln_err;

/* Names: "EPARAM" etc; class: "bad_input", "internal", ...; default message. */
const char *kiln_errname(int code);
const char *kiln_errclass(int code);
const char *kiln_strerror(int code);

/* Sets e->code and e->msg (printf-style) and returns code, so that a caller
 * can write `return kiln_fail(e, KILN_EPARAM, "...", ...)`. e may be NULL. */
int kiln_fail(kiln_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: " (e.g. a file name). */
void kiln_err_prefix(kiln_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Text that came from a user or a file goes into messages through these, so
 * that every message is valid UTF-8 (a JSON encoder cannot fail on it) and
 * is never cut inside a character.
 * kiln_utf8_seq: the length (1-4) of the valid UTF-8 character at p (n bytes
 * available), or 0 when the bytes there are not one. */
size_t kiln_utf8_seq(const unsigned char *p, size_t n);
/* Copies in to out (n bytes, always terminated): valid characters as they
 * are, each byte of an invalid sequence as the four characters \xNN, cut
 * at a character boundary when out is too small. Returns out. */
char *kiln_utf8_sanitize(const char *in, char *out, size_t n);
/* Copies at most max bytes of s, cut at a character boundary (and marked
 * "..." when cut), sanitized, into buf (max + 4 bytes). Returns buf. Use
 * KILN_CLIP(s, max) inside an argument list. */
char *kiln_clip(char *buf, size_t max, const char *s);
/* vsnprintf into out, then sanitized as above (a character the cut split
 * is dropped). Returns out. */
char *kiln_vformat(char *out, size_t n, const char *fmt, va_list ap);
#define KILN_CLIP(s, max) kiln_clip((char[(max) + 4]){0}, (max), (s))

/* Formats an FFmpeg error code as text into buf. Returns buf. */
const char *kiln_averr(int averror, char *buf, size_t n);

#endif
