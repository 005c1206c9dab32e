/* sigv4.c — AWS Signature Version 4 (sigv4.h). The canonical request is
 *
 *   METHOD \n PATH \n QUERY \n (name:value \n)* \n SIGNED;HEADERS \n PAYLOAD-HASH
 *
 * with names lower-cased and sorted, values trimmed with inner runs of
 * spaces folded to one, repeated names joined by ','; the query sorted by
 * encoded name then value. The string to sign is the algorithm, the date,
 * the scope (date/region/service/aws4_request) and the request's SHA-256;
 * the key is HMAC-SHA256 chained over "AWS4"+secret, date, region,
 * service, "aws4_request". Buffers grow (util/buf.h); every allocation is
 * checked. */
#include "store/sigv4.h"
#include "util/buf.h"
#include "util/fs.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void kb_enc(kbuf *b, const char *s, int keep_slash) {
  size_t need = ks_uri_encode(s, keep_slash, NULL, 0);
  char *t = malloc(need + 1);
  if (!t) { b->oom = 1; return; }
  ks_uri_encode(s, keep_slash, t, need + 1);
  kbuf_add(b, t, need);
  free(t);
}

size_t ks_uri_encode(const char *s, int keep_slash, char *out, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned c = *p;
    int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
               c == '_' || c == '~' || (keep_slash && c == '/');
    if (keep) {
      if (k + 1 < n) out[k] = (char)c;
      k++;
    } else {
      if (k + 3 < n) { out[k] = '%'; out[k + 1] = hex[c >> 4]; out[k + 2] = hex[c & 15]; }
      k += 3;
    }
  }
  if (n) out[k < n ? k : n - 1] = 0;
  return k;
}

void ks_sigv4_date(int64_t t, char out[17]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int date_ok(const char *d) {
  if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z') return 0;
  for (int i = 0; i < 15; i++)
    if (i != 8 && (d[i] < '0' || d[i] > '9')) return 0;
  return 1;
}

/* RFC 3986 section 5.2.4 on a path, plus runs of '/' folded to one (what
 * AWS's non-S3 services sign). A path that ends in a folder keeps its '/'. */
static char *normalise_path(const char *in) {
  size_t n = strlen(in);
  char **seg = calloc(n + 1, sizeof *seg);
  char *copy = strdup(in);
  if (!seg || !copy) { free(seg); free(copy); return NULL; }
  size_t ns = 0;
  int trailing = 0;
  for (char *save = NULL, *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
    trailing = 0;
    if (!strcmp(t, ".")) { trailing = 1; continue; }
    if (!strcmp(t, "..")) { if (ns) ns--; trailing = 1; continue; }
    seg[ns++] = t;
  }
  if (n && in[n - 1] == '/') trailing = 1;
  kbuf b = {0};
  for (size_t i = 0; i < ns; i++) { kbuf_str(&b, "/"); kbuf_str(&b, seg[i]); }
  if (ns == 0 || trailing) kbuf_str(&b, "/");
  free(seg);
  free(copy);
  if (b.oom) { free(b.p); return NULL; }
  return b.p;
}

typedef struct qpair { char *k, *v; } qpair;
static int cmp_q(const void *a, const void *b) {
  const qpair *x = a, *y = b;
  int c = strcmp(x->k, y->k);
  return c ? c : strcmp(x->v, y->v);
}

static char *enc_dup(const char *s) {
  size_t need = ks_uri_encode(s ? s : "", 0, NULL, 0);
  char *t = malloc(need + 1);
  if (t) ks_uri_encode(s ? s : "", 0, t, need + 1);
  return t;
}

/* The canonical query string of raw pairs. */
static void canonical_query(kbuf *b, const ks_kv *q, int n) {
  if (n <= 0) return;
  qpair *p = calloc((size_t)n, sizeof *p);
  if (!p) { b->oom = 1; return; }
  int ok = 1;
  for (int i = 0; i < n; i++) {
    p[i].k = enc_dup(q[i].k);
    p[i].v = enc_dup(q[i].v);
    if (!p[i].k || !p[i].v) ok = 0;
  }
  if (ok) {
    qsort(p, (size_t)n, sizeof *p, cmp_q);
    for (int i = 0; i < n; i++) {
      if (i) kbuf_str(b, "&");
      kbuf_str(b, p[i].k);
      kbuf_str(b, "=");
      kbuf_str(b, p[i].v);
    }
  } else b->oom = 1;
  for (int i = 0; i < n; i++) { free(p[i].k); free(p[i].v); }
  free(p);
}

typedef struct hdr { char *name; const char *value; int order; } hdr;
static int cmp_h(const void *a, const void *b) {
  const hdr *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : x->order - y->order;
}

/* A header value trimmed, inner runs of white space folded to one space. */
static void add_trimmed(kbuf *b, const char *v) {
  while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') v++;
  int space = 0;
  for (; *v; v++) {
    int ws = *v == ' ' || *v == '\t' || *v == '\n' || *v == '\r';
    if (ws) { space = 1; continue; }
    if (space) kbuf_add(b, " ", 1);
    space = 0;
    kbuf_add(b, v, 1);
  }
}

/* Canonical headers into b ("name:value\n" each) and the signed header list into sh. */
static int canonical_headers(kbuf *b, kbuf *sh, const ks_kv *h, int n, int *has_host) {
  hdr *a = calloc((size_t)(n > 0 ? n : 1), sizeof *a);
  if (!a) return -1;
  int ok = 1;
  for (int i = 0; i < n; i++) {
    a[i].name = strdup(h[i].k);
    a[i].value = h[i].v ? h[i].v : "";
    a[i].order = i;
    if (!a[i].name) { ok = 0; continue; }
    for (char *c = a[i].name; *c; c++) if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    if (!strcmp(a[i].name, "host")) *has_host = 1;
  }
  if (ok) {
    qsort(a, (size_t)n, sizeof *a, cmp_h);
    for (int i = 0; i < n; i++) {
      if (i && !strcmp(a[i].name, a[i - 1].name)) {   /* a repeated name: its values joined by ',' */
        kbuf_str(b, ",");
        add_trimmed(b, a[i].value);
        continue;
      }
      if (i) kbuf_str(b, "\n");
      kbuf_str(b, a[i].name);
      kbuf_str(b, ":");
      add_trimmed(b, a[i].value);
      if (sh->n) kbuf_str(sh, ";");
      kbuf_str(sh, a[i].name);
    }
    kbuf_str(b, "\n");
  }
  for (int i = 0; i < n; i++) free(a[i].name);
  free(a);
  return ok ? 0 : -1;
}

static int hmac(const void *k, size_t kn, const char *msg, unsigned char out[32]) {
  unsigned int len = 0;
  return HMAC(EVP_sha256(), k, (int)kn, (const unsigned char *)msg, strlen(msg), out, &len) && len == 32 ? 0 : -1;
}

/* The signature of sts under key for the date's day. */
static int signature(const ks_sigv4_key *key, const char *amz_date, const char *sts, char out[65]) {
  char day[9];
  memcpy(day, amz_date, 8);
  day[8] = 0;
  size_t sl = strlen(key->secret_key);
  char *k0 = malloc(sl + 5);
  if (!k0) return -1;
  memcpy(k0, "AWS4", 4);
  memcpy(k0 + 4, key->secret_key, sl + 1);
  unsigned char a[32], b[32];
  int r = hmac(k0, sl + 4, day, a);
  OPENSSL_cleanse(k0, sl + 4);
  free(k0);
  if (r == 0) r = hmac(a, 32, key->region, b);
  if (r == 0) r = hmac(b, 32, key->service, a);
  if (r == 0) r = hmac(a, 32, "aws4_request", b);
  if (r == 0) r = hmac(b, 32, sts, a);
  if (r == 0) kiln_hex(a, 32, out);
  OPENSSL_cleanse(b, sizeof b);
  return r;
}

/* The credential scope: "YYYYMMDD/region/service/aws4_request" of the request's date. */
static void scope(const ks_sigv4_key *key, const char *amz_date, char out[256]) {
  snprintf(out, 256, "%.8s/%s/%s/aws4_request", amz_date ? amz_date : "", key->region ? key->region : "",
           key->service ? key->service : "");
}

static void canonical_path(kbuf *b, const ks_sigv4_key *key, const char *path) {
  if (!path || !*path) path = "/";
  if (key->s3) { kb_enc(b, path, 1); return; }
  char *norm = normalise_path(path);
  if (!norm) { b->oom = 1; return; }
  size_t need = ks_uri_encode(norm, 1, NULL, 0);
  char *once = malloc(need + 1);
  if (once) {
    ks_uri_encode(norm, 1, once, need + 1);
    kb_enc(b, once, 1);                           /* other services: each segment encoded twice */
    free(once);
  } else b->oom = 1;
  free(norm);
}

int ks_sigv4_sign(const ks_sigv4_key *key, const ks_sigv4_req *req, ks_sigv4_out *out, kiln_err *e) {
  memset(out, 0, sizeof *out);
  if (!date_ok(req->amz_date))
    return kiln_fail(e, KILN_EINVAL, "SigV4: the request date '%s' is not YYYYMMDDTHHMMSSZ", req->amz_date ? req->amz_date : "");
  if (!key->access_key || !key->secret_key || !key->region || !key->service)
    return kiln_fail(e, KILN_EINVAL, "SigV4: an access key, secret key, region and service are all needed");
  kbuf c = {0}, sh = {0}, s = {0}, a = {0};
  int has_host = 0;
  char sc[256];
  scope(key, req->amz_date, sc);
  kbuf_str(&c, req->method);
  kbuf_str(&c, "\n");
  canonical_path(&c, key, req->path);
  kbuf_str(&c, "\n");
  canonical_query(&c, req->query, req->nquery);
  kbuf_str(&c, "\n");
  if (canonical_headers(&c, &sh, req->headers, req->nheaders, &has_host) < 0) c.oom = 1;
  kbuf_str(&c, "\n");
  kbuf_str(&c, sh.p ? sh.p : "");
  kbuf_str(&c, "\n");
  kbuf_str(&c, req->payload_hash ? req->payload_hash : "UNSIGNED-PAYLOAD");
  int r = 0;
  if (!has_host && !c.oom) r = kiln_fail(e, KILN_EINVAL, "SigV4: the request has no Host header to sign");
  if (r == 0 && !c.oom) {
    char h[65];
    kiln_sha256_hex(c.p, c.n, h);
    kbuf_str(&s, "AWS4-HMAC-SHA256\n");
    kbuf_str(&s, req->amz_date);
    kbuf_str(&s, "\n");
    kbuf_str(&s, sc);
    kbuf_str(&s, "\n");
    kbuf_str(&s, h);
  }
  if (r == 0 && !c.oom && !s.oom && signature(key, req->amz_date, s.p, out->signature) < 0)
    r = kiln_fail(e, KILN_EINTERNAL, "SigV4: HMAC-SHA256 failed");
  if (r == 0 && !c.oom && !s.oom) {
    kbuf_str(&a, "AWS4-HMAC-SHA256 Credential=");
    kbuf_str(&a, key->access_key);
    kbuf_str(&a, "/");
    kbuf_str(&a, sc);
    kbuf_str(&a, ", SignedHeaders=");
    kbuf_str(&a, sh.p ? sh.p : "");
    kbuf_str(&a, ", Signature=");
    kbuf_str(&a, out->signature);
  }
  free(sh.p);
  if (r == 0 && (c.oom || s.oom || a.oom || sh.oom)) r = kiln_fail(e, KILN_ENOMEM, "SigV4: out of memory");
  if (r < 0) {
    free(c.p);
    free(s.p);
    free(a.p);
    memset(out, 0, sizeof *out);
    return r;
  }
  out->creq = c.p;
  out->sts = s.p;
  out->authorization = a.p;
  return 0;
}

void ks_sigv4_out_release(ks_sigv4_out *out) {
  free(out->creq);
  free(out->sts);
  free(out->authorization);
  memset(out, 0, sizeof *out);
}

int ks_sigv4_presign(const ks_sigv4_key *key, const char *method, const char *host, const char *path, const ks_kv *query,
                     int nquery, int64_t expires_s, const char *amz_date, char **qs, kiln_err *e) {
  *qs = NULL;
  if (expires_s < 1 || expires_s > 604800)
    return kiln_fail(e, KILN_EINVAL, "SigV4: a presigned URL lasts 1 to 604800 s, not %lld", (long long)expires_s);
  if (!date_ok(amz_date)) return kiln_fail(e, KILN_EINVAL, "SigV4: the date '%s' is not YYYYMMDDTHHMMSSZ", amz_date ? amz_date : "");
  char cred[512], sc[256], exp[24];
  scope(key, amz_date, sc);
  snprintf(cred, sizeof cred, "%s/%s", key->access_key, sc);
  snprintf(exp, sizeof exp, "%lld", (long long)expires_s);
  int n = nquery + 6;
  ks_kv *q = calloc((size_t)n, sizeof *q);
  if (!q) return kiln_fail(e, KILN_ENOMEM, "SigV4: out of memory");
  int k = 0;
  for (int i = 0; i < nquery; i++) q[k++] = query[i];
  q[k++] = (ks_kv){"X-Amz-Algorithm", "AWS4-HMAC-SHA256"};
  q[k++] = (ks_kv){"X-Amz-Credential", cred};
  q[k++] = (ks_kv){"X-Amz-Date", amz_date};
  q[k++] = (ks_kv){"X-Amz-Expires", exp};
  if (key->token) q[k++] = (ks_kv){"X-Amz-Security-Token", key->token};
  q[k++] = (ks_kv){"X-Amz-SignedHeaders", "host"};
  ks_kv h = {"host", host};
  ks_sigv4_req req = {method, path, q, k, &h, 1, key->s3 ? "UNSIGNED-PAYLOAD" : NULL, amz_date};
  char empty[65];
  if (!key->s3) { kiln_sha256_hex("", 0, empty); req.payload_hash = empty; }
  ks_sigv4_out o;
  int r = ks_sigv4_sign(key, &req, &o, e);
  if (r == 0) {
    kbuf b = {0};
    canonical_query(&b, q, k);
    kbuf_str(&b, "&X-Amz-Signature=");
    kbuf_str(&b, o.signature);
    if (b.oom) { free(b.p); r = kiln_fail(e, KILN_ENOMEM, "SigV4: out of memory"); }
    else *qs = b.p;
    ks_sigv4_out_release(&o);
  }
  free(q);
  return r;
}

char *ks_sigv4_query(const ks_kv *q, int n) {
  kbuf b = {0};
  kbuf_str(&b, "");
  canonical_query(&b, q, n);
  if (b.oom) { free(b.p); return NULL; }
  return b.p;
}
