/* auth.c — see auth.h. The token file is a JSON array of
 * {"name", "sha256", "created"}; it is small and read on each check (the
 * HTTP server will cache it by mtime). */
#include "api/auth.h"
#include "util/fs.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void path_of(const char *home, char *out, size_t n) { snprintf(out, n, "%s/tokens.json", home); }

static void sha256_hex(const char *s, char hex[65]) { kiln_sha256_hex(s, strlen(s), hex); }

/* The token file, checked whole: an array of {"name": string, "sha256": 64
 * hex, ...}. A damaged file is an error naming it (KILN_EIO), never an empty
 * list: a server must not run on, refusing every token in silence. */
static int load(const char *home, json_t **out, kiln_err *e) {
  char p[4096];
  path_of(home, p, sizeof p);
  if (access(p, F_OK) != 0) { *out = json_array(); return 0; }
  json_error_t je;
  json_t *a = json_load_file(p, 0, &je);
  if (!a) return kiln_fail(e, KILN_EIO, "token file '%s' is damaged: %s at line %d; restore it, or move it away and create tokens again",
                           p, je.text, je.line);
  if (!json_is_array(a)) {
    json_decref(a);
    return kiln_fail(e, KILN_EIO, "token file '%s' is damaged: it must be a JSON array of tokens", p);
  }
  size_t i;
  json_t *t;
  json_array_foreach(a, i, t) {
    const char *nm = json_string_value(json_object_get(t, "name"));
    const char *h = json_string_value(json_object_get(t, "sha256"));
    int hex = h && strlen(h) == 64;
    for (int k = 0; hex && k < 64; k++) hex = (h[k] >= '0' && h[k] <= '9') || (h[k] >= 'a' && h[k] <= 'f');
    if (!json_is_object(t) || !nm || !hex) {
      json_decref(a);
      return kiln_fail(e, KILN_EIO, "token file '%s' is damaged: entry %zu needs a \"name\" and a \"sha256\" of 64 hex digits", p, i + 1);
    }
  }
  *out = a;
  return 0;
}

int ka_token_file_check(const char *home, kiln_err *e) {
  json_t *a;
  int r = load(home, &a, e);
  if (r == 0) json_decref(a);
  return r;
}

static int save(const char *home, json_t *a, kiln_err *e) {
  char p[4096], tmp[4200];
  path_of(home, p, sizeof p);
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", p, (long)getpid());
  mode_t old = umask(077);
  int r = json_dump_file(a, tmp, JSON_INDENT(2));
  umask(old);
  if (r != 0 || chmod(tmp, 0600) != 0 || rename(tmp, p) != 0) {
    unlink(tmp);
    return kiln_fail(e, KILN_EIO, "cannot write the token file '%s'", p);
  }
  return 0;
}

/* Index of the token named `name` in the array, or -1. */
static long find_name(json_t *a, const char *name) {
  size_t i;
  json_t *t;
  json_array_foreach(a, i, t) {
    const char *nm = json_string_value(json_object_get(t, "name"));
    if (nm && !strcmp(nm, name)) return (long)i;
  }
  return -1;
}

static int name_ok(const char *n) {
  size_t l = strlen(n);
  if (l == 0 || l > 64) return 0;
  for (size_t i = 0; i < l; i++) {
    char c = n[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

int ka_token_create(const char *home, const char *name, char token[KA_TOKEN_LEN], kiln_err *e) {
  if (!name_ok(name)) return kiln_fail(e, KILN_EINVAL, "token name must be 1 to 64 of letters, digits, '.', '_' or '-'");
  json_t *a;
  int r = load(home, &a, e);
  if (r < 0) return r;
  if (find_name(a, name) >= 0) {
    json_decref(a);
    return kiln_fail(e, KILN_EINVAL, "a token named '%s' exists; revoke it first", name);
  }
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) { json_decref(a); return kiln_fail(e, KILN_EINTERNAL, "no randomness for a token"); }
  memcpy(token, "kiln_", 5);
  kiln_hex(raw, sizeof raw, token + 5);
  OPENSSL_cleanse(raw, sizeof raw);
  char hex[65];
  sha256_hex(token, hex);
  json_array_append_new(a, json_pack("{s:s, s:s, s:I}", "name", name, "sha256", hex, "created", (json_int_t)time(NULL)));
  r = save(home, a, e);
  json_decref(a);
  if (r < 0) OPENSSL_cleanse(token, KA_TOKEN_LEN);
  return r;
}

int ka_token_verify(const char *home, const char *token, char *name, size_t n, kiln_err *e) {
  if (!token || !*token) return kiln_fail(e, KILN_EINVAL, "no token given");
  json_t *a;
  int r = load(home, &a, e);
  if (r < 0) return r;
  char hex[65];
  sha256_hex(token, hex);
  int found = 0;
  size_t i;
  json_t *t;
  json_array_foreach(a, i, t) {
    const char *h = json_string_value(json_object_get(t, "sha256"));
    if (h && strlen(h) == 64 && CRYPTO_memcmp(h, hex, 64) == 0 && !found) {
      found = 1;
      if (name) snprintf(name, n, "%s", json_string_value(json_object_get(t, "name")));
    }
  }
  json_decref(a);
  return found ? 0 : kiln_fail(e, KILN_EINVAL, "invalid token");
}

int ka_token_revoke(const char *home, const char *name, kiln_err *e) {
  json_t *a;
  int r = load(home, &a, e);
  if (r < 0) return r;
  long i = find_name(a, name);
  if (i >= 0) json_array_remove(a, (size_t)i);
  r = i >= 0 ? save(home, a, e) : kiln_fail(e, KILN_ENOENT, "no token named '%s'", name);
  json_decref(a);
  return r;
}

int ka_token_list(const char *home, int (*cb)(void *arg, const char *name, long long created), void *arg, kiln_err *e) {
  json_t *a;
  int r = load(home, &a, e);
  if (r < 0) return r;
  size_t i;
  json_t *t;
  json_array_foreach(a, i, t) {
    if (cb(arg, json_string_value(json_object_get(t, "name")), (long long)json_integer_value(json_object_get(t, "created"))))
      break;
  }
  json_decref(a);
  return 0;
}
