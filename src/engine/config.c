/* config.c — kiln's configuration: built-in defaults, overridden by a YAML
 * file ($KILN_HOME/config.yaml, or `--config FILE`), and the state files
 * under $KILN_HOME. Every key is checked: an unknown key or a value of the
 * wrong type is an error naming it (a typo must not be ignored silently).
 *
 *   listen: 127.0.0.1:8420          public_url: http://host:8420
 *   max_upload_bytes: 10737418240   inline_max_bytes: 33554432
 *   lease_s: 30                     retry_delay_s: 1      retry_max_delay_s: 60
 *   slots: {cpu: 8, gpu: 0}         budget_usd_month: 100
 *   webhook: {attempts: 8, delay_s: 1, block_private: false}
 *   http: {threads: 4, max_connections: 4096, max_connections_per_ip: 256,
 *          idle_timeout_s: 10, request_timeout_s: 120}
 *   prices: {cpu: 0.0000131, T4: 0.000164, ...}      (USD per second)
 *   limits: {max_pixels: 8192x8192, max_output_pixels: 8192x8192}   (per frame; 0: none)
 *   functions: {reframe: {max_workers: 2, timeout_s: 600, gpu: T4, memory_mb: 768,
 *                         max_pixels: ..., max_output_pixels: ..., ...}}
 */
#include "engine/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/home.h"
#include "util/json.h"
#include "util/pool.h"

int64_t ke_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct { const char *cls; double usd; } default_prices[] = {
    {"cpu", 0.0000131}, {"T4", 0.000164}, {"L4", 0.000222}, {"A10G", 0.000306}, {"A100", 0.000694}, {"H100", 0.001097}};

/* NVIDIA GPUs on this machine: /dev/nvidia0, /dev/nvidia1, ... */
static int count_gpus(void) {
  DIR *d = opendir("/dev");
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    const char *s = de->d_name;
    if (strncmp(s, "nvidia", 6) != 0 || !s[6]) continue;
    int digits = 1;
    for (const char *c = s + 6; *c; c++) digits &= *c >= '0' && *c <= '9';
    n += digits;
  }
  if (d) closedir(d);
  return n;
}

/* A number member in [lo, hi]; absent leaves *out. */
static int num(const json_t *o, const char *key, double lo, double hi, double *out, const char *where, kiln_err *e) {
  json_t *v = json_object_get(o, key);
  if (!v) return 0;
  if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi)
    return kiln_fail(e, KILN_EPARAM, "%s: '%s%s' must be a number from %g to %g", where, key, "", lo, hi);
  *out = json_number_value(v);
  return 0;
}

static int inum(const json_t *o, const char *key, double lo, double hi, int64_t *out, const char *where, kiln_err *e) {
  double d = (double)*out;
  int r = num(o, key, lo, hi, &d, where, e);
  *out = (int64_t)d;
  return r;
}

/* Fails on a key of o not in the NULL-terminated list. */
static int only(const json_t *o, const char *const *keys, const char *where, kiln_err *e) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    int ok = 0;
    for (int i = 0; keys[i] && !ok; i++) ok = !strcmp(keys[i], k);
    if (!ok) {
      char list[400] = "";
      for (int i = 0; keys[i]; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", keys[i]);
      }
      return kiln_fail(e, KILN_EPARAM, "%s: unknown key '%s' (known: %s)", where, k, list);
    }
  }
  return 0;
}

/* A pixel count member: a number, or "WxH"; absent leaves *out. */
static int pixels(const json_t *o, const char *key, int64_t *out, const char *where, kiln_err *e) {
  json_t *v = json_object_get(o, key);
  if (!v) return 0;
  int64_t n = json_is_integer(v) ? (int64_t)json_integer_value(v) : json_is_string(v) ? km_parse_pixels(json_string_value(v)) : -1;
  if (n < 0 || n > (1LL << 40))
    return kiln_fail(e, KILN_EPARAM, "%s: '%s' must be a pixel count per frame, a number or \"WxH\" (0: no limit)", where, key);
  *out = n;
  return 0;
}

static int fn_overrides(ke_fnconf *f, const json_t *o, const char *where, kiln_err *e) {
  static const char *const keys[] = {"gpu", "cpus", "memory_mb", "timeout_s", "retries", "idle_timeout_s",
                                     "min_workers", "max_workers", "concurrency", "max_chunks", "max_pixels",
                                     "max_output_pixels", NULL};
  if (!json_is_object(o)) return kiln_fail(e, KILN_EPARAM, "%s must be a mapping", where);
  int r = only(o, keys, where, e);
  kf_resources *res = &f->res;
  json_t *g = json_object_get(o, "gpu");
  if (r == 0 && g) {
    if (json_is_null(g) || (json_is_string(g) && !strcmp(json_string_value(g), "cpu"))) res->gpu = NULL;
    else if (json_is_string(g) && strlen(json_string_value(g)) < sizeof f->gpu) {
      snprintf(f->gpu, sizeof f->gpu, "%s", json_string_value(g));
      res->gpu = f->gpu;
    } else r = kiln_fail(e, KILN_EPARAM, "%s: 'gpu' must be a GPU class (T4, L4, A10G, A100, H100, ...) or cpu", where);
  }
  struct { const char *k; int *v; double lo, hi; } ints[] = {
      {"cpus", &res->cpus, 1, 1024}, {"memory_mb", &res->memory_mb, 1, 1 << 24}, {"timeout_s", &res->timeout_s, 1, 86400 * 7},
      {"retries", &res->retries, 0, 100}, {"idle_timeout_s", &res->idle_timeout_s, 0, 86400 * 30},
      {"min_workers", &res->min_workers, 0, 1024}, {"max_workers", &res->max_workers, 1, 1024},
      {"concurrency", &res->concurrency, 1, 1024}, {"max_chunks", &res->max_chunks, 1, 64}};
  for (size_t i = 0; r == 0 && i < sizeof ints / sizeof ints[0]; i++) {
    double d = *ints[i].v;
    r = num(o, ints[i].k, ints[i].lo, ints[i].hi, &d, where, e);
    *ints[i].v = (int)d;
  }
  if (r == 0 && res->min_workers > res->max_workers)
    r = kiln_fail(e, KILN_EPARAM, "%s: min_workers (%d) is more than max_workers (%d)", where, res->min_workers, res->max_workers);
  if (r == 0 && json_object_get(o, "max_pixels") && (r = pixels(o, "max_pixels", &f->max_pixels, where, e)) == 0)
    snprintf(f->max_pixels_key, sizeof f->max_pixels_key, "functions.%s.max_pixels", f->fn->name);
  if (r == 0 && json_object_get(o, "max_output_pixels") && (r = pixels(o, "max_output_pixels", &f->max_out_pixels, where, e)) == 0)
    snprintf(f->max_out_pixels_key, sizeof f->max_out_pixels_key, "functions.%s.max_output_pixels", f->fn->name);
  return r;
}

static int apply(ke_config *c, const json_t *o, kiln_err *e) {
  static const char *const keys[] = {"listen", "public_url", "max_upload_bytes", "inline_max_bytes", "lease_s",
                                     "retry_delay_s", "retry_max_delay_s", "slots", "budget_usd_month", "webhook",
                                     "prices", "limits", "functions", "http", "queue", "store", "store_endpoint", "store_region",
                                     "store_addressing", "store_cache_mb", NULL};
  const char *w = c->path;
  if (!json_is_object(o)) return kiln_fail(e, KILN_EPARAM, "%s: the top level must be a mapping", w);
  int r = only(o, keys, w, e);
  json_t *v;
  if (r == 0 && (v = json_object_get(o, "listen"))) {
    if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof c->listen || !strchr(json_string_value(v), ':'))
      r = kiln_fail(e, KILN_EPARAM, "%s: 'listen' must be HOST:PORT", w);
    else snprintf(c->listen, sizeof c->listen, "%s", json_string_value(v));
  }
  if (r == 0 && (v = json_object_get(o, "public_url"))) {
    if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof c->public_url || strncmp(json_string_value(v), "http", 4))
      r = kiln_fail(e, KILN_EPARAM, "%s: 'public_url' must be an http(s) URL", w);
    else snprintf(c->public_url, sizeof c->public_url, "%s", json_string_value(v));
  }
  static const struct { const char *k; size_t off, n; } strs[] = {
      {"queue", offsetof(ke_config, queue_url), sizeof c->queue_url},
      {"store", offsetof(ke_config, store_url), sizeof c->store_url},
      {"store_endpoint", offsetof(ke_config, store_endpoint), sizeof c->store_endpoint},
      {"store_region", offsetof(ke_config, store_region), sizeof c->store_region},
      {"store_addressing", offsetof(ke_config, store_addressing), sizeof c->store_addressing}};
  for (size_t i = 0; r == 0 && i < sizeof strs / sizeof *strs; i++) {
    if (!(v = json_object_get(o, strs[i].k))) continue;
    if (!json_is_string(v) || strlen(json_string_value(v)) >= strs[i].n)
      r = kiln_fail(e, KILN_EPARAM, "%s: '%s' must be a string of under %zu bytes", w, strs[i].k, strs[i].n);
    else snprintf((char *)c + strs[i].off, strs[i].n, "%s", json_string_value(v));
  }
  if (r == 0 && c->store_addressing[0] && strcmp(c->store_addressing, "path") && strcmp(c->store_addressing, "virtual"))
    r = kiln_fail(e, KILN_EPARAM, "%s: 'store_addressing' must be \"path\" or \"virtual\"", w);
  if (r == 0 && c->store_url[0] && strncmp(c->store_url, "s3://", 5) && strncmp(c->store_url, "file:", 5) && c->store_url[0] != '/')
    r = kiln_fail(e, KILN_EPARAM, "%s: 'store' must be s3://BUCKET/PREFIX or a local folder (file:PATH or an absolute path)", w);
  if (r == 0 && c->queue_url[0] && strncmp(c->queue_url, "postgres://", 11) && strncmp(c->queue_url, "postgresql://", 13) &&
      strncmp(c->queue_url, "sqlite:", 7) && c->queue_url[0] != '/')
    r = kiln_fail(e, KILN_EPARAM, "%s: 'queue' must be postgres://USER@HOST/DB or a SQLite file (sqlite:PATH or an absolute path)", w);
  if (r == 0) r = inum(o, "store_cache_mb", 1, 1e9, &c->store_cache_mb, w, e);
  if (r == 0) r = inum(o, "max_upload_bytes", 1, 1e15, &c->max_upload, w, e);
  if (r == 0) r = inum(o, "inline_max_bytes", 0, 1 << 30, &c->inline_max, w, e);
  double d;
  if (r == 0 && (d = (double)c->lease_ms / 1000, (r = num(o, "lease_s", 0.3, 3600, &d, w, e)) == 0)) c->lease_ms = (int64_t)(d * 1000);
  if (r == 0 && (d = (double)c->retry_delay_ms / 1000, (r = num(o, "retry_delay_s", 0, 3600, &d, w, e)) == 0))
    c->retry_delay_ms = (int64_t)(d * 1000);
  if (r == 0 && (d = (double)c->retry_max_delay_ms / 1000, (r = num(o, "retry_max_delay_s", 0, 86400, &d, w, e)) == 0))
    c->retry_max_delay_ms = (int64_t)(d * 1000);
  if (r == 0) r = num(o, "budget_usd_month", 0, 1e9, &c->budget_usd_month, w, e);
  if (r == 0 && (v = json_object_get(o, "http"))) {
    static const char *const hk[] = {"threads", "max_connections", "max_connections_per_ip", "idle_timeout_s",
                                     "request_timeout_s", NULL};
    char where[4300];
    snprintf(where, sizeof where, "%s: http", w);
    int64_t t = c->http_threads, mc = c->http_max_conns, mi = c->http_max_conns_per_ip, it = c->http_idle_timeout_s,
            rt = c->http_request_timeout_s;
    if (!json_is_object(v)) r = kiln_fail(e, KILN_EPARAM, "%s must be a mapping", where);
    if (r == 0) r = only(v, hk, where, e);
    if (r == 0) r = inum(v, "threads", 1, 256, &t, where, e);
    if (r == 0) r = inum(v, "max_connections", 16, 1 << 20, &mc, where, e);
    if (r == 0) r = inum(v, "max_connections_per_ip", 0, 1 << 20, &mi, where, e);
    if (r == 0) r = inum(v, "idle_timeout_s", 1, 3600, &it, where, e);
    if (r == 0) r = inum(v, "request_timeout_s", 1, 86400, &rt, where, e);
    c->http_threads = (int)t;
    c->http_max_conns = (int)mc;
    c->http_max_conns_per_ip = (int)mi;
    c->http_idle_timeout_s = (int)it;
    c->http_request_timeout_s = (int)rt;
  }
  if (r == 0 && (v = json_object_get(o, "slots"))) {
    static const char *const sk[] = {"cpu", "gpu", NULL};
    char where[4300];
    snprintf(where, sizeof where, "%s: slots", w);
    int64_t cpu = c->cpu_slots, gpu = c->gpu_slots;
    if (!json_is_object(v)) r = kiln_fail(e, KILN_EPARAM, "%s must be a mapping", where);
    if (r == 0) r = only(v, sk, where, e);
    if (r == 0) r = inum(v, "cpu", 1, 4096, &cpu, where, e);
    if (r == 0) r = inum(v, "gpu", 0, 1024, &gpu, where, e);
    c->cpu_slots = (int)cpu;
    c->gpu_slots = (int)gpu;
  }
  if (r == 0 && (v = json_object_get(o, "webhook"))) {
    static const char *const hk[] = {"attempts", "delay_s", "block_private", NULL};
    char where[4300];
    snprintf(where, sizeof where, "%s: webhook", w);
    int64_t n = c->webhook_attempts;
    d = (double)c->webhook_delay_ms / 1000;
    if (!json_is_object(v)) r = kiln_fail(e, KILN_EPARAM, "%s must be a mapping", where);
    if (r == 0) r = only(v, hk, where, e);
    if (r == 0) r = inum(v, "attempts", 1, 100, &n, where, e);
    if (r == 0) r = num(v, "delay_s", 0.01, 3600, &d, where, e);
    c->webhook_attempts = (int)n;
    c->webhook_delay_ms = (int64_t)(d * 1000);
    json_t *bp = json_object_get(v, "block_private");
    if (r == 0 && bp && !json_is_boolean(bp)) r = kiln_fail(e, KILN_EPARAM, "%s: 'block_private' must be true or false", where);
    if (r == 0 && bp) c->webhook_block_private = json_is_true(bp);
  }
  if (r == 0 && (v = json_object_get(o, "prices"))) {
    const char *k;
    json_t *p;
    if (!json_is_object(v)) r = kiln_fail(e, KILN_EPARAM, "%s: 'prices' must map resource classes to USD per second", w);
    json_object_foreach(v, k, p) {
      if (r < 0) break;
      if (!json_is_number(p) || json_number_value(p) < 0)
        r = kiln_fail(e, KILN_EPARAM, "%s: prices.%s must be a number of USD per second (>= 0)", w, k);
      else json_object_set_new(c->prices, k, json_real(json_number_value(p)));
    }
  }
  if (r == 0 && (v = json_object_get(o, "limits"))) {   /* every function's, before functions.NAME.* override them */
    static const char *const lk[] = {"max_pixels", "max_output_pixels", NULL};
    char where[4300];
    snprintf(where, sizeof where, "%s: limits", w);
    int64_t in = KM_MAX_PIXELS_DEFAULT, out = KM_MAX_PIXELS_DEFAULT;
    if (!json_is_object(v)) r = kiln_fail(e, KILN_EPARAM, "%s must be a mapping", where);
    if (r == 0) r = only(v, lk, where, e);
    if (r == 0) r = pixels(v, "max_pixels", &in, where, e);
    if (r == 0) r = pixels(v, "max_output_pixels", &out, where, e);
    for (int i = 0; r == 0 && i < c->nfn; i++) {
      c->fns[i].max_pixels = in;
      c->fns[i].max_out_pixels = out;
    }
  }
  if (r == 0 && (v = json_object_get(o, "functions"))) {
    const char *k;
    json_t *f;
    if (!json_is_object(v)) r = kiln_fail(e, KILN_EPARAM, "%s: 'functions' must be a mapping of function names", w);
    json_object_foreach(v, k, f) {
      if (r < 0) break;
      ke_fnconf *fc = (ke_fnconf *)ke_fn(c, k);
      char where[4400];
      snprintf(where, sizeof where, "%s: functions.%s", w, k);
      if (!fc) r = kiln_fail(e, KILN_EPARAM, "%s: no function '%s' (see `kiln functions`)", w, k);
      else r = fn_overrides(fc, f, where, e);
    }
  }
  return r;
}

int ke_config_load(ke_config *c, const char *path, kiln_err *e) {
  memset(c, 0, sizeof *c);
  int r = kiln_home(c->home, sizeof c->home, e);
  if (r < 0) return r;
  snprintf(c->listen, sizeof c->listen, "127.0.0.1:8420");
  c->max_upload = 10LL << 30;
  c->inline_max = 32LL << 20;
  c->store_cache_mb = 10240;
  c->lease_ms = 30000;
  c->http_threads = 4;
  c->http_max_conns = 4096;
  c->http_max_conns_per_ip = 256;
  c->http_idle_timeout_s = 10;
  c->http_request_timeout_s = 120;
  c->retry_delay_ms = 1000;
  c->retry_max_delay_ms = 60000;
  c->cpu_slots = kp_ncpu();
  c->gpu_slots = count_gpus();                   /* GPU functions run on the CPU until there is a GPU backend */
  c->webhook_attempts = 8;
  c->webhook_delay_ms = 1000;
  c->prices = json_object();
  for (size_t i = 0; i < sizeof default_prices / sizeof default_prices[0]; i++)
    json_object_set_new(c->prices, default_prices[i].cls, json_real(default_prices[i].usd));
  const kf_desc *const *reg = kf_registry_all();
  for (int i = 0; reg[i] && c->nfn < KE_MAX_FNS; i++) {
    c->fns[c->nfn].fn = reg[i];
    c->fns[c->nfn].res = reg[i]->res;
    c->fns[c->nfn].max_pixels = c->fns[c->nfn].max_out_pixels = KM_MAX_PIXELS_DEFAULT;
    snprintf(c->fns[c->nfn].max_pixels_key, sizeof c->fns[c->nfn].max_pixels_key, "limits.max_pixels");
    snprintf(c->fns[c->nfn].max_out_pixels_key, sizeof c->fns[c->nfn].max_out_pixels_key, "limits.max_output_pixels");
    if (c->fns[c->nfn].res.cpus < 1) c->fns[c->nfn].res.cpus = 1;
    c->nfn++;
  }
  char def[4200];
  snprintf(def, sizeof def, "%s/config.yaml", c->home);
  if (!path && access(def, F_OK) == 0) path = def;
  if (!path) return 0;
  snprintf(c->path, sizeof c->path, "%s", path);
  json_t *o = NULL;
  if ((r = kj_load_yaml(path, &o, e)) < 0) { ke_config_release(c); return r; }
  r = json_is_null(o) ? 0 : apply(c, o, e);
  json_decref(o);
  if (r < 0) ke_config_release(c);
  return r;
}

void ke_config_release(ke_config *c) {
  json_decref(c->prices);
  c->prices = NULL;
}

const ke_fnconf *ke_fn(const ke_config *c, const char *name) {
  for (int i = 0; i < c->nfn; i++)
    if (!strcmp(c->fns[i].fn->name, name)) return &c->fns[i];
  return NULL;
}

void ke_apply_limits(const ke_config *c, const char *fn) {
  km_limits l;
  memset(&l, 0, sizeof l);
  const ke_fnconf *f = fn ? ke_fn(c, fn) : NULL;
  if (f && f->fn->internal) f = NULL;             /* the join decodes no video, but opens what every function reads and makes */
  if (f) {
    l.max_pixels = f->max_pixels;
    l.max_out_pixels = f->max_out_pixels;
    snprintf(l.name, sizeof l.name, "%s", f->max_pixels_key);
    snprintf(l.out_name, sizeof l.out_name, "%s", f->max_out_pixels_key);
  } else {                                        /* the largest (0, no limit, is the largest) */
    for (int i = 0; i < c->nfn; i++) {
      const ke_fnconf *g = &c->fns[i];
      if (i == 0 || (l.max_pixels && (!g->max_pixels || g->max_pixels > l.max_pixels))) {
        l.max_pixels = g->max_pixels;
        snprintf(l.name, sizeof l.name, "%s", g->max_pixels_key);
      }
      if (i == 0 || (l.max_out_pixels && (!g->max_out_pixels || g->max_out_pixels > l.max_out_pixels))) {
        l.max_out_pixels = g->max_out_pixels;
        snprintf(l.out_name, sizeof l.out_name, "%s", g->max_out_pixels_key);
      }
    }
  }
  km_limits_set(&l);
}

double ke_price_per_s(const ke_config *c, const kf_resources *r, int *units) {
  int n = r->gpu ? 1 : r->cpus > 0 ? r->cpus : 1;
  if (units) *units = n;
  json_t *p = json_object_get(c->prices, r->gpu ? r->gpu : "cpu");
  if (!p) p = json_object_get(c->prices, "cpu");  /* an unpriced GPU class: say so in the docs */
  return json_number_value(p) * n;
}

/* Reads n secret bytes from home/name, making them (0600) on first use.
 * as_text: the file holds them as 2n hex characters (a key users copy). */
static int secret_file(const ke_config *c, const char *name, uint8_t *buf, size_t n, int as_text, kiln_err *e) {
  size_t fl = as_text ? 2 * n : n;
  uint8_t raw[256];
  char txt[520];
  if (n > sizeof raw) return kiln_fail(e, KILN_EINTERNAL, "secret too long");
  char p[4300];
  snprintf(p, sizeof p, "%s/%s", c->home, name);
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t got = read(fd, as_text ? (void *)txt : (void *)buf, fl);
      close(fd);
      int ok = got == (ssize_t)fl;
      for (size_t i = 0; ok && as_text && i < n; i++) {
        unsigned v;
        ok = sscanf(txt + 2 * i, "%2x", &v) == 1;
        buf[i] = (uint8_t)v;
      }
      if (ok) return 0;
      return kiln_fail(e, KILN_EIO, "secret '%s' is damaged; remove it to make a new one", p);
    }
    if (RAND_bytes(raw, (int)n) != 1) return kiln_fail(e, KILN_EINTERNAL, "no randomness for a secret");
    memcpy(buf, raw, n);
    if (as_text) { kiln_hex(raw, n, txt); txt[2 * n] = '\n'; }
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.%d", p, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t wl = as_text ? fl + 1 : n;
    int ok = fd >= 0 && write(fd, as_text ? (void *)txt : (void *)raw, wl) == (ssize_t)wl && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    /* link() fails if another process made it first: then read theirs */
    if (ok && link(tmp, p) == 0) { unlink(tmp); return 0; }
    unlink(tmp);
    if (!ok) return kiln_fail(e, KILN_EIO, "cannot write secret '%s': %s", p, strerror(errno));
  }
  return kiln_fail(e, KILN_EIO, "cannot read secret '%s'", p);
}

void ke_host_name(char *out, size_t n) {
  const char *h = getenv("KILN_HOST");
  if (h && *h) snprintf(out, n, "%s", h);
  else if (gethostname(out, n) != 0 || !out[0]) snprintf(out, n, "local");
  out[n - 1] = 0;
}

void ke_worker_id(const char *fn, int pid, char *out, size_t n) {
  char host[64];
  ke_host_name(host, sizeof host);
  snprintf(out, n, "%.24s-%d@%.24s", fn, pid, host);
}

int ke_open_queue(const ke_config *c, int relaxed, kq **q, kiln_err *e) {
  char p[4300];
  snprintf(p, sizeof p, "%s/queue.db", c->home);
  kq_policy pol = {c->retry_delay_ms, c->retry_max_delay_ms, relaxed};
  const char *env = getenv("KILN_QUEUE");
  return kq_open(q, env && *env ? env : c->queue_url[0] ? c->queue_url : p, &pol, e);
}

int ke_open_store(const ke_config *c, ks_store **s, kiln_err *e) {
  uint8_t secret[32];
  int r = secret_file(c, "secret", secret, sizeof secret, 0, e);
  if (r < 0) return r;
  char p[4300], cache[4300];
  snprintf(p, sizeof p, "%s/store", c->home);
  snprintf(cache, sizeof cache, "%s/cache", c->home);
  const char *env = getenv("KILN_STORE");
  const char *url = env && *env ? env : c->store_url[0] ? c->store_url : p;
  ks_options o = {.secret = secret, .secret_len = sizeof secret, .endpoint = c->store_endpoint, .region = c->store_region,
                  .addressing = c->store_addressing, .cache_dir = cache, .cache_max_bytes = c->store_cache_mb << 20};
  r = ks_open(s, url, &o, e);
  OPENSSL_cleanse(secret, sizeof secret);
  return r;
}

int ke_webhook_key(const ke_config *c, char hex[65], kiln_err *e) {
  uint8_t k[32];
  int r = secret_file(c, "webhook.key", k, sizeof k, 1, e);
  if (r == 0) kiln_hex(k, sizeof k, hex);
  return r;
}
