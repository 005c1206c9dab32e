/* webhook.c — delivers ended jobs to their webhook URLs (see engine.h).
 * A thread wakes every 200 ms (or when kicked), takes the due deliveries
 * from the queue (so they survive a restart), POSTs the job JSON with
 *   X-Kiln-Event: job.succeeded | job.failed | job.cancelled
 *   X-Kiln-Signature: t=UNIX,v1=HEX(HMAC-SHA256(key, "UNIX." + body))
 * where key is the text of $KILN_HOME/webhook.key, and records the outcome:
 * any 2xx is delivered; otherwise the next try comes after
 * delay·2^(attempts-1) until `attempts` tries were made. */
#include "engine/engine.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/fs.h"
#include "util/loop.h"
#include "util/log.h"

struct ke_hooks {
  const ke_config *c;
  char base[512];
  char key[65];
  kq *q;
  ks_store *store;
  kl_loop loop;
};

typedef struct delivery {
  char id[KQ_ID_LEN];
  char url[2048];
  char event[32];
  char *body;
  int attempts;
} delivery;

typedef struct due { ke_hooks *h; delivery d[16]; int n; } due;

static int due_cb(void *arg, const kq_job *j) {
  due *u = arg;
  if (u->n >= 16 || !j->webhook) return u->n >= 16;
  delivery *d = &u->d[u->n++];
  snprintf(d->id, sizeof d->id, "%s", j->id);
  snprintf(d->url, sizeof d->url, "%s", j->webhook);
  snprintf(d->event, sizeof d->event, "job.%s", kq_state_name(j->state));
  json_t *o = ke_job_json(j, u->h->store, u->h->base, ke_now_ms());
  d->body = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
  json_decref(o);
  d->attempts = j->hook_attempts;
  return 0;
}

int ke_webhook_url_check(const char *url, kiln_err *e) {
  size_t n = strlen(url);
  if (n > 2000) return kiln_fail(e, KILN_EPARAM, "the webhook URL is %zu bytes; the limit is 2000", n);
  if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
    return kiln_fail(e, KILN_EPARAM, "the webhook URL '%s' must start with http:// or https://", KILN_CLIP(url, 80));
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
      return kiln_fail(e, KILN_EPARAM, "the webhook URL holds a space or control character at byte %zu", i);
  const char *auth = strstr(url, "://") + 3;
  if (*auth == '/' || *auth == 0 || *auth == ':' || *auth == '?' || *auth == '#')
    return kiln_fail(e, KILN_EPARAM, "the webhook URL '%s' has no host", KILN_CLIP(url, 80));
  CURLU *u = curl_url();
  if (!u) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  char *host = NULL;
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
  int bad = rc != CURLUE_OK || !host || !*host;
  curl_free(host);
  curl_url_cleanup(u);
  if (bad)
    return kiln_fail(e, KILN_EPARAM, "the webhook URL '%s' is not a URL with a host (%s)", KILN_CLIP(url, 80),
                     rc != CURLUE_OK ? curl_url_strerror(rc) : "no host");
  return 0;
}

static size_t sink(char *p, size_t sz, size_t n, void *arg) { (void)p; (void)arg; return sz * n; }

/* With webhook.block_private: no connection to loopback, private (RFC 1918,
 * ULA), link-local (cloud metadata) or unspecified addresses, checked on the
 * address curl resolved, so a name pointing inside is refused too. */
static int private_addr(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
    return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 || (a >> 20) == (172u << 4 | 1) ||
           (a >> 16) == (192u << 8 | 168) || (a >> 16) == (169u << 8 | 254) || (a >> 22) == (100u << 2 | 1);
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t loop[16] = {[15] = 1}, any[16] = {0};
    if (!memcmp(b, loop, 16) || !memcmp(b, any, 16)) return 1;
    if ((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)) return 1;   /* fc00::/7, fe80::/10 */
    static const uint8_t v4map[12] = {[10] = 0xff, [11] = 0xff};
    if (!memcmp(b, v4map, 12)) {
      struct sockaddr_in s4 = {.sin_family = AF_INET};
      memcpy(&s4.sin_addr, b + 12, 4);
      return private_addr((const struct sockaddr *)&s4);
    }
  }
  return 0;
}

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a) {
  (void)purpose;
  if (private_addr(&a->addr)) {
    *(int *)arg = 1;                               /* say why, not just "could not connect" */
    return CURL_SOCKET_BAD;
  }
  return socket(a->family, a->socktype, a->protocol);
}

/* POSTs one delivery; returns the HTTP status (0 when no answer). */
static long post(ke_hooks *h, const delivery *d, char *err, size_t errn) {
  CURL *cu = curl_easy_init();
  if (!cu) { snprintf(err, errn, "no HTTP client"); return 0; }
  char ts[32], sig[300], mac_hex[65], hdr_sig[400], hdr_ev[64];
  snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
  size_t bl = strlen(d->body);
  char *msg = malloc(strlen(ts) + 1 + bl + 1);
  unsigned char mac[32];
  unsigned int ml = 0;
  if (!msg) { curl_easy_cleanup(cu); return 0; }
  snprintf(msg, strlen(ts) + 2, "%s.", ts);
  memcpy(msg + strlen(ts) + 1, d->body, bl + 1);
  HMAC(EVP_sha256(), h->key, (int)strlen(h->key), (unsigned char *)msg, strlen(msg), mac, &ml);
  free(msg);
  kiln_hex(mac, 32, mac_hex);
  snprintf(sig, sizeof sig, "t=%s,v1=%s", ts, mac_hex);
  snprintf(hdr_sig, sizeof hdr_sig, "X-Kiln-Signature: %s", sig);
  snprintf(hdr_ev, sizeof hdr_ev, "X-Kiln-Event: %s", d->event);
  struct curl_slist *hl = NULL;
  hl = curl_slist_append(hl, "Content-Type: application/json");
  hl = curl_slist_append(hl, hdr_sig);
  hl = curl_slist_append(hl, hdr_ev);
  char ebuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(cu, CURLOPT_URL, d->url);
  curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(cu, CURLOPT_POSTFIELDS, d->body);
  curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE, (long)bl);
  curl_easy_setopt(cu, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, ebuf);
  int blocked = 0;
  if (h->c->webhook_block_private) {
    curl_easy_setopt(cu, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(cu, CURLOPT_OPENSOCKETDATA, &blocked);
  }
  long status = 0;
  CURLcode rc = curl_easy_perform(cu);
  if (rc == CURLE_OK) curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
  else if (blocked)
    snprintf(err, errn, "refused: the URL leads to a loopback, private or link-local address (webhook.block_private)");
  else snprintf(err, errn, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
  curl_slist_free_all(hl);
  curl_easy_cleanup(cu);
  return status;
}

static void deliver_due(ke_hooks *h) {
  due u;
  memset(&u, 0, sizeof u);
  u.h = h;
  kiln_err e = {0};
  if (kq_hooks_due(h->q, ke_now_ms(), 120000, 16, due_cb, &u, &e) < 0) { klog(KLOG_WARN, "webhooks: %s", e.msg); return; }
  for (int i = 0; i < u.n; i++) {
    delivery *d = &u.d[i];
    char err[256] = "";
    long st = d->body ? post(h, d, err, sizeof err) : 0;
    int ok = st >= 200 && st < 300;
    int tries = d->attempts + 1;
    int64_t next = -1;
    if (!ok && tries < h->c->webhook_attempts) {
      int64_t delay = h->c->webhook_delay_ms;
      for (int k = 1; k < tries && delay < 3600000; k++) delay *= 2;
      next = ke_now_ms() + delay;
    }
    if (!ok)
      klog(KLOG_WARN, "webhook for job %s: attempt %d of %d failed (%s)%s", d->id, tries, h->c->webhook_attempts,
           st ? "non-2xx answer" : err, next < 0 ? "; giving up" : "");
    if (!ok && st) klog(KLOG_DEBUG, "webhook for job %s: HTTP %ld", d->id, st);
    kq_hook_result(h->q, d->id, ok, next, &e);
    free(d->body);
  }
}

static int hooks_tick(void *arg) {
  deliver_due(arg);
  return 0;
}

int ke_hooks_start(ke_hooks **out, const ke_config *c, const char *base_url, kiln_err *e) {
  ke_hooks *h = calloc(1, sizeof *h);
  if (!h) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  h->c = c;
  snprintf(h->base, sizeof h->base, "%s", base_url);
  int r = ke_webhook_key(c, h->key, e);
  if (r == 0) r = ke_open_queue(c, 0, &h->q, e);
  if (r == 0) r = ke_open_store(c, &h->store, e);
  if (r < 0) { kq_close(h->q); free(h); return r; }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (kl_start(&h->loop, 200, 0, hooks_tick, h) < 0) {
    ks_close(h->store);
    kq_close(h->q);
    free(h);
    return kiln_fail(e, KILN_EINTERNAL, "cannot start the webhook thread");
  }
  *out = h;
  return 0;
}

void ke_hooks_kick(ke_hooks *h) {
  if (h) kl_kick(&h->loop);
}

void ke_hooks_stop(ke_hooks *h) {
  if (!h) return;
  kl_stop(&h->loop);
  ks_close(h->store);
  kq_close(h->q);
  free(h);
}
