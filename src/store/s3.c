/* s3.c — the store on an S3-compatible bucket (AWS S3, Cloudflare R2,
 * MinIO, Supabase storage, moto): libcurl for HTTP, kiln's SigV4
 * (sigv4.c) for signatures, libxml2 for S3's XML answers.
 *
 * Object KEY lives at PREFIX/KEY in the bucket (PREFIX from
 * s3://bucket/prefix, may be empty). A put is buffered in memory one part
 * at a time (part_size, 8 MiB by default): an object that fits one part is
 * one PutObject; a larger one is a multipart upload, completed by commit
 * and aborted by abort, so no reader ever sees a half-written object. A
 * get asks HEAD for the size and ETag, then reads ranged GETs of growing
 * blocks with If-Match: an object replaced while it is read fails the read
 * instead of mixing two versions. Rename is CopyObject (or a multipart copy
 * above copy_max) then DeleteObject. List is ListObjectsV2, page by page.
 *
 * Every request is retried with exponential backoff and jitter (up to
 * `tries` times) on a network error, a 5xx, 429 or S3's SlowDown and
 * RequestTimeout; request bodies are in memory, so a retry resends them
 * whole. Connections are shared between threads through a CURLSH.
 * Credentials come from the caller (the environment, never a config file)
 * and appear in no message: errors name the operation, the key and S3's
 * own code and message.
 *
 * Local files: a cache folder holds tmp/ (scratch folders, scratch.c) and
 * objects/ (ks_fetch's copies, bounded by cache_max bytes). */
#include "store/sigv4.h"
#include "store/store_int.h"
#include "util/buf.h"
#include "util/fs.h"

#include <curl/curl.h>
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S3_BODY_MAX (4 << 20)       /* the most of an XML answer kept (a list page is ~1 MB at most) */

typedef struct s3 {
  char bucket[64], prefix[KS_KEY_MAX + 1];
  char scheme[8], host[256];    /* the endpoint: "http", "127.0.0.1:9000" */
  char endpoint[300];           /* as given, for messages */
  int path_style;
  char region[64];
  char *access, *secret, *token;
  char cache[1024], objects[1100], tmp[1100];
  int64_t cache_max;
  size_t part;
  int64_t copy_max;
  int tries;
  int backoff_ms;
  CURLSH *sh;
  pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
  ks_scratch scratch;
} s3;

/* One request and its answer. */
typedef struct s3_req {
  const char *method;
  const char *okey;             /* the object's key in the bucket, or NULL: the bucket itself */
  const ks_kv *query;
  int nq;
  const ks_kv *hdr;             /* more headers, sent and signed */
  int nh;
  const void *body;
  size_t blen;
  /* the answer */
  long status;
  char code[64];                /* S3's error code, when it sent one */
  char message[256];
  char etag[256];
  int64_t clen;
  char lastmod[64];
  kbuf resp;                     /* the body (XML answers), up to S3_BODY_MAX */
  char *sink;                   /* or: a GET's bytes into sink[0..sink_cap) */
  size_t sink_cap, sink_n;
  int overflow;
} s3_req;

static size_t on_body(char *p, size_t sz, size_t nm, void *arg) {
  s3_req *r = arg;
  size_t n = sz * nm;
  if (r->sink && r->status / 100 == 2) {
    if (r->sink_n + n > r->sink_cap) { r->overflow = 1; return 0; }
    memcpy(r->sink + r->sink_n, p, n);
    r->sink_n += n;
    return n;
  }
  if (r->resp.n + n > S3_BODY_MAX) { r->overflow = 1; return 0; }
  kbuf_add(&r->resp, p, n);
  return r->resp.oom ? 0 : n;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap) {
  size_t k = strlen(name);
  if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return;
  const char *v = line + k + 1;
  const char *end = line + n;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
  size_t m = (size_t)(end - v);
  if (m >= cap) m = cap - 1;
  memcpy(out, v, m);
  out[m] = 0;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg) {
  s3_req *r = arg;
  size_t n = sz * nm;
  if (n > 5 && !strncmp(p, "HTTP/", 5)) {         /* a new answer (after a 100 Continue, say) */
    const char *sp = memchr(p, ' ', n);
    r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    r->etag[0] = r->lastmod[0] = 0;
    r->clen = -1;
  }
  header_value(p, n, "ETag", r->etag, sizeof r->etag);
  header_value(p, n, "Last-Modified", r->lastmod, sizeof r->lastmod);
  char cl[32] = "";
  header_value(p, n, "Content-Length", cl, sizeof cl);
  if (cl[0]) r->clen = strtoll(cl, NULL, 10);
  return n;
}

static void lock_cb(CURL *h, curl_lock_data d, curl_lock_access a, void *u) {
  (void)h; (void)a;
  pthread_mutex_lock(&((s3 *)u)->locks[d]);
}
static void unlock_cb(CURL *h, curl_lock_data d, void *u) {
  (void)h;
  pthread_mutex_unlock(&((s3 *)u)->locks[d]);
}

/* The first child element of n named name (local name), or NULL. */
static xmlNodePtr xml_child(xmlNodePtr n, const char *name) {
  for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name)) return c;
  return NULL;
}
/* The text of n's child name into out; 0, or -1 when there is none. */
static int xml_text(xmlNodePtr n, const char *name, char *out, size_t cap) {
  xmlNodePtr c = xml_child(n, name);
  if (!c) return -1;
  xmlChar *t = xmlNodeGetContent(c);
  snprintf(out, cap, "%s", t ? (const char *)t : "");
  xmlFree(t);
  return 0;
}
static xmlDocPtr xml_parse(const kbuf *b) {
  if (!b->p || b->n == 0) return NULL;
  return xmlReadMemory(b->p, (int)b->n, "s3.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* S3's <Error><Code/><Message/></Error> into r->code and r->message; 1 when the body is one. */
static int parse_error(s3_req *r) {
  xmlDocPtr d = xml_parse(&r->resp);
  xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
  int is = root && !strcmp((const char *)root->name, "Error");
  if (is) {
    xml_text(root, "Code", r->code, sizeof r->code);
    xml_text(root, "Message", r->message, sizeof r->message);
  }
  if (d) xmlFreeDoc(d);
  return is;
}

static int retryable(long status, const char *code) {
  return status >= 500 || status == 429 || !strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
         !strcmp(code, "RequestTimeTooSkewed") || !strcmp(code, "InternalError");
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* The request's path in the bucket (raw, not encoded) and its Host. */
static void where(const s3 *st, const char *okey, char *path, size_t pn, char *host, size_t hn) {
  if (st->path_style) {
    snprintf(path, pn, "/%s%s%s", st->bucket, okey ? "/" : "", okey ? okey : "");
    snprintf(host, hn, "%s", st->host);
  } else {
    snprintf(path, pn, "/%s", okey ? okey : "");
    snprintf(host, hn, "%s.%s", st->bucket, st->host);
  }
}

/* Sends r (retrying as the header says) and fills its answer. 0 when S3
 * answered (any status: the caller reads r->status), KILN_EIO when it could
 * not be reached after every try. */
static int perform(s3 *st, s3_req *r, kiln_err *e) {
  char path[KS_KEY_MAX + 600], host[400];
  where(st, r->okey, path, sizeof path, host, sizeof host);
  size_t plen = ks_uri_encode(path, 1, NULL, 0);
  char *qs = ks_sigv4_query(r->query, r->nq);
  size_t ulen = qs ? strlen(st->scheme) + strlen(host) + plen + strlen(qs) + 8 : 0;
  char *url = qs ? malloc(ulen) : NULL, *ep = qs ? malloc(plen + 1) : NULL;
  if (!url || !ep) { free(qs); free(url); free(ep); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  ks_uri_encode(path, 1, ep, plen + 1);
  snprintf(url, ulen, "%s://%s%s%s%s", st->scheme, host, ep, *qs ? "?" : "", qs);
  free(ep);
  free(qs);
  char phash[65];
  kiln_sha256_hex(r->body ? r->body : "", r->body ? r->blen : 0, phash);
  int rc = KILN_EIO;
  char why[CURL_ERROR_SIZE + 64] = "";
  for (int attempt = 0; attempt < st->tries; attempt++) {
    if (attempt) {
      int base = st->backoff_ms << (attempt - 1 < 6 ? attempt - 1 : 6);
      if (base > 5000) base = 5000;
      unsigned rnd = 0;
      RAND_bytes((unsigned char *)&rnd, sizeof rnd);
      sleep_ms(base / 2 + (int)(rnd % (unsigned)(base / 2 + 1)));   /* half fixed, half jitter */
    }
    char date[17];
    ks_sigv4_date((int64_t)time(NULL), date);
    ks_kv h[24];
    int nh = 0;
    h[nh++] = (ks_kv){"host", host};
    h[nh++] = (ks_kv){"x-amz-content-sha256", phash};
    h[nh++] = (ks_kv){"x-amz-date", date};
    if (st->token) h[nh++] = (ks_kv){"x-amz-security-token", st->token};
    for (int i = 0; i < r->nh && nh < 24; i++) h[nh++] = r->hdr[i];
    ks_sigv4_key key = {st->access, st->secret, st->token, st->region, "s3", 1};
    ks_sigv4_req sr = {r->method, path, r->query, r->nq, h, nh, phash, date};
    ks_sigv4_out so;
    if ((rc = ks_sigv4_sign(&key, &sr, &so, e)) < 0) break;
    struct curl_slist *hl = NULL;
    int ok = 1;
    char line[4096];
    for (int i = 0; i < nh && ok; i++) {
      snprintf(line, sizeof line, "%s: %s", h[i].k, h[i].v);
      struct curl_slist *t = curl_slist_append(hl, line);
      if (t) hl = t; else ok = 0;
    }
    snprintf(line, sizeof line, "Authorization: %s", so.authorization);
    ks_sigv4_out_release(&so);
    struct curl_slist *t = ok ? curl_slist_append(hl, line) : NULL;
    OPENSSL_cleanse(line, sizeof line);
    if (t) hl = t; else ok = 0;
    if (ok && (t = curl_slist_append(hl, "Expect:"))) hl = t; else ok = 0;
    int has_ct = 0;
    for (int i = 0; i < r->nh; i++) if (!strcasecmp(r->hdr[i].k, "content-type")) has_ct = 1;
    if (ok && !has_ct && (t = curl_slist_append(hl, "Content-Type:"))) hl = t; else if (!has_ct) ok = 0;
    CURL *cu = ok ? curl_easy_init() : NULL;
    if (!cu) {
      curl_slist_free_all(hl);
      rc = kiln_fail(e, KILN_ENOMEM, "out of memory");
      break;
    }
    free(r->resp.p);
    memset(&r->resp, 0, sizeof r->resp);
    r->status = 0;
    r->code[0] = r->message[0] = r->etag[0] = r->lastmod[0] = 0;
    r->clen = -1;
    r->sink_n = 0;
    r->overflow = 0;
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(cu, CURLOPT_SHARE, st->sh);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(cu, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* a stalled transfer: nothing for 60 s */
    curl_easy_setopt(cu, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!strcmp(r->method, "HEAD")) curl_easy_setopt(cu, CURLOPT_NOBODY, 1L);
    else curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body || !strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
      curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->blen : 0));
      curl_easy_setopt(cu, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    }
    CURLcode cc = curl_easy_perform(cu);
    long status = 0;
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(cu);
    curl_slist_free_all(hl);
    if (r->resp.oom) { rc = kiln_fail(e, KILN_ENOMEM, "out of memory"); break; }
    if (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && r->overflow)) {
      r->status = status;
      if (status / 100 != 2) parse_error(r);
      if (r->overflow) {
        rc = kiln_fail(e, KILN_EIO, "S3 sent more than was asked for (%s of '%s')", r->method, KILN_CLIP(r->okey ? r->okey : st->bucket, 80));
        break;
      }
      rc = 0;
      if (!retryable(status, r->code)) break;
      snprintf(why, sizeof why, "HTTP %ld %s", status, r->code);
      rc = KILN_EIO;
      continue;
    }
    snprintf(why, sizeof why, "%s", err[0] ? err : curl_easy_strerror(cc));
    rc = KILN_EIO;
  }
  free(url);
  if (rc == KILN_EIO && r->status)                 /* S3 answered, but only with errors worth retrying */
    return 0;
  if (rc == KILN_EIO)
    return kiln_fail(e, KILN_EIO, "cannot reach the S3 endpoint %s after %d tries: %s", st->endpoint, st->tries, why);
  return rc;
}

static void req_release(s3_req *r) { free(r->resp.p); r->resp.p = NULL; }

/* The bucket's key for kiln's key. */
static void okey_of(const s3 *st, const char *key, char *out, size_t n) {
  snprintf(out, n, "%s%s%s", st->prefix, st->prefix[0] ? "/" : "", key);
}

/* An answer that is not what the operation wanted, as a kiln error. */
static int s3_error(const s3 *st, const s3_req *r, const char *op, const char *key, kiln_err *e) {
  const char *k = KILN_CLIP(key ? key : "", 80);
  if (r->status == 404 && (!strcmp(r->code, "NoSuchBucket")))
    return kiln_fail(e, KILN_EIO, "the S3 bucket '%s' does not exist at %s", st->bucket, st->endpoint);
  if (r->status == 404) return kiln_fail(e, KILN_ENOENT, "no object '%s'", k);
  if (r->status == 403 || r->status == 401)
    return kiln_fail(e, KILN_EIO, "S3 refused to %s '%s' (%ld %s%s%s): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                     "AWS_SESSION_TOKEN, the region (%s) and the bucket's policy",
                     op, k, r->status, r->code[0] ? r->code : "Forbidden", r->message[0] ? ": " : "", r->message, st->region);
  return kiln_fail(e, KILN_EIO, "S3 could not %s '%s': HTTP %ld%s%s%s%s", op, k, r->status, r->code[0] ? " " : "", r->code,
                   r->message[0] ? ": " : "", r->message);
}

/* HEAD of an object: 0 and its size, mtime, ETag; ENOENT; or an error. */
static int head(s3 *st, const char *key, ks_stat *sst, char *etag, size_t en, kiln_err *e) {
  char ok[KS_KEY_MAX + 600];
  okey_of(st, key, ok, sizeof ok);
  s3_req r = {.method = "HEAD", .okey = ok};
  int rc = perform(st, &r, e);
  if (rc == 0 && r.status != 200) rc = s3_error(st, &r, "read", key, e);
  if (rc == 0) {
    if (sst) {
      sst->size = r.clen < 0 ? 0 : r.clen;
      time_t t = r.lastmod[0] ? curl_getdate(r.lastmod, NULL) : -1;
      sst->mtime = t < 0 ? 0 : (int64_t)t;
    }
    if (etag) snprintf(etag, en, "%s", r.etag);
  }
  req_release(&r);
  return rc;
}

/* ---- puts ---- */

typedef struct sput {
  struct ks_put base;
  char key[KS_KEY_MAX + 1], okey[KS_KEY_MAX + 600];
  char *data;
  size_t n;
  char upload[512];             /* a multipart upload's id, once one is started */
  int parts;
  char (*etags)[256];
  int etag_cap;
} sput;

static int s_put_begin(ks_store *s, const char *key, ks_put **out, kiln_err *e) {
  s3 *st = s->impl;
  sput *p = calloc(1, sizeof *p);
  if (p) p->data = malloc(st->part);
  if (!p || !p->data) { if (p) free(p); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  p->base.s = s;
  snprintf(p->key, sizeof p->key, "%s", key);
  okey_of(st, key, p->okey, sizeof p->okey);
  *out = &p->base;
  return 0;
}

/* Starts p's multipart upload unless it has one (what: "start an upload of", for a message). */
static int start_upload(sput *p, const char *what, kiln_err *e) {
  if (p->upload[0]) return 0;
  s3 *st = p->base.s->impl;
  ks_kv q[] = {{"uploads", ""}};
  s3_req r = {.method = "POST", .okey = p->okey, .query = q, .nq = 1};
  int rc = perform(st, &r, e);
  if (rc == 0 && r.status != 200) rc = s3_error(st, &r, what, p->key, e);
  if (rc == 0) {
    xmlDocPtr d = xml_parse(&r.resp);
    xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
    if (!root || xml_text(root, "UploadId", p->upload, sizeof p->upload) < 0 || !p->upload[0])
      rc = kiln_fail(e, KILN_EIO, "S3 answered '%s %s' without an UploadId", what, KILN_CLIP(p->key, 80));
    if (d) xmlFreeDoc(d);
  }
  req_release(&r);
  return rc;
}

/* Room in p->etags for the next part's ETag. */
static int etag_slot(sput *p, kiln_err *e) {
  if (p->parts < p->etag_cap) return 0;
  int cap = p->etag_cap ? 2 * p->etag_cap : 16;
  void *t = realloc(p->etags, (size_t)cap * sizeof *p->etags);
  if (!t) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  p->etags = t;
  p->etag_cap = cap;
  return 0;
}

/* Uploads p->data[0..n) as the next part (starting the upload first when it is the first). */
static int put_part(sput *p, kiln_err *e) {
  s3 *st = p->base.s->impl;
  int rc = 0;
  if ((rc = start_upload(p, "start an upload of", e)) < 0 || (rc = etag_slot(p, e)) < 0) return rc;
  if (p->parts == 10000) return kiln_fail(e, KILN_ETOOBIG, "object '%s' is over 10000 parts of %zu bytes", KILN_CLIP(p->key, 80), st->part);
  char num[16];
  snprintf(num, sizeof num, "%d", p->parts + 1);
  ks_kv q[] = {{"partNumber", num}, {"uploadId", p->upload}};
  s3_req r = {.method = "PUT", .okey = p->okey, .query = q, .nq = 2, .body = p->data, .blen = p->n};
  rc = perform(st, &r, e);
  if (rc == 0 && r.status != 200) rc = s3_error(st, &r, "upload a part of", p->key, e);
  if (rc == 0 && !r.etag[0]) rc = kiln_fail(e, KILN_EIO, "S3 stored a part of '%s' without an ETag", KILN_CLIP(p->key, 80));
  if (rc == 0) {
    snprintf(p->etags[p->parts], sizeof p->etags[0], "%s", r.etag);
    p->parts++;
    p->n = 0;
  }
  req_release(&r);
  return rc;
}

static int s_put_write(ks_put *bp, const void *b, size_t n, kiln_err *e) {
  sput *p = (sput *)bp;
  s3 *st = bp->s->impl;
  const char *c = b;
  while (n > 0) {
    size_t k = st->part - p->n < n ? st->part - p->n : n;
    memcpy(p->data + p->n, c, k);
    p->n += k;
    c += k;
    n -= k;
    if (p->n == st->part) {
      int rc = put_part(p, e);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

static void put_free(sput *p) {
  free(p->data);
  free(p->etags);
  free(p);
}

static void s_put_abort(ks_put *bp) {
  sput *p = (sput *)bp;
  if (p->upload[0]) {
    ks_kv q[] = {{"uploadId", p->upload}};
    s3_req r = {.method = "DELETE", .okey = p->okey, .query = q, .nq = 1};
    kiln_err ignore;
    perform(bp->s->impl, &r, &ignore);             /* a bucket lifecycle rule removes what this leaves */
    req_release(&r);
  }
  put_free(p);
}

static int s_put_commit(ks_put *bp, kiln_err *e) {
  sput *p = (sput *)bp;
  s3 *st = bp->s->impl;
  int rc = 0;
  if (!p->upload[0]) {                              /* one part: one PutObject */
    s3_req r = {.method = "PUT", .okey = p->okey, .body = p->data, .blen = p->n};
    rc = perform(st, &r, e);
    if (rc == 0 && r.status != 200) rc = s3_error(st, &r, "store", p->key, e);
    req_release(&r);
    put_free(p);
    return rc;
  }
  if (p->n > 0) rc = put_part(p, e);
  kbuf x = {0};
  const char *head_ = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  kbuf_add(&x, head_, strlen(head_));
  for (int i = 0; rc == 0 && i < p->parts; i++) {
    char part[400];
    const char *t = p->etags[i];
    char esc[300];
    size_t k = 0;
    for (; *t && k + 7 < sizeof esc; t++) {       /* an ETag is hex in quotes; escape whatever else it holds */
      if (*t == '&') { memcpy(esc + k, "&amp;", 5); k += 5; }
      else if (*t == '<') { memcpy(esc + k, "&lt;", 4); k += 4; }
      else if (*t == '>') { memcpy(esc + k, "&gt;", 4); k += 4; }
      else esc[k++] = *t;
    }
    esc[k] = 0;
    int m = snprintf(part, sizeof part, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1, esc);
    kbuf_add(&x, part, (size_t)m);
  }
  kbuf_add(&x, "</CompleteMultipartUpload>", 26);
  if (rc == 0 && x.oom) rc = kiln_fail(e, KILN_ENOMEM, "out of memory");
  if (rc == 0) {
    ks_kv q[] = {{"uploadId", p->upload}};
    ks_kv h[] = {{"content-type", "application/xml"}};
    s3_req r = {.method = "POST", .okey = p->okey, .query = q, .nq = 1, .hdr = h, .nh = 1, .body = x.p, .blen = x.n};
    rc = perform(st, &r, e);
    /* S3 may answer 200 and put its error in the body */
    if (rc == 0 && (r.status != 200 || parse_error(&r))) rc = s3_error(st, &r, "complete the upload of", p->key, e);
    req_release(&r);
  }
  free(x.p);
  if (rc < 0) { s_put_abort(bp); return rc; }
  put_free(p);
  return 0;
}

/* ---- gets ---- */

typedef struct sget {
  struct ks_get base;
  char key[KS_KEY_MAX + 1], okey[KS_KEY_MAX + 600];
  char etag[256];
  int64_t pos, end;             /* bytes [pos, end) still to read */
  char *data;
  size_t have, at, block;
} sget;

static int s_get_open(ks_store *s, const char *key, int64_t off, int64_t len, ks_get **out, kiln_err *e) {
  s3 *st = s->impl;
  ks_stat sst;
  char etag[256];
  int rc = head(st, key, &sst, etag, sizeof etag, e);
  if (rc < 0) return rc;
  if (off > sst.size || (off == sst.size && sst.size > 0))
    return kiln_fail(e, KILN_EINVAL, "range starts at byte %lld but object '%s' has %lld bytes", (long long)off, KILN_CLIP(key, 80),
                     (long long)sst.size);
  sget *g = calloc(1, sizeof *g);
  if (!g) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  g->base.s = s;
  snprintf(g->key, sizeof g->key, "%s", key);
  okey_of(st, key, g->okey, sizeof g->okey);
  snprintf(g->etag, sizeof g->etag, "%s", etag);
  g->pos = off;
  int64_t avail = sst.size - off;
  g->end = off + (len < 0 || len > avail ? avail : len);
  g->block = 256 << 10;                            /* the first block small (time to the first byte), then doubling */
  *out = &g->base;
  return 0;
}

static ssize_t s_get_read(ks_get *bg, void *b, size_t n, kiln_err *e) {
  sget *g = (sget *)bg;
  s3 *st = bg->s->impl;
  if (g->at == g->have) {
    if (g->pos >= g->end) return 0;
    size_t want = g->end - g->pos < (int64_t)g->block ? (size_t)(g->end - g->pos) : g->block;
    if (!g->data) g->data = malloc(st->part);
    if (!g->data) return kiln_fail(e, KILN_ENOMEM, "out of memory");
    char range[64];
    snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)g->pos, (long long)(g->pos + (int64_t)want - 1));
    ks_kv h[2] = {{"range", range}, {"if-match", g->etag}};
    s3_req r = {.method = "GET", .okey = g->okey, .hdr = h, .nh = g->etag[0] ? 2 : 1, .sink = g->data, .sink_cap = want};
    int rc = perform(st, &r, e);
    if (rc == 0 && r.status == 412)
      rc = kiln_fail(e, KILN_EIO, "object '%s' was replaced while it was read; read it again", KILN_CLIP(g->key, 80));
    else if (rc == 0 && r.status != 206 && r.status != 200) rc = s3_error(st, &r, "read", g->key, e);
    else if (rc == 0 && r.sink_n != want)
      rc = kiln_fail(e, KILN_EIO, "S3 sent %zu of the %zu bytes asked for of '%s'", r.sink_n, want, KILN_CLIP(g->key, 80));
    req_release(&r);
    if (rc < 0) return rc;
    g->have = want;
    g->at = 0;
    g->pos += (int64_t)want;
    if (g->block < st->part) g->block = 2 * g->block < st->part ? 2 * g->block : st->part;
  }
  size_t k = g->have - g->at < n ? g->have - g->at : n;
  memcpy(b, g->data + g->at, k);
  g->at += k;
  return (ssize_t)k;
}

static void s_get_close(ks_get *bg) {
  sget *g = (sget *)bg;
  free(g->data);
  free(g);
}

/* ---- the rest ---- */

static int s_stat(ks_store *s, const char *key, ks_stat *sst, kiln_err *e) { return head(s->impl, key, sst, NULL, 0, e); }

static int s_version(ks_store *s, const char *key, char *tag, size_t n, ks_stat *sst, kiln_err *e) {
  return head(s->impl, key, sst, tag, n, e);
}

static int s_del(ks_store *s, const char *key, kiln_err *e) {
  s3 *st = s->impl;
  int rc = head(st, key, NULL, NULL, 0, e);        /* S3 deletes a missing key without a word; kiln says so */
  if (rc < 0) return rc;
  char ok[KS_KEY_MAX + 600];
  okey_of(st, key, ok, sizeof ok);
  s3_req r = {.method = "DELETE", .okey = ok};
  rc = perform(st, &r, e);
  if (rc == 0 && r.status != 204 && r.status != 200) rc = s3_error(st, &r, "delete", key, e);
  req_release(&r);
  return rc;
}

/* The x-amz-copy-source of object okey: /bucket/key, encoded. */
static char *copy_source(const s3 *st, const char *okey) {
  char raw[KS_KEY_MAX + 700];
  snprintf(raw, sizeof raw, "/%s/%s", st->bucket, okey);
  size_t n = ks_uri_encode(raw, 1, NULL, 0);
  char *out = malloc(n + 1);
  if (out) ks_uri_encode(raw, 1, out, n + 1);
  return out;
}

/* A copy of more than copy_max bytes: a multipart upload whose parts are UploadPartCopy. */
static int copy_multipart(ks_store *s, const char *to, const char *src, int64_t size, kiln_err *e) {
  s3 *st = s->impl;
  ks_put *bp = NULL;
  int rc = s_put_begin(s, to, &bp, e);
  if (rc < 0) return rc;
  sput *p = (sput *)bp;
  p->n = 0;
  int64_t step = st->copy_max;
  for (int64_t at = 0; rc == 0 && at < size; at += step) {
    if ((rc = start_upload(p, "start a copy to", e)) < 0 || (rc = etag_slot(p, e)) < 0) break;
    char num[16], range[80];
    snprintf(num, sizeof num, "%d", p->parts + 1);
    int64_t last = at + step < size ? at + step - 1 : size - 1;
    snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)at, (long long)last);
    ks_kv q[] = {{"partNumber", num}, {"uploadId", p->upload}};
    ks_kv h[] = {{"x-amz-copy-source", src}, {"x-amz-copy-source-range", range}};
    s3_req r = {.method = "PUT", .okey = p->okey, .query = q, .nq = 2, .hdr = h, .nh = 2};
    rc = perform(st, &r, e);
    if (rc == 0 && (r.status != 200 || parse_error(&r))) rc = s3_error(st, &r, "copy a part to", to, e);
    if (rc == 0) {
      xmlDocPtr d = xml_parse(&r.resp);
      if (!d || xml_text(xmlDocGetRootElement(d), "ETag", p->etags[p->parts], sizeof p->etags[0]) < 0)
        rc = kiln_fail(e, KILN_EIO, "S3 copied a part to '%s' without an ETag", KILN_CLIP(to, 80));
      else p->parts++;
      if (d) xmlFreeDoc(d);
    }
    req_release(&r);
  }
  if (rc < 0) { s_put_abort(bp); return rc; }
  return s_put_commit(bp, e);                      /* no bytes buffered: it completes the upload */
}

static int s_rename(ks_store *s, const char *from, const char *to, kiln_err *e) {
  s3 *st = s->impl;
  ks_stat sst;
  int rc = head(st, from, &sst, NULL, 0, e);
  if (rc < 0) return rc;
  char fk[KS_KEY_MAX + 600], tk[KS_KEY_MAX + 600];
  okey_of(st, from, fk, sizeof fk);
  okey_of(st, to, tk, sizeof tk);
  char *src = copy_source(st, fk);
  if (!src) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  if (sst.size > st->copy_max) rc = copy_multipart(s, to, src, sst.size, e);
  else {
    ks_kv h[] = {{"x-amz-copy-source", src}};
    s3_req r = {.method = "PUT", .okey = tk, .hdr = h, .nh = 1};
    rc = perform(st, &r, e);
    if (rc == 0 && (r.status != 200 || parse_error(&r))) rc = s3_error(st, &r, "copy to", to, e);
    req_release(&r);
  }
  free(src);
  if (rc < 0) return rc;
  s3_req d = {.method = "DELETE", .okey = fk};
  rc = perform(st, &d, e);
  if (rc == 0 && d.status != 204 && d.status != 200) rc = s3_error(st, &d, "delete", from, e);
  req_release(&d);
  return rc;
}

/* "2024-01-31T12:34:56.000Z" as unix seconds (0 when it is not one). */
static int64_t iso_time(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm);
}

static int s_list(ks_store *s, const char *prefix, ks_list_cb cb, void *arg, kiln_err *e) {
  s3 *st = s->impl;
  char full[KS_KEY_MAX + 600], token[1024] = "";
  okey_of(st, prefix, full, sizeof full);
  if (!prefix[0] && st->prefix[0]) snprintf(full, sizeof full, "%s/", st->prefix);
  size_t strip = st->prefix[0] ? strlen(st->prefix) + 1 : 0;
  int rc = 0, stop = 0;
  do {
    ks_kv q[3] = {{"list-type", "2"}, {"prefix", full}, {"continuation-token", token}};
    s3_req r = {.method = "GET", .query = q, .nq = token[0] ? 3 : 2};
    rc = perform(st, &r, e);
    if (rc == 0 && r.status != 200) rc = s3_error(st, &r, "list", prefix, e);
    xmlDocPtr d = rc == 0 ? xml_parse(&r.resp) : NULL;
    xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
    if (rc == 0 && !root) rc = kiln_fail(e, KILN_EIO, "S3 answered a listing of '%s' with no XML", KILN_CLIP(prefix, 80));
    token[0] = 0;
    for (xmlNodePtr c = root ? root->children : NULL; rc == 0 && !stop && c; c = c->next) {
      if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "Contents")) continue;
      char key[KS_KEY_MAX + 600] = "", size[32] = "0", mod[64] = "";
      xml_text(c, "Key", key, sizeof key);
      xml_text(c, "Size", size, sizeof size);
      xml_text(c, "LastModified", mod, sizeof mod);
      if (strlen(key) <= strip) continue;
      ks_stat kst = {strtoll(size, NULL, 10), iso_time(mod)};
      if (cb(arg, key + strip, &kst)) stop = 1;
    }
    char trunc[16] = "";
    if (rc == 0 && root && xml_text(root, "IsTruncated", trunc, sizeof trunc) == 0 && !strcmp(trunc, "true"))
      xml_text(root, "NextContinuationToken", token, sizeof token);
    if (d) xmlFreeDoc(d);
    req_release(&r);
  } while (rc == 0 && !stop && token[0]);
  return rc;
}

static int s_scratch_dir(ks_store *s, char *out, size_t n, kiln_err *e) {
  s3 *st = s->impl;
  return ks_scratch_get(&st->scratch, st->tmp, out, n, e);
}

static int s_sweep(ks_store *s) { return ks_tmp_sweep(((s3 *)s->impl)->tmp); }

static const char *s_cache_dir(ks_store *s, int64_t *max) {
  s3 *st = s->impl;
  *max = st->cache_max;
  return st->objects;
}

static int s_presign(ks_store *s, const char *method, const char *key, int64_t expires, char *out, size_t n, kiln_err *e) {
  s3 *st = s->impl;
  int64_t ttl = expires - (int64_t)time(NULL);
  if (ttl < 1) ttl = 1;
  if (ttl > 604800) ttl = 604800;                  /* SigV4's limit: 7 days */
  char ok[KS_KEY_MAX + 600], path[KS_KEY_MAX + 700], host[400], date[17];
  okey_of(st, key, ok, sizeof ok);
  where(st, ok, path, sizeof path, host, sizeof host);
  ks_sigv4_date((int64_t)time(NULL), date);
  ks_sigv4_key k = {st->access, st->secret, st->token, st->region, "s3", 1};
  char *qs = NULL;
  int rc = ks_sigv4_presign(&k, method, host, path, NULL, 0, ttl, date, &qs, e);
  if (rc < 0) return rc;
  size_t plen = ks_uri_encode(path, 1, NULL, 0);
  char *ep = malloc(plen + 1);
  if (!ep) { free(qs); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  ks_uri_encode(path, 1, ep, plen + 1);
  if ((size_t)snprintf(out, n, "%s://%s%s?%s", st->scheme, host, ep, qs) >= n)
    rc = kiln_fail(e, KILN_EINVAL, "presigned URL does not fit in %zu bytes", n);
  free(ep);
  free(qs);
  return rc;
}

static void s_close(ks_store *s) {
  s3 *st = s->impl;
  ks_scratch_release(&st->scratch);
  curl_share_cleanup(st->sh);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&st->locks[i]);
  if (st->secret) OPENSSL_cleanse(st->secret, strlen(st->secret));
  if (st->token) OPENSSL_cleanse(st->token, strlen(st->token));
  free(st->access);
  free(st->secret);
  free(st->token);
  free(st);
}

static const ks_backend s3_backend = {
    .name = "s3", .put_begin = s_put_begin, .put_write = s_put_write, .put_commit = s_put_commit, .put_abort = s_put_abort,
    .get_open = s_get_open, .get_read = s_get_read, .get_close = s_get_close, .stat = s_stat, .del = s_del,
    .rename = s_rename, .list = s_list, .close = s_close, .scratch_dir = s_scratch_dir, .sweep = s_sweep,
    .presign = s_presign, .cache_dir = s_cache_dir, .version = s_version};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int curl_ok;
static void init_once(void) {
  curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  xmlInitParser();
}

/* s3://BUCKET[/PREFIX] into st; 0 or EINVAL. */
static int parse_url(s3 *st, const char *url, kiln_err *e) {
  const char *p = url + 5;
  const char *slash = strchr(p, '/');
  size_t bl = slash ? (size_t)(slash - p) : strlen(p);
  if (bl < 3 || bl > 63) return kiln_fail(e, KILN_EINVAL, "store URL '%s': a bucket name has 3 to 63 characters", KILN_CLIP(url, 120));
  for (size_t i = 0; i < bl; i++) {
    char c = p[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return kiln_fail(e, KILN_EINVAL, "store URL '%s': a bucket name is lower-case letters, digits, '-' and '.'", KILN_CLIP(url, 120));
  }
  memcpy(st->bucket, p, bl);
  st->bucket[bl] = 0;
  const char *pre = slash ? slash + 1 : "";
  size_t pl = strlen(pre);
  while (pl && pre[pl - 1] == '/') pl--;
  if (pl >= 512) return kiln_fail(e, KILN_EINVAL, "store URL '%s': the prefix is over 511 bytes", KILN_CLIP(url, 120));
  memcpy(st->prefix, pre, pl);
  st->prefix[pl] = 0;
  if (pl && ks_key_check(st->prefix, e) < 0) {
    kiln_err_prefix(e, "store URL '%s': the prefix", KILN_CLIP(url, 120));
    return KILN_EINVAL;
  }
  return 0;
}

int ks_open_s3(ks_store **out, const char *url, const ks_options *o, kiln_err *e) {
  pthread_once(&once, init_once);
  if (!curl_ok) return kiln_fail(e, KILN_EINTERNAL, "libcurl cannot start");
  const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY"), *tk = getenv("AWS_SESSION_TOKEN");
  if (!ak || !*ak || !sk || !*sk)
    return kiln_fail(e, KILN_EINVAL, "the store '%s' needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                     "AWS_SESSION_TOKEN for temporary ones) in the environment", KILN_CLIP(url, 120));
  if (!o || !o->cache_dir || !*o->cache_dir) return kiln_fail(e, KILN_EINVAL, "the S3 store needs a local cache folder");
  s3 *st = calloc(1, sizeof *st);
  ks_store *s = calloc(1, sizeof *s);
  if (!st || !s) { free(st); free(s); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  int rc = parse_url(st, url, e);
  snprintf(st->region, sizeof st->region, "%s", o->region && *o->region ? o->region : "us-east-1");
  const char *ep = o->endpoint && *o->endpoint ? o->endpoint : NULL;
  char aws[128];
  if (!ep) { snprintf(aws, sizeof aws, "https://s3.%s.amazonaws.com", st->region); ep = aws; }
  snprintf(st->endpoint, sizeof st->endpoint, "%s", ep);
  if (rc == 0) {
    const char *h = strstr(ep, "://");
    if (!h || (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)))
      rc = kiln_fail(e, KILN_EINVAL, "store_endpoint '%s' must start with http:// or https://", KILN_CLIP(ep, 120));
    else {
      snprintf(st->scheme, sizeof st->scheme, "%.*s", (int)(h - ep), ep);
      snprintf(st->host, sizeof st->host, "%s", h + 3);
      size_t hl = strlen(st->host);
      while (hl && st->host[hl - 1] == '/') st->host[--hl] = 0;
      if (!hl || strchr(st->host, '/') || strchr(st->host, '?') || strchr(st->host, '@'))
        rc = kiln_fail(e, KILN_EINVAL, "store_endpoint '%s' must be scheme://host[:port], with no path, query or user",
                       KILN_CLIP(ep, 120));
    }
  }
  /* path-style for a custom endpoint (MinIO, moto, R2 with a path), virtual-host on AWS's own, unless told */
  st->path_style = o->endpoint && *o->endpoint;
  if (o->addressing && !strcmp(o->addressing, "virtual")) st->path_style = 0;
  else if (o->addressing && !strcmp(o->addressing, "path")) st->path_style = 1;
  else if (o->addressing && *o->addressing && rc == 0)
    rc = kiln_fail(e, KILN_EINVAL, "store_addressing must be \"path\" or \"virtual\", not '%s'", KILN_CLIP(o->addressing, 40));
  if (rc == 0 && !st->path_style && strchr(st->bucket, '.') && !strcmp(st->scheme, "https"))
    st->path_style = 1;                             /* a dotted bucket name breaks the TLS wildcard of virtual hosts */
  st->part = o->part_size ? o->part_size : 8u << 20;
  if (rc == 0 && (st->part < (5u << 20) || st->part > (1u << 30)))
    rc = kiln_fail(e, KILN_EINVAL, "the S3 part size must be 5 MiB to 1 GiB, not %zu bytes", st->part);
  st->copy_max = o->copy_max > 0 ? o->copy_max : 5LL << 30;
  st->tries = o->tries > 0 ? o->tries : 6;
  st->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 100;
  st->cache_max = o->cache_max_bytes > 0 ? o->cache_max_bytes : 10LL << 30;
  snprintf(st->cache, sizeof st->cache, "%s", o->cache_dir);
  snprintf(st->objects, sizeof st->objects, "%s/objects", st->cache);
  snprintf(st->tmp, sizeof st->tmp, "%s/tmp", st->cache);
  char mk[1200];
  snprintf(mk, sizeof mk, "%s/x", st->objects);
  if (rc == 0) rc = kiln_mkdirs(mk, 0700, e);
  snprintf(mk, sizeof mk, "%s/x", st->tmp);
  if (rc == 0) rc = kiln_mkdirs(mk, 0700, e);
  st->access = strdup(ak);
  st->secret = strdup(sk);
  st->token = tk && *tk ? strdup(tk) : NULL;
  if (rc == 0 && (!st->access || !st->secret || (tk && *tk && !st->token))) rc = kiln_fail(e, KILN_ENOMEM, "out of memory");
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&st->locks[i], NULL);
  st->sh = curl_share_init();
  if (rc == 0 && !st->sh) rc = kiln_fail(e, KILN_ENOMEM, "libcurl cannot share connections");
  if (rc == 0) {
    curl_share_setopt(st->sh, CURLSHOPT_LOCKFUNC, lock_cb);
    curl_share_setopt(st->sh, CURLSHOPT_UNLOCKFUNC, unlock_cb);
    curl_share_setopt(st->sh, CURLSHOPT_USERDATA, st);
    curl_share_setopt(st->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(st->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(st->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  s->be = &s3_backend;
  s->impl = st;
  if (rc == 0) {                                    /* the bucket is there and these credentials may use it */
    s3_req r = {.method = "HEAD"};
    rc = perform(st, &r, e);
    if (rc == 0 && r.status == 404)
      rc = kiln_fail(e, KILN_EIO, "the S3 bucket '%s' does not exist at %s", st->bucket, st->endpoint);
    else if (rc == 0 && r.status != 200) rc = s3_error(st, &r, "use the bucket", st->bucket, e);
    req_release(&r);
  }
  if (rc < 0) { s_close(s); free(s); return rc; }
  ks_tmp_sweep(st->tmp);
  *out = s;
  return 0;
}
