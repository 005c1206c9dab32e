/* test_store.c — the store on a local folder: key validation, streaming
 * put/get with ranges, atomic commit and abort, stat, delete, rename, list,
 * presigned URLs (valid, expired, tampered). */
#include <dirent.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "api/auth.h"
#include "store/store.h"
#include "t.h"
#include "tutil.h"

static const uint8_t SECRET[] = "test-secret-not-for-production";

static ks_store *open_store(void) {
  ks_store *s = NULL;
  kiln_err e = {0};
  CHECK(ks_open_local(&s, t_path("store"), SECRET, sizeof SECRET - 1, &e) == 0, "%s", e.msg);
  return s;
}

static int put(ks_store *s, const char *key, const char *data, kiln_err *e) {
  ks_put *p;
  int r = ks_put_begin(s, key, &p, e);
  if (r < 0) return r;
  size_t n = strlen(data), half = n / 2;
  if ((r = ks_put_write(p, data, half, e)) < 0 || (r = ks_put_write(p, data + half, n - half, e)) < 0) {
    ks_put_abort(p);
    return r;
  }
  return ks_put_commit(p, e);
}

static int get(ks_store *s, const char *key, int64_t off, int64_t len, char *out, size_t cap, kiln_err *e) {
  ks_get *g;
  int r = ks_get_open(s, key, off, len, &g, e);
  if (r < 0) return r;
  size_t n = 0;
  ssize_t k;
  while ((k = ks_get_read(g, out + n, 3, e)) > 0 && n + (size_t)k < cap) n += (size_t)k;   /* tiny reads: streaming */
  out[n] = 0;
  ks_get_close(g);
  return k < 0 ? (int)k : 0;
}

static void test_keys(void) {
  kiln_err e = {0};
  const char *good[] = {"a", "jobs/123/out.mp4", "x.y/z-1_2", "ünïcode/ok"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) CHECK(ks_key_check(good[i], &e) == 0, "%s: %s", good[i], e.msg);
  const char *bad[] = {"", "/abs", "a/../b", "..", "a/./b", "a//b", "trailing/", "tab\there", "back\\slash"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(ks_key_check(bad[i], &e) == KILN_EINVAL, "'%s' accepted", bad[i]);
  }
  char big[KS_KEY_MAX + 2];
  memset(big, 'k', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK(ks_key_check(big, &e) == KILN_EINVAL && strstr(e.msg, "limit"), "%s", e.msg);
}

static void test_put_get(void) {
  ks_store *s = open_store();
  if (!s) return;
  kiln_err e = {0};
  char buf[256];
  CHECK(put(s, "jobs/1/in.bin", "hello, streaming world", &e) == 0, "%s", e.msg);
  CHECK(get(s, "jobs/1/in.bin", 0, -1, buf, sizeof buf, &e) == 0 && !strcmp(buf, "hello, streaming world"), "whole: %s", buf);
  CHECK(get(s, "jobs/1/in.bin", 7, 9, buf, sizeof buf, &e) == 0 && !strcmp(buf, "streaming"), "range: %s", buf);
  CHECK(get(s, "jobs/1/in.bin", 16, 1000, buf, sizeof buf, &e) == 0 && !strcmp(buf, " world"), "range to end: %s", buf);
  CHECK(get(s, "jobs/1/in.bin", 22, -1, buf, sizeof buf, &e) == KILN_EINVAL && strstr(e.msg, "22"), "past end: %s", e.msg);
  CHECK(get(s, "jobs/1/none", 0, -1, buf, sizeof buf, &e) == KILN_ENOENT && strstr(e.msg, "jobs/1/none"), "%s", e.msg);
  CHECK(get(s, "../etc/passwd", 0, -1, buf, sizeof buf, &e) == KILN_EINVAL, "traversal refused");
  ks_stat st;
  CHECK(ks_stat_key(s, "jobs/1/in.bin", &st, &e) == 0 && st.size == 22 && st.mtime > 0, "stat %lld", (long long)st.size);
  /* overwrite is atomic: the new content or the old, never a mix */
  CHECK(put(s, "jobs/1/in.bin", "v2", &e) == 0, "%s", e.msg);
  CHECK(get(s, "jobs/1/in.bin", 0, -1, buf, sizeof buf, &e) == 0 && !strcmp(buf, "v2"), "overwritten: %s", buf);
  /* an aborted put leaves nothing, not even a temporary file */
  ks_put *p;
  CHECK(ks_put_begin(s, "jobs/1/partial", &p, &e) == 0, "%s", e.msg);
  ks_put_write(p, "half", 4, &e);
  CHECK(ks_stat_key(s, "jobs/1/partial", &st, &e) == KILN_ENOENT, "invisible before commit");
  ks_put_abort(p);
  CHECK(ks_stat_key(s, "jobs/1/partial", &st, &e) == KILN_ENOENT, "nothing after abort");
  DIR *d = opendir(t_path("store/tmp"));
  int tmp_files = 0;
  struct dirent *de;
  while (d && (de = readdir(d))) if (de->d_name[0] != '.') tmp_files++;
  if (d) closedir(d);
  CHECK(tmp_files == 0, "%d temporary files left", tmp_files);
  ks_close(s);
}

static int collect(void *arg, const char *key, const ks_stat *st) {
  char *out = arg;
  size_t n = strlen(out);
  snprintf(out + n, 512 - n, "%s%s:%lld", n ? "," : "", key, (long long)st->size);
  return 0;
}

static void test_rename_delete_list(void) {
  ks_store *s = open_store();
  if (!s) return;
  kiln_err e = {0};
  CHECK(put(s, "j/2/chunk-0.tmp", "aaa", &e) == 0 && put(s, "j/2/chunk-1", "bb", &e) == 0 && put(s, "k/other", "c", &e) == 0,
        "%s", e.msg);
  CHECK(ks_rename(s, "j/2/chunk-0.tmp", "j/2/chunk-0", &e) == 0, "%s", e.msg);
  CHECK(ks_rename(s, "j/2/missing", "j/2/x", &e) == KILN_ENOENT, "rename of a missing key");
  char listed[512] = "";
  CHECK(ks_list(s, "j/2/", collect, listed, &e) == 0, "%s", e.msg);
  CHECK(!strcmp(listed, "j/2/chunk-0:3,j/2/chunk-1:2"), "list: %s", listed);
  CHECK(ks_delete(s, "j/2/chunk-1", &e) == 0, "%s", e.msg);
  CHECK(ks_delete(s, "j/2/chunk-1", &e) == KILN_ENOENT, "double delete");
  listed[0] = 0;
  ks_list(s, "", collect, listed, &e);
  CHECK(strstr(listed, "j/2/chunk-0:3") && strstr(listed, "k/other:1") && !strstr(listed, "chunk-1"), "all: %s", listed);
  ks_close(s);
}

static void test_presign(void) {
  ks_store *s = open_store();
  if (!s) return;
  kiln_err e = {0};
  char url[2048];
  CHECK(ks_presign(s, "GET", "jobs/1/out.mp4", 2000, url, sizeof url, &e) == 0, "%s", e.msg);
  const char *want = "/v1/objects/jobs/1/out.mp4?method=GET&expires=2000&sig=";
  CHECK(strncmp(url, want, strlen(want)) == 0, "url %s", url);
  const char *sig = strstr(url, "sig=") + 4;
  CHECK(strlen(sig) == 64, "hex sha256");
  CHECK(ks_presign_verify(s, "GET", "jobs/1/out.mp4", 2000, sig, 1999, &e) == 0, "%s", e.msg);
  CHECK(ks_presign_verify(s, "GET", "jobs/1/out.mp4", 2000, sig, 2000, &e) == KILN_EINVAL && strstr(e.msg, "expired"), "%s", e.msg);
  CHECK(ks_presign_verify(s, "PUT", "jobs/1/out.mp4", 2000, sig, 1, &e) == KILN_EINVAL && strstr(e.msg, "signature"), "method");
  CHECK(ks_presign_verify(s, "GET", "jobs/1/out.mp5", 2000, sig, 1, &e) == KILN_EINVAL, "key");
  CHECK(ks_presign_verify(s, "GET", "jobs/1/out.mp4", 3000, sig, 1, &e) == KILN_EINVAL, "expiry");
  char bad[65];
  memcpy(bad, sig, 65);
  bad[10] = bad[10] == 'a' ? 'b' : 'a';
  CHECK(ks_presign_verify(s, "GET", "jobs/1/out.mp4", 2000, bad, 1, &e) == KILN_EINVAL, "tampered sig");
  CHECK(ks_presign(s, "DELETE", "a", 1, url, sizeof url, &e) == KILN_EINVAL, "method check");
  /* another secret signs differently */
  ks_store *o = NULL;
  CHECK(ks_open_local(&o, t_path("store2"), (const uint8_t *)"other", 5, &e) == 0, "%s", e.msg);
  if (o) {
    CHECK(ks_presign_verify(o, "GET", "jobs/1/out.mp4", 2000, sig, 1, &e) == KILN_EINVAL, "other secret");
    ks_close(o);
  }
  ks_close(s);
}

static void test_tokens(void) {
  kiln_err e = {0};
  char home[1100], tok[KA_TOKEN_LEN], tok2[KA_TOKEN_LEN], name[80];
  snprintf(home, sizeof home, "%s", t_dir());
  CHECK(ka_token_create(home, "alice", tok, &e) == 0 && ka_token_create(home, "bob", tok2, &e) == 0, "%s", e.msg);
  CHECK(strcmp(tok, tok2) != 0, "tokens differ");
  CHECK(ka_token_verify(home, tok, name, sizeof name, &e) == 0 && !strcmp(name, "alice"), "alice verifies");
  CHECK(ka_token_verify(home, tok2, name, sizeof name, &e) == 0 && !strcmp(name, "bob"), "bob verifies");
  char wrong[KA_TOKEN_LEN];
  memcpy(wrong, tok, sizeof wrong);
  wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
  CHECK(ka_token_verify(home, wrong, name, sizeof name, &e) == KILN_EINVAL && !strstr(e.msg, wrong), "wrong token refused, not echoed");
  CHECK(ka_token_verify(home, "", name, sizeof name, &e) == KILN_EINVAL, "empty token refused");
  CHECK(ka_token_create(home, "bad name!", tok, &e) == KILN_EINVAL, "bad name");
  CHECK(ka_token_revoke(home, "alice", &e) == 0, "%s", e.msg);
  CHECK(ka_token_verify(home, tok, name, sizeof name, &e) == KILN_EINVAL, "revoked token refused");
  CHECK(ka_token_verify(home, tok2, name, sizeof name, &e) == 0, "others still valid");
}

int main(void) {
  T_RUN(test_keys);
  T_RUN(test_put_get);
  T_RUN(test_rename_delete_list);
  T_RUN(test_presign);
  T_RUN(test_tokens);
  /* t_cleanup removes only files directly in the folder; remove the tree */
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", t_dir());
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", t_dir());
  return t_done();
}
