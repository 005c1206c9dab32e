/* fuzz_http.c — the request router of `kiln serve` (api/server.c's handler,
 * api/jobs.c's routes): paths and queries (object keys in
 * /v1/objects/{key}, .../presign, /v1/functions/{name}/spawn,
 * /v1/jobs/{id}, ?state=&limit=, ...), methods, headers (Authorization,
 * Range) and bodies, sent to a real server on loopback (fz_server.c).
 *
 * The input is: a line with the method, a line with the request target
 * (path and query), header lines up to an empty line, then the body. The
 * harness frames it (Host, Connection: close, Content-Length; header lines
 * that fold into the one before are left out, as libmicrohttpd would fold
 * them into "Connection: close" and keep the connection) and replaces
 * "@T" in a header with a valid token, "@P" / "@Q" in the target with a
 * presigned GET / PUT query for the object "fuzz/a". Targets that name
 * /call are left out: a call waits for its job by design and no worker
 * runs here. So are targets of more than 256 query arguments: past about
 * 500, libmicrohttpd's per-connection memory pool (32 KB) cannot hold their
 * records, and it then cannot even answer 431, but drops the connection at
 * the idle timeout (its limit, not the router's; no other client waits).
 * Every request must be answered within 10 s, and not with a 5xx (each
 * failure has its own 4xx; issue 12, item 6); one with a plain request line
 * must not be closed without an answer either. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fz_server_start();
  return 0;
}

typedef struct buf { char *p; size_t n, cap; } buf;

static void add(buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    if (!(b->p = realloc(b->p, b->cap))) abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void adds(buf *b, const char *s) { add(b, s, strlen(s)); }

/* s (n bytes) with every "@X" replaced by rep(X) when rep gives one, and
 * NUL bytes left out: libmicrohttpd takes a request line or header with a
 * NUL as unfinished and waits for the rest until the idle timeout closes the
 * connection, which is its parser's business, not the router's. */
static void add_subst(buf *b, const char *s, size_t n, const char *(*rep)(char)) {
  for (size_t i = 0; i < n; i++) {
    const char *r = s[i] == '@' && i + 1 < n ? rep(s[i + 1]) : NULL;
    if (r) { adds(b, r); i++; }
    else if (s[i]) add(b, s + i, 1);
  }
}
static const char *rep_target(char c) { return c == 'P' ? fz_presigned("GET") : c == 'Q' ? fz_presigned("PUT") : NULL; }
static const char *rep_header(char c) { return c == 'T' ? fz_token() : NULL; }

/* The path as the server sees it (percent-escapes decoded), lower case. */
static int names_call(const char *t, size_t n) {
  char d[4096];
  size_t k = 0;
  for (size_t i = 0; i < n && t[i] != '?' && k + 1 < sizeof d; i++) {
    if (t[i] == '%' && i + 2 < n && isxdigit((unsigned char)t[i + 1]) && isxdigit((unsigned char)t[i + 2])) {
      char h[3] = {t[i + 1], t[i + 2], 0};
      d[k++] = (char)strtol(h, NULL, 16);
      i += 2;
    } else d[k++] = (char)tolower((unsigned char)t[i]);
  }
  d[k] = 0;
  return strstr(d, "call") != NULL;
}

/* A request line libmicrohttpd hands to kiln: a method of letters, a target
 * from '/' without space or control bytes (else MHD may close without an
 * answer itself, which is its parser's business). */
static int plain_line(const char *m, size_t ml, const char *target) {
  if (ml < 1 || ml > 16 || target[0] != '/') return 0;
  for (size_t i = 0; i < ml; i++)
    if (!isalpha((unsigned char)m[i])) return 0;
  for (const char *p = target; *p && *p != ' '; p++)
    if ((unsigned char)*p < 0x21 || *p == 0x7f) return 0;
  return 1;
}

static int skip_header(const char *h, size_t n) {
  static const char *const own[] = {"content-length", "transfer-encoding", "connection", "host", "expect", NULL};
  for (int i = 0; own[i]; i++) {
    size_t l = strlen(own[i]);
    if (n >= l && !strncasecmp(h, own[i], l)) return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *d = (const char *)data, *end = d + size;
  const char *nl = memchr(d, '\n', size);
  if (!nl) return -1;
  const char *method = d;
  size_t mlen = (size_t)(nl - d);
  const char *t = nl + 1, *tn = memchr(t, '\n', (size_t)(end - t));
  if (!tn) return -1;
  size_t tlen = (size_t)(tn - t);
  if (names_call(t, tlen)) return -1;
  buf b = {0};
  add(&b, method, mlen);
  adds(&b, " ");
  add_subst(&b, t, tlen, rep_target);
  size_t args = 0;                                /* query arguments: see the top of the file */
  for (size_t i = mlen + 1; i < b.n; i++) args += b.p[i] == '&';
  if (args > 256) { free(b.p); return -1; }
  adds(&b, " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  const char *p = tn + 1;
  while (p < end) {                               /* header lines, up to an empty one */
    const char *e = memchr(p, '\n', (size_t)(end - p));
    size_t l = e ? (size_t)(e - p) : (size_t)(end - p);
    if (l > 0 && p[l - 1] == '\r') l--;
    if (l == 0) { p = e ? e + 1 : end; break; }
    if (!skip_header(p, l) && !memchr(p, '\r', l) && p[0] != ' ' && p[0] != '\t') {   /* no obsolete line folding */
      add_subst(&b, p, l, rep_header);
      adds(&b, "\r\n");
    }
    p = e ? e + 1 : end;
  }
  size_t blen = (size_t)(end - p);
  char cl[64];
  snprintf(cl, sizeof cl, "Connection: close\r\nContent-Length: %zu\r\n\r\n", blen);
  adds(&b, cl);
  add(&b, p, blen);
  const char *body = NULL;
  int st = fz_http(b.p, b.n, &body);
  if (st >= 500 || (st == 0 && plain_line(method, mlen, b.p + mlen + 1)))
    fz_fail("answered %d to:\n%.*s\n--- answer body: %.300s", st, (int)(b.n < 2000 ? b.n : 2000), b.p, body);
  free(b.p);
  fz_server_sweep();
  return 0;
}
