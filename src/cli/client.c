/* client.c — the client commands `kiln submit`, `status`, `jobs`, `cancel`
 * and `usage`: they talk to a running `kiln serve` over its HTTP API
 * (docs/http.md) with libcurl. This file owns:
 *   - the connection settings (--url / KILN_URL, --token / KILN_TOKEN) and
 *     the one request helper, api_json(), that performs a request and turns
 *     the answer into JSON, or into a kiln_err holding one sentence: the
 *     server's own message, or "cannot reach kiln at URL: ...";
 *   - the streaming upload of an input (a read callback: the file is never
 *     loaded into memory) and the download of an output (to OUT.part,
 *     renamed when complete, removed on any failure);
 *   - a Server-Sent Events reader for /v1/jobs/{id}/events that drives the
 *     progress bar and reconnects with Last-Event-ID when the stream drops.
 * Invariants: the token only ever goes into the Authorization header of a
 * request to the configured server — never into a message, a log line, or a
 * request to another host (presigned output URLs are fetched without it);
 * every body read into memory is capped (BODY_MAX); exit statuses follow
 * cli.h: 0 ok, 1 the job failed or the server could not do it, 2 bad usage or
 * parameters (the server's 400/413, and 404 for an unknown function). */
#include "cli/cli.h"
#include "engine/engine.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:8420"
#define BODY_MAX (16 * 1024 * 1024)  /* a JSON answer or one event, in bytes */
#define ERR_BODY_MAX (64 * 1024)
#define SSE_RETRIES 5                /* reconnects in a row that bring no event */
#define SSE_RETRIES_TOTAL 50         /* reconnects over the whole wait */
#define URL_MAX 4096

static const char *USAGE_SUBMIT =
    "kiln submit FN [FILE] [--param KEY=VALUE]... [--params FILE.json] [-o OUT] [--webhook URL] [--objective O] "
    "[--chunks N] [--no-wait] [--json] "
    "[--quiet] [--url URL] [--token TOKEN]";
static const char *USAGE_STATUS = "kiln status JOB [--json] [--url URL] [--token TOKEN]";
static const char *USAGE_JOBS = "kiln jobs [--state S] [--fn F] [--limit N] [--json] [--url URL] [--token TOKEN]";
static const char *USAGE_CANCEL = "kiln cancel JOB [--json] [--url URL] [--token TOKEN]";
static const char *USAGE_USAGE = "kiln usage [--since YYYY-MM-DD] [--json] [--url URL] [--token TOKEN]";

static volatile sig_atomic_t g_interrupt;
static void on_interrupt(int sig) { (void)sig; g_interrupt = 1; }

/* ---- a growable byte buffer with a cap ---- */

typedef struct cbuf {
  char *p;                      /* NUL-terminated when not NULL */
  size_t n, cap, max;
  int over;                     /* an append went past max (or out of memory) */
} cbuf;

static int cbuf_add(cbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->max) { b->over = 1; return -1; }
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) { b->over = 1; return -1; }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return 0;
}

static void cbuf_reset(cbuf *b) {
  b->n = 0;
  b->over = 0;
  if (b->p) b->p[0] = 0;
}

static void cbuf_free(cbuf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

static size_t to_cbuf(char *p, size_t sz, size_t n, void *arg) {
  return cbuf_add(arg, p, sz * n) < 0 ? 0 : sz * n;
}

/* Percent-encodes s into out, keeping unreserved characters and, when
 * keep_slash, '/' (object keys are paths). -1 when out is too small. */
static int url_escape(const char *s, int keep_slash, char *out, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/');
    if (o + (plain ? 1 : 3) >= n) return -1;
    if (plain) out[o++] = (char)*p;
    else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = 0;
  return 0;
}

/* ---- the connection ---- */

typedef struct conn {
  CURL *cu;                     /* one handle, reset per request: the connection is reused */
  int global;                   /* curl_global_init was called */
  char base[1024];              /* http(s)://host[:port][/prefix], no trailing '/' */
  char auth[640];               /* "Authorization: Bearer TOKEN", or "" without a token; secret */
  char ebuf[CURL_ERROR_SIZE];
} conn;

typedef struct copts { const char *url, *token; } copts;

/* 1 when argv[*i] is --url or --token (its value taken), 0 when it is not,
 * a negative code when the value is missing. */
static int conn_opt(int argc, char **argv, int *i, copts *o, kiln_err *e) {
  const char *a = argv[*i];
  const char **dst = !strcmp(a, "--url") ? &o->url : !strcmp(a, "--token") ? &o->token : NULL;
  if (!dst) return 0;
  if (*i + 1 >= argc) return kiln_fail(e, KILN_EUSAGE, "%s needs a value", a);
  *dst = argv[++*i];
  return 1;
}

/* Reads the settings (flags, then the environment, then the default) and
 * makes the handle. conn_close releases it, also after a failure here. */
static int conn_open(conn *c, const copts *o, kiln_err *e) {
  memset(c, 0, sizeof *c);
  const char *url = o->url ? o->url : getenv("KILN_URL");
  if (!url || !*url) url = DEFAULT_URL;
  const char *tok = o->token ? o->token : getenv("KILN_TOKEN");
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
    return kiln_fail(e, KILN_EUSAGE, "the server URL must start with http:// or https://, got '%.200s'", url);
  size_t n = strlen(url);
  while (n > 8 && url[n - 1] == '/') n--;
  if (n >= sizeof c->base) return kiln_fail(e, KILN_EUSAGE, "the server URL is over %zu characters", sizeof c->base - 1);
  for (size_t k = 0; k < n; k++)
    if ((unsigned char)url[k] <= ' ' || url[k] == 0x7f)
      return kiln_fail(e, KILN_EUSAGE, "the server URL holds a space or a control character");
  memcpy(c->base, url, n);
  c->base[n] = 0;
  if (tok && *tok) {
    size_t tl = strlen(tok);
    if (tl > 512) return kiln_fail(e, KILN_EUSAGE, "the token is over 512 characters; check --token or KILN_TOKEN");
    for (size_t k = 0; k < tl; k++)
      if ((unsigned char)tok[k] <= ' ' || tok[k] == 0x7f)
        return kiln_fail(e, KILN_EUSAGE, "the token holds a space or a control character; check --token or KILN_TOKEN");
    snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", tok);
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return kiln_fail(e, KILN_EINTERNAL, "libcurl cannot start");
  c->global = 1;
  if (!(c->cu = curl_easy_init())) return kiln_fail(e, KILN_ENOMEM, "libcurl cannot make a handle");
  return 0;
}

static void conn_close(conn *c) {
  if (c->cu) curl_easy_cleanup(c->cu);
  if (c->global) curl_global_cleanup();
  OPENSSL_cleanse(c->auth, sizeof c->auth);
  c->cu = NULL;
  c->global = 0;
}

static int xfer_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  (void)arg; (void)dt; (void)dn; (void)ut; (void)un;
  return g_interrupt ? 1 : 0;      /* Ctrl-C ends the transfer */
}

/* Resets the handle for METHOD on an absolute URL. kind: 0 a JSON request
 * (bounded in time), 1 a stream or a file transfer (bounded in stall time
 * only). The token goes along only when `token` is set. Returns the header
 * list, which the caller frees after the transfer. */
static struct curl_slist *conn_setup(conn *c, const char *method, const char *url, int token, int kind) {
  CURL *cu = c->cu;
  struct curl_slist *hl = NULL;
  curl_easy_reset(cu);
  c->ebuf[0] = 0;
  curl_easy_setopt(cu, CURLOPT_URL, url);
  curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, c->ebuf);
  curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(cu, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
  curl_easy_setopt(cu, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(cu, CURLOPT_XFERINFOFUNCTION, xfer_cb);
  if (kind == 0) {
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 120L);
  } else {
    curl_easy_setopt(cu, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* the event stream sends a keep-alive every 15 s */
    curl_easy_setopt(cu, CURLOPT_LOW_SPEED_TIME, 60L);
  }
  if (!strcmp(method, "DELETE")) curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, "DELETE");
  if (token && c->auth[0]) hl = curl_slist_append(hl, c->auth);
  return hl;
}

/* A transfer that got no complete answer. */
static int transfer_fail(conn *c, CURLcode rc, kiln_err *e) {
  if (rc == CURLE_ABORTED_BY_CALLBACK && g_interrupt) return kiln_fail(e, KILN_ECANCELLED, "interrupted");
  const char *why = c->ebuf[0] ? c->ebuf : curl_easy_strerror(rc);
  curl_off_t connect_us = 0;
  curl_easy_getinfo(c->cu, CURLINFO_CONNECT_TIME_T, &connect_us);
  if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
      rc == CURLE_SSL_CONNECT_ERROR || (rc == CURLE_OPERATION_TIMEDOUT && connect_us == 0))
    return kiln_fail(e, KILN_EIO, "cannot reach kiln at %s: %s (is `kiln serve` running?)", c->base, why);
  return kiln_fail(e, KILN_EIO, "the connection to kiln at %s failed: %s", c->base, why);
}

/* A non-2xx answer: the server's {"error":{"code","message"}} as one
 * sentence. 400 and 413 are the caller's mistake (KILN_EPARAM: exit 2),
 * 404 a missing thing (KILN_ENOENT), 401 a token problem; 5xx and answers
 * that are not kiln's are KILN_EIO. */
static int http_fail(conn *c, long status, const cbuf *body, kiln_err *e) {
  json_t *j = body->n ? json_loadb(body->p, body->n, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  int r;
  if (status == 401 && !c->auth[0])
    r = kiln_fail(e, KILN_EINVAL,
                  "kiln at %s needs a token: pass --token TOKEN or set KILN_TOKEN (create one on the server with "
                  "`kiln token create --name NAME`)", c->base);
  else if (status == 401)
    r = kiln_fail(e, KILN_EINVAL, "kiln at %s refused the token: %s (check --token or KILN_TOKEN)", c->base,
                  msg ? msg : "invalid token");
  else if (!msg)
    r = kiln_fail(e, KILN_EIO, "kiln at %s answered HTTP %ld without kiln's JSON error (is that the right URL?)",
                  c->base, status);
  else if (status >= 500)
    r = kiln_fail(e, KILN_EIO, "kiln at %s failed (HTTP %ld): %s", c->base, status, msg);
  else
    r = kiln_fail(e, status == 400 || status == 413 ? KILN_EPARAM : status == 404 ? KILN_ENOENT : KILN_EINVAL, "%s",
                  msg);
  json_decref(j);
  return r;
}

static size_t from_file(char *p, size_t sz, size_t n, void *arg) {
  FILE *f = arg;
  size_t got = fread(p, 1, sz * n, f);
  if (got == 0 && ferror(f)) return CURL_READFUNC_ABORT;
  return got;
}

/* The one request helper. METHOD base+path (path already escaped) with an
 * optional JSON body (POST) or a file streamed as the body (PUT, `up` of
 * up_size bytes; the caller owns the FILE). On a 2xx answer stores the
 * parsed JSON into *out (a new reference; out may be NULL) and returns 0;
 * otherwise returns a negative code with e set (transfer_fail, http_fail).
 * *status gets the HTTP status, 0 when there was no answer. */
static int api_json(conn *c, const char *method, const char *path, const json_t *body, FILE *up, int64_t up_size,
                    long *status, json_t **out, kiln_err *e) {
  char url[URL_MAX];
  char *text = NULL;
  cbuf resp = {.max = BODY_MAX};
  int r = 0;
  long st = 0;
  if (out) *out = NULL;
  if ((size_t)snprintf(url, sizeof url, "%s%s", c->base, path) >= sizeof url) {
    r = kiln_fail(e, KILN_EUSAGE, "the request URL is over %d characters", URL_MAX);
    goto fail;
  }
  struct curl_slist *hl = conn_setup(c, method, url, 1, up ? 1 : 0);
  hl = curl_slist_append(hl, "Accept: application/json");
  if (body) {
    text = json_dumps(body, JSON_COMPACT);
    if (!text) { curl_slist_free_all(hl); r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }
    hl = curl_slist_append(hl, "Content-Type: application/json");
    curl_easy_setopt(c->cu, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c->cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
  } else if (up) {
    hl = curl_slist_append(hl, "Content-Type: application/octet-stream");
    curl_easy_setopt(c->cu, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c->cu, CURLOPT_READFUNCTION, from_file);
    curl_easy_setopt(c->cu, CURLOPT_READDATA, up);
    curl_easy_setopt(c->cu, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up_size);
  } else if (!strcmp(method, "POST")) {
    curl_easy_setopt(c->cu, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c->cu, CURLOPT_POSTFIELDSIZE, 0L);
  }
  curl_easy_setopt(c->cu, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c->cu, CURLOPT_WRITEFUNCTION, to_cbuf);
  curl_easy_setopt(c->cu, CURLOPT_WRITEDATA, &resp);
  CURLcode rc = curl_easy_perform(c->cu);
  curl_slist_free_all(hl);
  curl_easy_getinfo(c->cu, CURLINFO_RESPONSE_CODE, &st);
  if (rc == CURLE_WRITE_ERROR && resp.over) {
    r = kiln_fail(e, KILN_EIO, "the answer from kiln at %s is over %d MiB", c->base, BODY_MAX >> 20);
    goto fail;
  }
  if (rc != CURLE_OK) {
    st = 0;
    r = transfer_fail(c, rc, e);
    goto fail;
  }
  if (st < 200 || st > 299) { r = http_fail(c, st, &resp, e); goto fail; }
  if (out) {
    json_error_t je;
    *out = resp.n ? json_loadb(resp.p, resp.n, 0, &je) : NULL;
    if (!*out) {
      r = kiln_fail(e, KILN_EIO, "kiln at %s answered %s %s with something that is not JSON", c->base, method, path);
      goto fail;
    }
  }
fail:
  if (status) *status = st;
  free(text);
  cbuf_free(&resp);
  return r;
}

/* ---- downloads ---- */

typedef struct dl {
  CURL *cu;
  FILE *f;
  long status;
  cbuf err;                     /* the body of a non-200 answer */
  int werr;                     /* errno of a failed write */
} dl;

static size_t dl_write(char *p, size_t sz, size_t n, void *arg) {
  dl *d = arg;
  size_t len = sz * n;
  if (!d->status) curl_easy_getinfo(d->cu, CURLINFO_RESPONSE_CODE, &d->status);
  if (d->status != 200) return cbuf_add(&d->err, p, len) < 0 ? 0 : len;
  if (fwrite(p, 1, len, d->f) != len) { d->werr = errno ? errno : EIO; return 0; }
  return len;
}

/* GETs url (this server's when `token`, then the token goes along) into
 * out: written to OUT.part, renamed when complete, removed on failure. */
static int download(conn *c, const char *url, int token, const char *out, int64_t *bytes, kiln_err *e) {
  char part[4200];
  dl d = {.cu = c->cu, .err = {.max = ERR_BODY_MAX}};
  int r = 0;
  if ((size_t)snprintf(part, sizeof part, "%s.part", out) >= sizeof part)
    return kiln_fail(e, KILN_EUSAGE, "the output name '%.200s...' is too long", out);
  if (!(d.f = fopen(part, "wb"))) return kiln_fail(e, KILN_EIO, "cannot write '%s': %s", part, strerror(errno));
  struct curl_slist *hl = conn_setup(c, "GET", url, token, 1);
  curl_easy_setopt(c->cu, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c->cu, CURLOPT_WRITEFUNCTION, dl_write);
  curl_easy_setopt(c->cu, CURLOPT_WRITEDATA, &d);
  CURLcode rc = curl_easy_perform(c->cu);
  curl_slist_free_all(hl);
  curl_easy_getinfo(c->cu, CURLINFO_RESPONSE_CODE, &d.status);
  if (rc == CURLE_WRITE_ERROR && d.werr) { r = kiln_fail(e, KILN_EIO, "cannot write '%s': %s", part, strerror(d.werr)); goto fail; }
  if (rc != CURLE_OK && !(d.status && d.status != 200)) { r = transfer_fail(c, rc, e); goto fail; }
  if (d.status != 200) {
    r = http_fail(c, d.status, &d.err, e);
    kiln_err_prefix(e, "downloading the output");
    goto fail;
  }
  if (bytes) {
    long pos = ftell(d.f);
    *bytes = pos > 0 ? pos : 0;
  }
  FILE *f = d.f;
  d.f = NULL;
  if (fclose(f) != 0) { r = kiln_fail(e, KILN_EIO, "cannot write '%s': %s", part, strerror(errno)); goto fail; }
  if (rename(part, out) != 0) { r = kiln_fail(e, KILN_EIO, "cannot rename '%s' to '%s': %s", part, out, strerror(errno)); goto fail; }
fail:
  if (d.f) fclose(d.f);
  if (r < 0) remove(part);
  cbuf_free(&d.err);
  return r;
}

/* ---- Server-Sent Events: /v1/jobs/{id}/events ---- */

typedef struct sse {
  CURL *cu;
  const char *id, *label;
  int quiet;
  /* per connection */
  long status;
  cbuf errbody;                 /* the body of a non-200 answer */
  cbuf line, data;              /* the line being read; the data lines of the event */
  char event[32];
  int cr;                       /* the last byte was '\r' */
  int got;                      /* events dispatched on this connection */
  int bad;                      /* a line or an event over BODY_MAX */
  /* across connections */
  char last_id[32];             /* the last `id:` seen, for Last-Event-ID */
  char state[16];
  kc_progress pg;
  int pg_on;                    /* kc_progress_init was called */
  json_t *end;                  /* the job of the `end` event */
} sse;

static void sse_dispatch(sse *x) {
  if (!x->data.n && !x->event[0]) return;
  json_t *d = x->data.n ? json_loadb(x->data.p, x->data.n, 0, NULL) : NULL;
  const char *ev = x->event[0] ? x->event : "message";
  if (!strcmp(ev, "end")) {
    if (json_is_object(d)) { json_decref(x->end); x->end = d; d = NULL; }
  } else if (!strcmp(ev, "progress") && d) {
    int64_t done = (int64_t)json_integer_value(json_object_get(d, "frames_done"));
    int64_t total = (int64_t)json_integer_value(json_object_get(d, "frames_total"));
    if (total > 0) {
      if (!x->pg_on) { kc_progress_init(&x->pg, x->label, x->quiet); x->pg_on = 1; }
      kc_progress_cb(&x->pg, done, total);
    }
  } else if (!strcmp(ev, "state") && d) {
    const char *st = kj_str(d, "state", "");
    if (strcmp(st, x->state) != 0) {
      snprintf(x->state, sizeof x->state, "%s", st);
      int drawing = x->pg_on && x->pg.tty && x->pg.last_frames > 0;   /* don't break the bar's line */
      if (!x->quiet && !drawing && (!strcmp(st, "running") || !strcmp(st, "retrying")))
        klog(KLOG_INFO, "job %s %s", x->id, !strcmp(st, "retrying") ? "is queued again for another attempt" : st);
    }
  }
  x->got++;
  json_decref(d);
  cbuf_reset(&x->data);
  x->event[0] = 0;
}

static void sse_line(sse *x) {
  const char *l = x->line.p ? x->line.p : "";
  size_t n = x->line.n;
  if (n == 0) { sse_dispatch(x); return; }
  if (l[0] == ':') return;                              /* a comment: the keep-alive */
  const char *colon = memchr(l, ':', n);
  size_t fl = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  if (colon && v < l + n && *v == ' ') v++;
  size_t vl = (size_t)(l + n - v);
  if (fl == 5 && !memcmp(l, "event", 5)) snprintf(x->event, sizeof x->event, "%.*s", (int)vl, v);
  else if (fl == 4 && !memcmp(l, "data", 4)) {
    if ((x->data.n && cbuf_add(&x->data, "\n", 1) < 0) || cbuf_add(&x->data, v, vl) < 0) x->bad = 1;
  } else if (fl == 2 && !memcmp(l, "id", 2) && vl < sizeof x->last_id && !memchr(v, 0, vl))
    snprintf(x->last_id, sizeof x->last_id, "%.*s", (int)vl, v);
}

static size_t sse_write(char *p, size_t sz, size_t n, void *arg) {
  sse *x = arg;
  size_t len = sz * n;
  if (!x->status) curl_easy_getinfo(x->cu, CURLINFO_RESPONSE_CODE, &x->status);
  if (x->status != 200) return cbuf_add(&x->errbody, p, len) < 0 ? 0 : len;
  for (size_t i = 0; i < len;) {
    char ch = p[i];
    if (ch == '\n' && x->cr) { x->cr = 0; i++; continue; }   /* the LF of a CRLF */
    x->cr = 0;
    if (ch == '\r' || ch == '\n') {
      x->cr = ch == '\r';
      sse_line(x);
      cbuf_reset(&x->line);
      if (x->bad) return 0;
      i++;
      continue;
    }
    size_t k = i;                                       /* the rest of the line in this chunk */
    while (k < len && p[k] != '\r' && p[k] != '\n') k++;
    if (cbuf_add(&x->line, p + i, k - i) < 0) { x->bad = 1; return 0; }
    i = k;
  }
  return len;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (!g_interrupt && nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Follows job id's events with a progress bar until the `end` event and
 * stores the ended job into *job (new reference). A dropped stream is
 * resumed with Last-Event-ID, SSE_RETRIES times in a row at most. */
static int follow(conn *c, const char *id, const char *label, int quiet, json_t **job, kiln_err *e) {
  sse x;
  memset(&x, 0, sizeof x);
  x.cu = c->cu;
  x.id = id;
  x.label = label;
  x.quiet = quiet;
  x.errbody.max = ERR_BODY_MAX;
  x.line.max = x.data.max = BODY_MAX;
  char url[URL_MAX], lei[64];
  int r = 0, fails = 0, total = 0;
  *job = NULL;
  snprintf(url, sizeof url, "%s/v1/jobs/%s/events", c->base, id);   /* id: 32 hex from the server */
  for (;;) {
    struct curl_slist *hl = conn_setup(c, "GET", url, 1, 1);
    hl = curl_slist_append(hl, "Accept: text/event-stream");
    if (x.last_id[0]) {
      snprintf(lei, sizeof lei, "Last-Event-ID: %s", x.last_id);
      hl = curl_slist_append(hl, lei);
    }
    curl_easy_setopt(c->cu, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c->cu, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(c->cu, CURLOPT_WRITEDATA, &x);
    x.status = 0;
    x.got = x.cr = x.bad = 0;
    x.event[0] = 0;
    cbuf_reset(&x.errbody);
    cbuf_reset(&x.line);
    cbuf_reset(&x.data);
    CURLcode rc = curl_easy_perform(c->cu);
    curl_slist_free_all(hl);
    if (x.end) break;
    if (g_interrupt) { r = kiln_fail(e, KILN_ECANCELLED, "interrupted"); goto fail; }
    if (x.bad) { r = kiln_fail(e, KILN_EIO, "an event from kiln at %s is over %d MiB", c->base, BODY_MAX >> 20); goto fail; }
    if (!x.status) curl_easy_getinfo(c->cu, CURLINFO_RESPONSE_CODE, &x.status);
    if (x.status && x.status != 200 && x.status < 500) { r = http_fail(c, x.status, &x.errbody, e); goto fail; }
    /* the stream ended before the job did: reconnect, a bounded number of times */
    fails = x.got ? 1 : fails + 1;
    if (fails > SSE_RETRIES || ++total > SSE_RETRIES_TOTAL) {
      if (x.status >= 500) r = http_fail(c, x.status, &x.errbody, e);
      else if (rc != CURLE_OK) r = transfer_fail(c, rc, e);
      else r = kiln_fail(e, KILN_EIO, "the event stream from kiln at %s kept ending before job %s did", c->base, id);
      kiln_err_prefix(e, "following job %s (it may still be running; `kiln status %s`)", id, id);
      goto fail;
    }
    if (!quiet) {
      if (x.pg_on && x.pg.tty && x.pg.last_frames > 0) fputc('\n', stderr);
      klog(KLOG_WARN, "the event stream of job %s dropped (%s); reconnecting", id,
           rc != CURLE_OK ? (c->ebuf[0] ? c->ebuf : curl_easy_strerror(rc)) : "it ended early");
    }
    long wait = 250L << (fails - 1 < 5 ? fails - 1 : 5);
    sleep_ms(wait > 5000 ? 5000 : wait);
  }
  *job = x.end;
  x.end = NULL;
fail:
  if (x.pg_on) {
    json_t *pr = json_object_get(*job, "progress");
    kc_progress_end(&x.pg, (int64_t)json_integer_value(json_object_get(pr, "frames_done")),
                    *job && !strcmp(kj_str(*job, "state", ""), "succeeded"));
  }
  json_decref(x.end);
  cbuf_free(&x.errbody);
  cbuf_free(&x.line);
  cbuf_free(&x.data);
  return r;
}

/* ---- formatting ---- */

static void fmt_ms(char *buf, size_t n, double ms) {
  if (ms < 1000) snprintf(buf, n, "%.0f ms", ms);
  else if (ms < 120000) snprintf(buf, n, "%.2f s", ms / 1000);
  else snprintf(buf, n, "%dm%02ds", (int)(ms / 60000), (int)(ms / 1000) % 60);
}

/* "2026-11-23T18:16:40.945Z" -> "2026-11-23 18:16:40" */
static void fmt_created(char *buf, size_t n, const char *iso) {
  snprintf(buf, n, "%.19s", iso);
  char *t = strchr(buf, 'T');
  if (t) *t = ' ';
}

static int64_t job_frames(const json_t *job) {
  const json_t *fr = json_object_get(json_object_get(json_object_get(job, "result"), "stats"), "frames");
  if (json_is_integer(fr)) return (int64_t)json_integer_value(fr);
  return (int64_t)json_integer_value(json_object_get(json_object_get(job, "progress"), "frames_done"));
}

/* The error of an ended job that did not succeed, as kc_report shows it. */
static int job_fail(const json_t *job, kiln_err *e) {
  const char *id = kj_str(job, "job_id", "?"), *st = kj_str(job, "state", "?");
  const json_t *err = json_object_get(job, "error");
  if (!strcmp(st, "cancelled")) return kiln_fail(e, KILN_ECANCELLED, "job %s was cancelled", id);
  return kiln_fail(e, KILN_EINVAL, "job %s %s (%s): %s", id, st, kj_str(err, "class", "unknown"),
                   kj_str(err, "message", "no message"));
}

/* Lines "KEY  URL" for each output of a succeeded job, on stdout. */
static void print_outputs(const json_t *job) {
  size_t i;
  json_t *o;
  json_array_foreach(json_object_get(json_object_get(job, "result"), "outputs"), i, o)
      printf("%s  %s\n", kj_str(o, "key", "?"), kj_str(o, "url", ""));
}

/* ---- kiln submit ---- */

/* "uploads/<16 hex>/<name>" where name is FILE's base name with anything
 * but [A-Za-z0-9._-] made '_' (a valid key whatever the file is called). */
static int upload_key(const char *file, char *key, size_t n, kiln_err *e) {
  unsigned char rnd[8];
  char hex[17], name[129];
  if (RAND_bytes(rnd, sizeof rnd) != 1) return kiln_fail(e, KILN_EINTERNAL, "no random bytes for the upload's key");
  kiln_hex(rnd, sizeof rnd, hex);
  const char *b = strrchr(file, '/');
  b = b ? b + 1 : file;
  size_t k = 0;
  for (; b[k] && k < sizeof name - 1; k++) {
    char ch = b[k];
    int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
             ch == '_' || ch == '-';
    name[k] = ok ? ch : '_';
  }
  name[k] = 0;
  if (!k || !strcmp(name, ".") || !strcmp(name, "..")) snprintf(name, sizeof name, "input");
  snprintf(key, n, "uploads/%s/%s", hex, name);
  return 0;
}

static int upload(conn *c, const char *file, const char *key, int quiet, kiln_err *e) {
  char path[URL_MAX], ek[2048];
  FILE *f = NULL;
  int r = 0;
  struct stat st;
  if (url_escape(key, 1, ek, sizeof ek) < 0) return kiln_fail(e, KILN_EUSAGE, "the upload key is too long");
  snprintf(path, sizeof path, "/v1/objects/%s", ek);
  if (!(f = fopen(file, "rb"))) return kiln_fail(e, KILN_ENOENT, "cannot read '%s': %s", file, strerror(errno));
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    r = kiln_fail(e, KILN_EINVAL, "'%s' is not a regular file", file);
    goto fail;
  }
  if (!quiet && st.st_size >= 64 * 1024 * 1024)
    klog(KLOG_INFO, "uploading %s (%.1f MiB)", file, (double)st.st_size / (1024 * 1024));
  long status = 0;
  if ((r = api_json(c, "PUT", path, NULL, f, (int64_t)st.st_size, &status, NULL, e)) < 0) {
    if (r != KILN_ECANCELLED) kiln_err_prefix(e, "uploading '%s'", file);
    goto fail;
  }
fail:
  if (f) fclose(f);
  return r;
}

int kc_submit(int argc, char **argv) {
  const char *fname = NULL, *file = NULL, *out = NULL, *hook = NULL;
  int as_json = 0, quiet = 0, no_wait = 0, r = 0;
  kiln_err e = {0};
  copts co = {0};
  conn c;
  memset(&c, 0, sizeof c);
  json_t *fn = NULL, *body = NULL, *spawned = NULL, *job = NULL;
  kc_params kp = {0};
  char key[1200] = "", path[2200], efn[300];
  int uploaded = 0;
  const char *objective = NULL;
  long chunks = 0;
  if (kc_params_init(&kp, argc) < 0) { r = kiln_fail(&e, KILN_ENOMEM, "out of memory"); goto done; }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int k = conn_opt(argc, argv, &i, &co, &e);
    if (k == 0) k = kc_params_opt(&kp, argc, argv, &i, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (++i >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs a file name", a); goto done; }
      out = argv[i];
    } else if (!strcmp(a, "--webhook")) {
      if (++i >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "--webhook needs a URL"); goto done; }
      hook = argv[i];
      if (ke_webhook_url_check(hook, &e) < 0) {
        r = kiln_fail(&e, KILN_EUSAGE, "--webhook: %s", KILN_CLIP(e.msg, 400));
        goto done;
      }
    } else if (!strcmp(a, "--objective")) {
      if (++i >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "--objective needs balanced, time, cost, deadline=S or budget=USD"); goto done; }
      objective = argv[i];
    } else if (!strcmp(a, "--chunks")) {
      char *end;
      if (++i >= argc || (chunks = strtol(argv[i], &end, 10)) < 1 || chunks > 64 || *end) {
        r = kiln_fail(&e, KILN_EUSAGE, "--chunks needs a number from 1 to 64");
        goto done;
      }
    } else if (!strcmp(a, "--no-wait")) no_wait = 1;
    else if (!strcmp(a, "--json")) as_json = 1;
    else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
    else if (a[0] == '-' && a[1]) { r = kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for submit", a); goto done; }
    else if (!fname) fname = a;
    else if (!file) file = a;
    else { r = kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", a); goto done; }
  }
  if ((r = kc_params_finish(&kp, &e)) < 0) goto done;
  if (!fname) { r = kiln_fail(&e, KILN_EUSAGE, "which function? (see `kiln functions`)"); goto done; }
  if (out && no_wait) { r = kiln_fail(&e, KILN_EUSAGE, "-o needs the job's end: leave out --no-wait"); goto done; }
  if (file && access(file, R_OK) != 0) { r = kiln_fail(&e, KILN_ENOENT, "cannot read '%s': %s", file, strerror(errno)); goto done; }
  if (out) {
    struct stat si, so;
    if (file && stat(file, &si) == 0 && stat(out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
      r = kiln_fail(&e, KILN_EUSAGE, "the output '%s' is the input; choose another name", out);
      goto done;
    }
    char dir[4096];
    const char *slash = strrchr(out, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) + 1 : 1, slash ? out : ".");
    if (access(dir, W_OK) != 0) { r = kiln_fail(&e, KILN_EIO, "cannot write into '%s': %s", dir, strerror(errno)); goto done; }
  }
  if ((r = conn_open(&c, &co, &e)) < 0) goto done;
  quiet = quiet || as_json;

  /* the function exists and takes an input, or not: know before uploading */
  long status = 0;
  if (url_escape(fname, 0, efn, sizeof efn) < 0) { r = kiln_fail(&e, KILN_EUSAGE, "the function name is too long"); goto done; }
  snprintf(path, sizeof path, "/v1/functions/%s", efn);
  if ((r = api_json(&c, "GET", path, NULL, NULL, 0, &status, &fn, &e)) < 0) {
    if (r == KILN_ENOENT) r = e.code = KILN_EPARAM;  /* no such function: bad usage */
    goto done;
  }
  int takes_input = json_is_true(json_object_get(fn, "input"));
  if (takes_input && !file) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs an input FILE", fname); goto done; }
  if (!takes_input && file) { r = kiln_fail(&e, KILN_EUSAGE, "%s takes no input file; leave '%s' out", fname, file); goto done; }

  signal(SIGINT, on_interrupt);
  signal(SIGTERM, on_interrupt);
  if (file) {
    if ((r = upload_key(file, key, sizeof key, &e)) < 0) goto done;
    if ((r = upload(&c, file, key, quiet, &e)) < 0) {
      if (r == KILN_ECANCELLED) kiln_fail(&e, KILN_ECANCELLED, "interrupted during the upload; nothing was submitted");
      goto done;
    }
    uploaded = 1;
  }
  body = json_object();
  if (file) json_object_set_new(body, "input", json_string(key));
  json_object_set(body, "params", kp.raw);
  if (hook) json_object_set_new(body, "webhook", json_string(hook));
  if (objective || chunks) {
    json_t *plan = json_object();
    if (objective) json_object_set_new(plan, "objective", json_string(objective));
    if (chunks) json_object_set_new(plan, "chunks", json_integer(chunks));
    json_object_set_new(body, "plan", plan);
  }
  snprintf(path, sizeof path, "/v1/functions/%s/spawn", efn);
  if ((r = api_json(&c, "POST", path, body, NULL, 0, &status, &spawned, &e)) < 0) {
    if (r == KILN_ENOENT) r = e.code = KILN_EPARAM;  /* the function went away meanwhile */
    if (status < 400) uploaded = 0;                 /* no refusal seen: a job may hold the input */
    goto done;
  }
  uploaded = 0;                                     /* the job owns the input now */
  const char *id = kj_str(spawned, "job_id", NULL);
  if (!id || strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32) {
    r = kiln_fail(&e, KILN_EIO, "kiln at %s accepted the job but its answer has no job_id", c.base);
    goto done;
  }
  if (no_wait) {
    if (as_json) kj_print(spawned);
    else printf("%s\n", id);
    goto done;
  }
  if (!quiet) klog(KLOG_INFO, "job %s submitted (%s); waiting for it (Ctrl-C leaves it running)", id, fname);
  if ((r = follow(&c, id, fname, quiet, &job, &e)) < 0) {
    if (r == KILN_ECANCELLED)
      kiln_fail(&e, KILN_ECANCELLED, "interrupted; job %s keeps running on the server (`kiln status %s`, `kiln cancel %s`)",
                id, id, id);
    goto done;
  }
  const char *st = kj_str(job, "state", "");
  if (strcmp(st, "succeeded") != 0) {
    if (as_json) kj_print(job);
    r = job_fail(job, &e);
    goto done;
  }
  char wrote[4300] = "";
  if (out) {
    json_t *o0 = json_array_get(json_object_get(json_object_get(job, "result"), "outputs"), 0);
    const char *okey = kj_str(o0, "key", NULL), *ourl = kj_str(o0, "url", NULL);
    char url[URL_MAX], ek[2048];
    int token = 0;
    if (!okey) { r = kiln_fail(&e, KILN_EIO, "job %s succeeded without an output to download", id); goto done; }
    if (ourl && (!strncmp(ourl, "http://", 7) || !strncmp(ourl, "https://", 8))) {
      snprintf(url, sizeof url, "%s", ourl);                /* presigned: no token sent */
    } else {
      if (url_escape(okey, 1, ek, sizeof ek) < 0) { r = kiln_fail(&e, KILN_EIO, "the output key is too long"); goto done; }
      snprintf(url, sizeof url, "%s/v1/objects/%s", c.base, ek);
      token = 1;
    }
    int64_t bytes = 0;
    if ((r = download(&c, url, token, out, &bytes, &e)) < 0) {
      if (r == KILN_ECANCELLED) kiln_fail(&e, KILN_ECANCELLED, "interrupted; the output of job %s is %s", id, okey);
      goto done;
    }
    snprintf(wrote, sizeof wrote, "; wrote %s (%.1f MiB)", out, (double)bytes / (1024 * 1024));
  }
  if (as_json) kj_print(job);
  else {
    if (!out) print_outputs(job);
    if (!quiet) {
      const json_t *tm = json_object_get(job, "timings"), *cost = json_object_get(job, "cost");
      char run[32], qd[32], cold[32];
      fmt_ms(run, sizeof run, kj_num(tm, "run_ms", 0));
      fmt_ms(qd, sizeof qd, kj_num(tm, "queued_ms", 0));
      fmt_ms(cold, sizeof cold, kj_num(tm, "cold_start_ms", 0));
      klog(KLOG_INFO, "job %s succeeded: %lld frames, run %s (queued %s, cold start %s), $%.6f%s", id,
           (long long)job_frames(job), run, qd, cold, kj_num(cost, "usd", 0), wrote);
    }
  }
done:
  if (uploaded && c.cu) {                           /* no job took the upload: don't leave it behind */
    char ek[2048];
    kiln_err e2 = {0};
    if (url_escape(key, 1, ek, sizeof ek) == 0) {
      snprintf(path, sizeof path, "/v1/objects/%s", ek);
      if (!g_interrupt) api_json(&c, "DELETE", path, NULL, NULL, 0, NULL, NULL, &e2);
    }
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  conn_close(&c);
  kc_params_release(&kp);
  json_decref(fn);
  json_decref(body);
  json_decref(spawned);
  json_decref(job);
  return r < 0 ? kc_report(&e, USAGE_SUBMIT) : 0;
}

/* ---- kiln status, cancel ---- */

static void print_job(const json_t *j) {
  const json_t *pr = json_object_get(j, "progress"), *cost = json_object_get(j, "cost");
  const json_t *tm = json_object_get(j, "timings"), *err = json_object_get(j, "error");
  char created[32], a[32], b[32], c3[32];
  fmt_created(created, sizeof created, kj_str(j, "created", ""));
  printf("job       %s\n", kj_str(j, "job_id", "?"));
  printf("function  %s\n", kj_str(j, "fn", "?"));
  printf("state     %s (phase %s, attempt %lld)\n", kj_str(j, "state", "?"), kj_str(pr, "phase", "?"),
         (long long)json_integer_value(json_object_get(j, "attempts")));
  printf("created   %s UTC\n", created);
  int64_t total = (int64_t)json_integer_value(json_object_get(pr, "frames_total"));
  if (total > 0)
    printf("progress  %lld/%lld frames (%.1f%%)", (long long)json_integer_value(json_object_get(pr, "frames_done")),
           (long long)total, kj_num(pr, "percent", 0));
  else printf("progress  %.1f%%", kj_num(pr, "percent", 0));
  const json_t *eta = json_object_get(pr, "eta_s");
  if (json_is_number(eta) && strcmp(kj_str(j, "state", ""), "running") == 0) printf(", ETA %.1f s", json_number_value(eta));
  printf("\n");
  printf("cost      $%.6f (%.3f resource-seconds)\n", kj_num(cost, "usd", 0), kj_num(cost, "resource_seconds", 0));
  fmt_ms(a, sizeof a, kj_num(tm, "queued_ms", 0));
  fmt_ms(b, sizeof b, kj_num(tm, "cold_start_ms", 0));
  fmt_ms(c3, sizeof c3, kj_num(tm, "run_ms", 0));
  printf("timings   queued %s, cold start %s, run %s\n", a, b, c3);
  if (json_is_object(err)) printf("error     %s: %s\n", kj_str(err, "class", "?"), kj_str(err, "message", ""));
  size_t i;
  json_t *o;
  const json_t *plan = json_object_get(j, "plan");
  if (json_is_object(plan)) {
    printf("plan      %lld chunk%s, predicted %.2f s", (long long)json_integer_value(json_object_get(plan, "chunks")),
           json_integer_value(json_object_get(plan, "chunks")) == 1 ? "" : "s", kj_num(plan, "predicted_ms", 0) / 1000);
    if (json_object_get(plan, "actual_ms")) printf(", took %.2f s", kj_num(plan, "actual_ms", 0) / 1000);
    printf(" (%s: %s)\n", kj_str(plan, "objective", "?"), kj_str(plan, "why", ""));
  }
  json_array_foreach(json_object_get(j, "tasks"), i, o)
    printf("task      %s %lld: %s, %lld/%lld frames, attempt %lld%s%s\n", kj_str(o, "kind", "?"),
           (long long)json_integer_value(json_object_get(o, "part")), kj_str(o, "state", "?"),
           (long long)json_integer_value(json_object_get(o, "frames_done")),
           (long long)json_integer_value(json_object_get(o, "frames_total")),
           (long long)json_integer_value(json_object_get(o, "attempts")), json_is_string(json_object_get(o, "worker")) ? ", on " : "",
           kj_str(o, "worker", ""));
  json_array_foreach(json_object_get(json_object_get(j, "result"), "outputs"), i, o) {
    printf("output    %s (%lld bytes)\n", kj_str(o, "key", "?"), (long long)json_integer_value(json_object_get(o, "bytes")));
    if (kj_str(o, "url", NULL)) printf("          %s\n", kj_str(o, "url", ""));
  }
}

/* Shared by status and cancel: JOB [--json] plus the connection flags. */
static int job_cmd(int argc, char **argv, const char *method, const char *use) {
  const char *id = NULL;
  int as_json = 0, r = 0;
  kiln_err e = {0};
  copts co = {0};
  conn c;
  memset(&c, 0, sizeof c);
  json_t *j = NULL;
  char path[300], eid[200];
  for (int i = 1; i < argc; i++) {
    int k = conn_opt(argc, argv, &i, &co, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    if (!strcmp(argv[i], "--json")) as_json = 1;
    else if (argv[i][0] == '-' && argv[i][1]) { r = kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for %s", argv[i], argv[0]); goto done; }
    else if (!id) id = argv[i];
    else { r = kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", argv[i]); goto done; }
  }
  if (!id) { r = kiln_fail(&e, KILN_EUSAGE, "which job? (its id, from `kiln submit` or `kiln jobs`)"); goto done; }
  if (url_escape(id, 0, eid, sizeof eid) < 0) { r = kiln_fail(&e, KILN_EUSAGE, "no job '%.40s...' (job ids are 32 hex characters)", id); goto done; }
  if ((r = conn_open(&c, &co, &e)) < 0) goto done;
  snprintf(path, sizeof path, "/v1/jobs/%s", eid);
  if ((r = api_json(&c, method, path, NULL, NULL, 0, NULL, &j, &e)) < 0) goto done;   /* 409: already ended */
  if (as_json) kj_print(j);
  else if (!strcmp(method, "DELETE")) printf("job %s: %s\n", kj_str(j, "job_id", id), kj_str(j, "state", "?"));
  else print_job(j);
done:
  conn_close(&c);
  json_decref(j);
  return r < 0 ? kc_report(&e, use) : 0;
}

int kc_status(int argc, char **argv) { return job_cmd(argc, argv, "GET", USAGE_STATUS); }
int kc_cancel(int argc, char **argv) { return job_cmd(argc, argv, "DELETE", USAGE_CANCEL); }

/* ---- kiln jobs ---- */

/* Appends "&NAME=VALUE" (or "?..." first) to a query, escaped. */
static int add_query(char *q, size_t n, const char *name, const char *val) {
  char ev[400];
  if (url_escape(val, 0, ev, sizeof ev) < 0) return -1;
  size_t l = strlen(q);
  return (size_t)snprintf(q + l, n - l, "%s%s=%s", l ? "&" : "?", name, ev) >= n - l ? -1 : 0;
}

int kc_jobs(int argc, char **argv) {
  const char *state = NULL, *fname = NULL, *limit = NULL;
  int as_json = 0, r = 0;
  kiln_err e = {0};
  copts co = {0};
  conn c;
  memset(&c, 0, sizeof c);
  json_t *j = NULL;
  char q[1200] = "", path[1300];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int k = conn_opt(argc, argv, &i, &co, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    const char **dst = !strcmp(a, "--state") ? &state : !strcmp(a, "--fn") ? &fname : !strcmp(a, "--limit") ? &limit : NULL;
    if (dst) {
      if (++i >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs a value", a); goto done; }
      *dst = argv[i];
    } else if (!strcmp(a, "--json")) as_json = 1;
    else { r = kiln_fail(&e, KILN_EUSAGE, "unknown %s '%s' for jobs", a[0] == '-' ? "option" : "argument", a); goto done; }
  }
  if (limit) {
    char *end;
    long v = strtol(limit, &end, 10);
    if (!*limit || *end || v < 1 || v > 1000) { r = kiln_fail(&e, KILN_EUSAGE, "--limit needs a number from 1 to 1000"); goto done; }
  }
  if ((state && add_query(q, sizeof q, "state", state) < 0) || (fname && add_query(q, sizeof q, "fn", fname) < 0) ||
      (limit && add_query(q, sizeof q, "limit", limit) < 0)) {
    r = kiln_fail(&e, KILN_EUSAGE, "a filter is too long");
    goto done;
  }
  if ((r = conn_open(&c, &co, &e)) < 0) goto done;
  snprintf(path, sizeof path, "/v1/jobs%s", q);
  if ((r = api_json(&c, "GET", path, NULL, NULL, 0, NULL, &j, &e)) < 0) goto done;
  if (as_json) { kj_print(j); goto done; }
  const json_t *jobs = json_object_get(j, "jobs");
  if (!json_array_size(jobs)) { printf("no jobs\n"); goto done; }
  printf("%-32s  %-16s  %-9s  %6s  %-19s  %10s\n", "JOB", "FN", "STATE", "PCT", "CREATED (UTC)", "USD");
  size_t i;
  json_t *o;
  json_array_foreach(jobs, i, o) {
    char created[32];
    fmt_created(created, sizeof created, kj_str(o, "created", ""));
    printf("%-32s  %-16s  %-9s  %5.1f%%  %-19s  %10.6f\n", kj_str(o, "job_id", "?"), kj_str(o, "fn", "?"),
           kj_str(o, "state", "?"), kj_num(json_object_get(o, "progress"), "percent", 0), created,
           kj_num(json_object_get(o, "cost"), "usd", 0));
  }
done:
  conn_close(&c);
  json_decref(j);
  return r < 0 ? kc_report(&e, USAGE_JOBS) : 0;
}

/* ---- kiln usage ---- */

int kc_usage(int argc, char **argv) {
  const char *since = NULL;
  int as_json = 0, r = 0;
  kiln_err e = {0};
  copts co = {0};
  conn c;
  memset(&c, 0, sizeof c);
  json_t *j = NULL;
  char q[200] = "", path[300];
  for (int i = 1; i < argc; i++) {
    int k = conn_opt(argc, argv, &i, &co, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    if (!strcmp(argv[i], "--since")) {
      if (++i >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "--since needs a date YYYY-MM-DD"); goto done; }
      since = argv[i];
    } else if (!strcmp(argv[i], "--json")) as_json = 1;
    else { r = kiln_fail(&e, KILN_EUSAGE, "unknown %s '%s' for usage", argv[i][0] == '-' ? "option" : "argument", argv[i]); goto done; }
  }
  if (since && add_query(q, sizeof q, "since", since) < 0) { r = kiln_fail(&e, KILN_EUSAGE, "--since needs a date YYYY-MM-DD"); goto done; }
  if ((r = conn_open(&c, &co, &e)) < 0) goto done;
  snprintf(path, sizeof path, "/v1/usage%s", q);
  if ((r = api_json(&c, "GET", path, NULL, NULL, 0, NULL, &j, &e)) < 0) goto done;
  if (as_json) { kj_print(j); goto done; }
  printf("usage since %s (UTC days)\n\n", kj_str(j, "since", "?"));
  printf("%-10s  %-16s  %6s  %12s  %12s\n", "DAY", "FN", "JOBS", "RESOURCE-S", "USD");
  size_t i;
  json_t *o;
  json_array_foreach(json_object_get(j, "usage"), i, o)
      printf("%-10s  %-16s  %6lld  %12.3f  %12.6f\n", kj_str(o, "day", "?"), kj_str(o, "fn", "?"),
             (long long)json_integer_value(json_object_get(o, "jobs")), kj_num(o, "resource_seconds", 0),
             kj_num(o, "usd", 0));
  const json_t *t = json_object_get(j, "total");
  printf("%-10s  %-16s  %6lld  %12.3f  %12.6f\n\n", "total", "", (long long)json_integer_value(json_object_get(t, "jobs")),
         kj_num(t, "resource_seconds", 0), kj_num(t, "usd", 0));
  const json_t *budget = json_object_get(j, "budget_usd_month");
  if (json_is_number(budget))
    printf("this month: $%.6f of a $%.2f budget\n", kj_num(j, "month_usd", 0), json_number_value(budget));
  else printf("this month: $%.6f (no monthly budget set)\n", kj_num(j, "month_usd", 0));
done:
  conn_close(&c);
  json_decref(j);
  return r < 0 ? kc_report(&e, USAGE_USAGE) : 0;
}
