/* server.c — the HTTP front of `kiln serve` (libmicrohttpd: a pool of
 * epoll loops; connections that wait on a job are parked, never a blocked
 * thread: kh_suspend and the ticker). GET /health, the object routes over the store, and the
 * dispatch to jobs.c for the rest (every route there needs a token):
 *   PUT  /v1/objects/{key}            streaming upload (limit; atomic commit)
 *   GET  /v1/objects/{key}            streaming download, Range: bytes=...
 *   POST /v1/objects/{key}/presign    {"method":"GET"|"PUT","ttl":s} -> {"url","expires"}
 * Every route but /health needs "Authorization: Bearer TOKEN", or a valid
 * presigned query (?method=&expires=&sig=) for that key and method. Every
 * error is JSON {"error":{"code","message"}} naming what is wrong; tokens
 * are never logged. */
#include "api/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "api/auth.h"
#include "util/log.h"

#define PREFIX "/v1/objects/"

static void count_status(kiln_server *s, unsigned status) {
  unsigned k = status / 100;
  __atomic_fetch_add(&s->requests[k < 6 ? k : 0], 1, __ATOMIC_RELAXED);
}

/* The one way a JSON answer leaves the server. o may be NULL (a failed
 * json_pack): the client then gets a fixed 500 body, never a crash. */
enum MHD_Result kh_respond(kiln_server *s, struct MHD_Connection *c, unsigned status, json_t *o, const char *hname,
                           const char *hval) {
  static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"the answer could not be encoded\"}}";
  char *t = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
  json_decref(o);
  struct MHD_Response *r;
  if (t) {
    r = MHD_create_response_from_buffer(strlen(t), t, MHD_RESPMEM_MUST_FREE);
    if (!r) free(t);
  } else {
    KLOG_E("a JSON answer (status %u) could not be encoded; answering 500", status);
    status = 500;
    r = MHD_create_response_from_buffer(sizeof fallback - 1, (void *)fallback, MHD_RESPMEM_PERSISTENT);
  }
  if (!r) return MHD_NO;                          /* out of memory: MHD drops the connection */
  MHD_add_response_header(r, "Content-Type", "application/json");
  if (hname) MHD_add_response_header(r, hname, hval);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  count_status(s, status);
  return ret;
}

enum MHD_Result kh_json(kiln_server *s, struct MHD_Connection *c, unsigned status, json_t *o) {
  return kh_respond(s, c, status, o, NULL, NULL);
}

json_t *kh_error_body(const char *code, const char *msg) {
  char clean[KILN_ERR_MSG_MAX * 2];
  kiln_utf8_sanitize(msg, clean, sizeof clean);
  return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", clean);
}

enum MHD_Result kh_error(kiln_server *s, struct MHD_Connection *c, unsigned status, const char *code, const char *fmt,
                         ...) {
  char msg[KILN_ERR_MSG_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  kiln_vformat(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kh_json(s, c, status, kh_error_body(code, msg));
}

/* The HTTP status and error code for a store failure. */
static unsigned store_status(int code, const char **ecode) {
  switch (code) {
    case KILN_ENOENT: *ecode = "not_found"; return 404;
    case KILN_EINVAL: *ecode = "bad_key"; return 400;
    case KILN_ECONFLICT: *ecode = "conflict"; return 409;
    case KILN_ENOSPACE: *ecode = "insufficient_storage"; return 507;
    default: *ecode = "internal"; return 500;
  }
}

static enum MHD_Result store_error(kiln_server *s, struct MHD_Connection *c, const kiln_err *e) {
  const char *code;
  unsigned st = store_status(e->code, &code);
  return kh_error(s, c, st, code, "%s", e->msg);
}

/* Marks the request failed with a store error (answered once the body is drained). */
static void req_fail_store(req *rq, const kiln_err *e) {
  const char *code;
  rq->status = (int)store_status(e->code, &code);
  snprintf(rq->code, sizeof rq->code, "%s", code);
  snprintf(rq->msg, sizeof rq->msg, "%s", e->msg);
}

#define send_json(c, st, o) kh_json(s, c, st, o)
#define send_error(c, st, code, msg) kh_error(s, c, st, code, "%s", msg)

int kh_token_ok(kiln_server *s, struct MHD_Connection *c, unsigned *status, char *msg, size_t n) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!h || strncmp(h, "Bearer ", 7) != 0) {
    *status = 401;
    snprintf(msg, n, "missing 'Authorization: Bearer TOKEN' header (create one with `kiln token create --name NAME`)");
    return -1;
  }
  kiln_err e = {0};
  int r = ka_token_verify(s->home, h + 7, NULL, 0, &e);
  if (r == KILN_EIO) {                          /* the server's fault, not the client's: say so, log where */
    KLOG_E("%s", e.msg);
    *status = 500;
    snprintf(msg, n, "the server's token file is damaged; its operator must restore it (see the server log)");
    return -1;
  }
  if (r < 0) {
    *status = 401;
    snprintf(msg, n, "invalid token");
    return -1;
  }
  return 0;
}

void kh_base_url(kiln_server *s, struct MHD_Connection *c, char *out, size_t n) {
  if (s->cfg && s->cfg->public_url[0]) { snprintf(out, n, "%s", s->cfg->public_url); return; }
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
  if (h && strlen(h) < 200 && !strpbrk(h, "/ \r\n")) snprintf(out, n, "http://%s", h);
  else snprintf(out, n, "http://127.0.0.1:%u", s->port);
}

struct kq *kh_q_get(kiln_server *s, kiln_err *e) {
  kq *q = NULL;
  pthread_mutex_lock(&s->qmu);
  if (s->nqfree > 0) q = s->qfree[--s->nqfree];
  pthread_mutex_unlock(&s->qmu);
  if (!q && ke_open_queue(s->cfg, 0, &q, e) < 0) return NULL;
  return q;
}

void kh_q_put(kiln_server *s, struct kq *q) {
  if (!q) return;
  pthread_mutex_lock(&s->qmu);
  if (s->nqfree < 64) { s->qfree[s->nqfree++] = q; q = NULL; }
  pthread_mutex_unlock(&s->qmu);
  kq_close(q);
}

/* 0 if the request may touch `key` with `method`: a valid token, or a
 * presigned query for exactly this key and method. */
static int authorised(kiln_server *s, struct MHD_Connection *c, const char *key, const char *method, unsigned *status,
                      char *msg, size_t n) {
  const char *sig = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "sig");
  if (sig && key) {
    const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "method");
    const char *ex = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "expires");
    kiln_err e = {0};
    if (ks_presign_check(s->store, method, key, m, ex, sig, (int64_t)time(NULL), &e) < 0) {
      *status = 403;
      snprintf(msg, n, "%s", e.msg);
      return -1;
    }
    return 0;
  }
  return kh_token_ok(s, c, status, msg, n);
}

typedef struct get_ctx { ks_get *g; } get_ctx;

static ssize_t get_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  get_ctx *c = cls;
  kiln_err e;
  (void)pos;
  ssize_t n = ks_get_read(c->g, buf, max, &e);
  if (n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
  if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
  return n;
}

static void get_free(void *cls) {
  get_ctx *c = cls;
  ks_get_close(c->g);
  free(c);
}

static enum MHD_Result do_get(kiln_server *s, struct MHD_Connection *c, const char *key) {
  kiln_err e = {0};
  ks_stat st;
  if (ks_stat_key(s->store, key, &st, &e) < 0) return store_error(s, c, &e);
  int64_t off = 0, len = st.size;
  const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
  unsigned status = 200;
  char cr[96] = "";
  if (range) {
    if (ks_range_parse(range, st.size, &off, &len) < 0) {
      snprintf(cr, sizeof cr, "bytes */%lld", (long long)st.size);
      char msg[160];
      snprintf(msg, sizeof msg, "range '%s' cannot be satisfied: the object has %lld bytes", KILN_CLIP(range, 60),
               (long long)st.size);
      return kh_respond(s, c, 416, kh_error_body("bad_range", msg), "Content-Range", cr);
    }
    status = 206;
    snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", (long long)off, (long long)(off + len - 1), (long long)st.size);
  }
  get_ctx *g = calloc(1, sizeof *g);
  if (!g) return send_error(c, 500, "internal", "out of memory");
  if (st.size > 0 && ks_get_open(s->store, key, off, len, &g->g, &e) < 0) {   /* e.g. deleted since the stat: 404 */
    free(g);
    return store_error(s, c, &e);
  }
  struct MHD_Response *r = st.size > 0 ? MHD_create_response_from_callback((uint64_t)len, 256 * 1024, get_reader, g, get_free)
                                       : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (st.size == 0) free(g);
  if (!r) {                                       /* out of memory: the stream is closed, MHD drops the connection */
    if (st.size > 0) get_free(g);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/octet-stream");
  MHD_add_response_header(r, "Accept-Ranges", "bytes");
  if (cr[0]) MHD_add_response_header(r, "Content-Range", cr);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  count_status(s, status);
  return ret;
}

static enum MHD_Result do_presign(kiln_server *s, struct MHD_Connection *c, const char *key, req *rq) {
  json_error_t je;
  json_t *b = rq->body_len ? json_loadb(rq->body, rq->body_len, 0, &je) : json_object();
  if (!b) {
    char msg[256];
    snprintf(msg, sizeof msg, "request body is not valid JSON at line %d, column %d: %s", je.line, je.column, je.text);
    return send_error(c, 400, "bad_json", msg);
  }
  const char *mk;
  json_t *mv;
  const char *bad = !json_is_object(b) ? "the request body must be a JSON object {\"method\": \"GET\"|\"PUT\", \"ttl\": seconds}" : NULL;
  json_object_foreach(b, mk, mv) if (!bad && strcmp(mk, "method") && strcmp(mk, "ttl")) bad = mk;
  json_t *mj = json_object_get(b, "method");
  const char *m = json_string_value(mj);
  if (bad || (mj && (!m || (strcmp(m, "GET") && strcmp(m, "PUT"))))) {
    char why[200];
    if (bad && json_is_object(b)) snprintf(why, sizeof why, "unknown member '%s' in the presign body (known: method, ttl)", KILN_CLIP(bad, 60));
    else if (bad) snprintf(why, sizeof why, "%s", bad);
    else snprintf(why, sizeof why, "'method' must be \"GET\" or \"PUT\"");
    json_decref(b);
    return send_error(c, 400, "bad_param", why);
  }
  json_t *ttlv = json_object_get(b, "ttl");
  int ttl_bad = ttlv && !json_is_number(ttlv);
  long long ttl = ttlv && !ttl_bad ? (long long)json_number_value(ttlv) : 3600;
  char method[8];
  snprintf(method, sizeof method, "%s", m ? m : "GET");
  json_decref(b);                                 /* m and ttlv are gone from here on */
  if (ttl_bad || ttl < 1 || ttl > 7 * 86400)
    return send_error(c, 400, "bad_param", "'ttl' must be a number of seconds from 1 to 604800");
  int64_t expires = (int64_t)time(NULL) + ttl;
  char url[2200];
  kiln_err e = {0};
  if (ks_presign(s->store, method, key, expires, url, sizeof url, &e) < 0) return send_error(c, 400, "bad_param", e.msg);
  return send_json(c, 200, json_pack("{s:s, s:s, s:I}", "url", url, "method", method, "expires", (json_int_t)expires));
}

/* JSON bodies: inline base64 input of inline_max bytes, plus the rest. */
static long long body_limit(kiln_server *s) { return s->inline_max / 3 * 4 + 4 + (1 << 20); }

static void too_big(kiln_server *s, req *rq, long long n) {
  rq->status = 413;
  snprintf(rq->code, sizeof rq->code, "too_large");
  snprintf(rq->msg, sizeof rq->msg,
           "request body of %lld bytes is over the limit for JSON bodies (inline base64 input up to %lld bytes);"
           " upload the file with PUT /v1/objects/{key} and pass its key as \"input\"", n, (long long)s->inline_max);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  kiln_server *s = cls;
  (void)version;
  req *rq = *con_cls;
  if (!rq) {
    rq = calloc(1, sizeof *rq);
    if (!rq) return MHD_NO;
    *con_cls = rq;
    /* the headers are in: from now on the request's own, longer, timeout (completed() puts back the idle one) */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->cfg->http_request_timeout_s);
    /* a declared body over the limit is refused now, before any of it is read */
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
      char *end;
      long long n = strtoll(cl, &end, 10);
      int obj = strncmp(url, PREFIX, strlen(PREFIX)) == 0;
      int pre = obj && !strcmp(method, "POST");
      long long lim = pre ? 65536 : obj ? s->max_upload : body_limit(s);
      if (*end == 0 && n > lim) {
        rq->status = -1;                          /* answered: completed() frees rq */
        return kh_error(s, c, 413, "too_large", "the request body of %lld bytes is over the limit of %lld bytes%s", n, lim,
                        obj ? "" : "; upload large inputs with PUT /v1/objects/{key} and pass the key as \"input\"");
      }
    }
    return MHD_YES;
  }
  if (rq->submitting) return kh_submitted(s, c, rq);
  if (rq->waiting) return kh_call_poll(s, c, rq);
  if (!strcmp(url, "/health")) {
    if (*upload_size) { *upload_size = 0; return MHD_YES; }   /* a body is read and dropped: MHD answers only after it */
    if (strcmp(method, "GET") != 0) return send_error(c, 405, "method_not_allowed", "/health takes GET");
    return send_json(c, 200, json_pack("{s:s, s:s, s:s}", "status", "ok", "service", "kiln", "version", KILN_VERSION));
  }
  if (strncmp(url, PREFIX, strlen(PREFIX)) != 0) {
    if (!rq->started) {
      rq->started = 1;
      unsigned st;
      char msg[512];
      if (kh_token_ok(s, c, &st, msg, sizeof msg) < 0) {
        rq->status = (int)st;
        snprintf(rq->code, sizeof rq->code, "%s", st == 500 ? "internal" : "unauthorized");
        snprintf(rq->msg, sizeof rq->msg, "%s", msg);
      }
      const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
      if (!rq->status && cl && strtoll(cl, NULL, 10) > body_limit(s)) too_big(s, rq, strtoll(cl, NULL, 10));
    }
    if (*upload_size) {
      if (!rq->status && rq->body_len + *upload_size > (size_t)body_limit(s)) too_big(s, rq, (long long)(rq->body_len + *upload_size));
      if (!rq->status) {
        if (rq->body_len + *upload_size + 1 > rq->body_cap) {
          size_t cap = (rq->body_len + *upload_size + 1) * 2;
          char *nb = realloc(rq->body, cap);
          if (!nb) { rq->status = 500; snprintf(rq->code, sizeof rq->code, "internal"); snprintf(rq->msg, sizeof rq->msg, "out of memory"); }
          else { rq->body = nb; rq->body_cap = cap; }
        }
        if (!rq->status) {
          memcpy(rq->body + rq->body_len, upload, *upload_size);
          rq->body_len += *upload_size;
          rq->body[rq->body_len] = 0;
        }
      }
      *upload_size = 0;
      return MHD_YES;
    }
    if (rq->status) return kh_error(s, c, (unsigned)rq->status, rq->code, "%s", rq->msg);
    int r = kh_jobs_route(s, c, url, method, rq);
    if (r >= 0) return (enum MHD_Result)r;
    return kh_error(s, c, 404, "not_found", "no route %s %s (see docs/http.md)", KILN_CLIP(method, 20), KILN_CLIP(url, 200));
  }
  size_t ul = strlen(url + strlen(PREFIX));
  if (ul > KS_KEY_MAX + 8) {                    /* too long even with "/presign": say how long it is */
    if (*upload_size) { *upload_size = 0; return MHD_YES; }
    return kh_error(s, c, 400, "bad_key", "object key is %zu bytes; the limit is %d", ul - (strcmp(method, "POST") == 0 && ul > 8 && !strcmp(url + strlen(url) - 8, "/presign") ? 8 : 0), KS_KEY_MAX);
  }
  char key[KS_KEY_MAX + 16];
  snprintf(key, sizeof key, "%s", url + strlen(PREFIX));
  int presign = 0;
  size_t kl = strlen(key);
  if (!strcmp(method, "POST") && kl > 8 && !strcmp(key + kl - 8, "/presign")) { key[kl - 8] = 0; presign = 1; }
  kiln_err e = {0};
  if (ks_key_check(key, &e) < 0) {
    if (*upload_size) { *upload_size = 0; return MHD_YES; }   /* drain, then answer */
    return send_error(c, 400, "bad_key", e.msg);
  }
  unsigned st;
  char msg[512];
  if (!rq->started) {
    rq->started = 1;
    /* presigned URLs grant GET or PUT of one key; presigning itself needs a token */
    const char *need = presign ? "POST" : !strcmp(method, "HEAD") ? "GET" : method;
    if (authorised(s, c, key, need, &st, msg, sizeof msg) < 0) {
      rq->status = (int)st;
      snprintf(rq->code, sizeof rq->code, "%s", st == 401 ? "unauthorized" : st == 500 ? "internal" : "forbidden");
      snprintf(rq->msg, sizeof rq->msg, "%s", msg);
    } else if (!strcmp(method, "PUT")) {
      if (ks_put_begin(s->store, key, &rq->put, &e) < 0) req_fail_store(rq, &e);
    }
  }
  if (*upload_size) {                           /* a chunk of the body */
    if (!rq->status && rq->put) {
      rq->received += (int64_t)*upload_size;
      if (rq->received > s->max_upload) {
        rq->status = 413;
        snprintf(rq->code, sizeof rq->code, "too_large");
        snprintf(rq->msg, sizeof rq->msg, "upload is larger than the limit of %lld bytes", (long long)s->max_upload);
        ks_put_abort(rq->put);
        rq->put = NULL;
      } else if (ks_put_write(rq->put, upload, *upload_size, &e) < 0) {
        req_fail_store(rq, &e);
        ks_put_abort(rq->put);
        rq->put = NULL;
      }
    } else if (!rq->status && presign) {
      if (rq->body_len + *upload_size > 65536) {
        rq->status = 413;
        snprintf(rq->code, sizeof rq->code, "too_large");
        snprintf(rq->msg, sizeof rq->msg, "request body is larger than 65536 bytes");
      } else {
        if (!rq->body && !(rq->body = malloc(65537))) { *upload_size = 0; return MHD_NO; }
        memcpy(rq->body + rq->body_len, upload, *upload_size);
        rq->body_len += *upload_size;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (rq->status) return send_error(c, (unsigned)rq->status, rq->code, rq->msg);
  if (presign) return do_presign(s, c, key, rq);
  if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) return do_get(s, c, key);
  if (!strcmp(method, "PUT")) {
    ks_put *p = rq->put;
    rq->put = NULL;
    if (!p) return send_error(c, 500, "internal", "upload was not started");
    if (ks_put_commit(p, &e) < 0) return store_error(s, c, &e);
    return send_json(c, 201, json_pack("{s:s, s:I}", "key", key, "bytes", (json_int_t)rq->received));
  }
  if (!strcmp(method, "DELETE")) {
    if (ks_delete(s->store, key, &e) < 0) return store_error(s, c, &e);
    return send_json(c, 200, json_pack("{s:s, s:b}", "key", key, "deleted", 1));
  }
  snprintf(msg, sizeof msg, "%s is not allowed on objects (GET, PUT, DELETE, POST .../presign)", method);
  return send_error(c, 405, "method_not_allowed", msg);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  kiln_server *s = cls;
  req *rq = *con_cls;
  if (!rq) return;
  if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)  /* kept alive: idle again */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->cfg->http_idle_timeout_s);
  if (rq->put) ks_put_abort(rq->put);             /* a dropped upload leaves nothing */
  free(rq->body);
  free(rq->sub_spec);
  free(rq->sub_hook);
  free(rq);
  *con_cls = NULL;
}

static unsigned bucket(const char *id) {
  unsigned h = 2166136261u;                       /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 16777619u;
  return h % 64;
}

uint64_t kh_changes(kiln_server *s, const char *id) {
  pthread_mutex_lock(&s->wmu);
  uint64_t g = s->changes[bucket(id)];
  pthread_mutex_unlock(&s->wmu);
  return g;
}

int kh_suspend(kiln_server *s, struct MHD_Connection *c, kh_wait *w, int64_t delay_ms) {
  pthread_mutex_lock(&s->wmu);
  if (s->stopping) { pthread_mutex_unlock(&s->wmu); return -1; }
  if (!s->watch_ok && delay_ms > 50) delay_ms = 50;
  w->c = c;
  w->due_ms = ke_now_ms() + delay_ms;
  if (w->id[0] && s->changes[bucket(w->id)] != w->gen) w->due_ms = 0;   /* it changed since the handler looked */
  MHD_suspend_connection(c);                      /* before it is listed: the ticker resumes only suspended ones */
  w->next = s->waiting;
  s->waiting = w;
  pthread_cond_signal(&s->wcv);                   /* the ticker's next wake may now be sooner */
  pthread_mutex_unlock(&s->wmu);
  return 0;
}

/* Resumes the parked connections that are due (all of them once stopping),
 * sleeping until the earliest is due or the watcher signals a change. The
 * list is taken under the lock and resumed outside it: a resumed
 * connection's handler may park it again at once. */
static void *ticker(void *arg) {
  kiln_server *s = arg;
  pthread_mutex_lock(&s->wmu);
  for (;;) {
    int stop = s->stopping;
    int64_t now = ke_now_ms(), next = now + 1000;
    kh_wait *due = NULL, **pp = &s->waiting;
    while (*pp) {
      kh_wait *w = *pp;
      if (stop || w->due_ms <= now) { *pp = w->next; w->next = due; due = w; }
      else {
        if (w->due_ms < next) next = w->due_ms;
        pp = &w->next;
      }
    }
    pthread_mutex_unlock(&s->wmu);
    while (due) {
      kh_wait *nx = due->next;                    /* read first: once resumed, w may be freed */
      MHD_resume_connection(due->c);
      due = nx;
    }
    pthread_mutex_lock(&s->wmu);
    if (stop) break;
    if (s->stopping) continue;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wait_ms = next - ke_now_ms();
    if (wait_ms < 1) wait_ms = 1;
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&s->wcv, &s->wmu, &ts);
  }
  pthread_mutex_unlock(&s->wmu);
  return NULL;
}

/* A job changed (id NULL: some job): its parked connections are due now. */
static void on_change(void *arg, const char *id) {
  kiln_server *s = arg;
  pthread_mutex_lock(&s->wmu);
  if (id) s->changes[bucket(id)]++;
  else for (int i = 0; i < 64; i++) s->changes[i]++;
  int woke = 0;
  for (kh_wait *w = s->waiting; w; w = w->next)
    if (!id || (w->id[0] && !strcmp(w->id, id))) { w->due_ms = 0; woke = 1; }
  if (woke) pthread_cond_signal(&s->wcv);
  pthread_mutex_unlock(&s->wmu);
}

/* The watcher thread: kq_watch on its own handle until the server stops.
 * A failed watch (the database away) is retried; meanwhile waits fall back
 * to looking every 50 ms. */
static void *watcher(void *arg) {
  kiln_server *s = arg;
  kq *q = NULL;
  for (;;) {
    pthread_mutex_lock(&s->wmu);
    int stop = s->stopping;
    pthread_mutex_unlock(&s->wmu);
    if (stop) break;
    kiln_err e = {0};
    if (!q && ke_open_queue(s->cfg, 0, &q, &e) < 0) {
      q = NULL;
      struct timespec ts = {0, 200 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    int r = kq_watch(q, 200, on_change, s, &e);
    pthread_mutex_lock(&s->wmu);
    s->watch_ok = r == 0;
    pthread_mutex_unlock(&s->wmu);
    if (r < 0) on_change(s, NULL);                /* what changed meanwhile is unknown: everyone looks again */
  }
  kq_close(q);
  return NULL;
}

int kiln_server_start(kiln_server *s, const struct sockaddr *addr, int threads, kiln_err *e) {
  /* An epoll loop per pool thread: an idle or slow client costs a descriptor, never a thread. Handlers do not
   * block on a job: a `call` and an event stream park their connection (kh_suspend) and the ticker wakes them. */
  const ke_config *cfg = s->cfg;
  pthread_mutex_init(&s->qmu, NULL);
  pthread_mutex_init(&s->wmu, NULL);
  pthread_cond_init(&s->wcv, NULL);
  s->stopping = 0;
  s->waiting = NULL;
  if (pthread_create(&s->ticker, NULL, ticker, s) != 0) return kiln_fail(e, KILN_EIO, "cannot start the server's ticker thread");
  s->ticker_on = 1;
  memset(s->changes, 0, sizeof s->changes);
  s->watch_ok = 1;                                /* until a watch fails */
  if (pthread_create(&s->watcher, NULL, watcher, s) == 0) s->watcher_on = 1;
  else s->watch_ok = 0;
  unsigned conns = (unsigned)cfg->http_max_conns;
  struct rlimit rl;                               /* each connection is a descriptor: raise the soft limit to fit */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)conns + 256) {
    rlim_t want = (rlim_t)conns + 256;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 256) {
      KLOG_W("open-file limit %llu: serving at most %llu connections, not %u", (unsigned long long)rl.rlim_cur,
             (unsigned long long)(rl.rlim_cur > 512 ? rl.rlim_cur - 256 : rl.rlim_cur / 2), conns);
      conns = (unsigned)(rl.rlim_cur > 512 ? rl.rlim_cur - 256 : rl.rlim_cur / 2);
    }
  }
  s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                          0, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, completed,
                          s, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 0 ? threads : 1),
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_idle_timeout_s,
                          MHD_OPTION_CONNECTION_LIMIT, conns,
                          MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->http_max_conns_per_ip,
                          MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
  if (!s->d) {
    kiln_server_stop(s);
    return kiln_fail(e, KILN_EIO, "cannot listen on the requested address (in use, or not allowed)");
  }
  const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = i ? i->port : 0;
  return 0;
}

void kiln_server_stop(kiln_server *s) {
  if (s->ticker_on) {                             /* every parked connection resumed before MHD stops */
    pthread_mutex_lock(&s->wmu);
    s->stopping = 1;
    pthread_cond_signal(&s->wcv);
    pthread_mutex_unlock(&s->wmu);
    pthread_join(s->ticker, NULL);
    s->ticker_on = 0;
  }
  pthread_mutex_lock(&s->wmu);                    /* submissions in flight resume their connections first */
  s->stopping = 1;
  while (s->submitting > 0) pthread_cond_wait(&s->wcv, &s->wmu);
  pthread_mutex_unlock(&s->wmu);
  if (s->watcher_on) {                            /* it sees stopping within one watch (200 ms) */
    pthread_join(s->watcher, NULL);
    s->watcher_on = 0;
  }
  if (s->d) MHD_stop_daemon(s->d);
  s->d = NULL;
  while (s->nqfree > 0) kq_close(s->qfree[--s->nqfree]);
}
