/* test_store.c — the store on a local folder: key validation, streaming
 * put/get with ranges, atomic commit and abort, stat, delete, rename, list,
 * presigned URLs (valid, expired, tampered). */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
  char seg[300];
  memset(seg, 's', 256);
  seg[256] = 0;
  CHECK(ks_key_check(seg, &e) == KILN_EINVAL && strstr(e.msg, "256 bytes") && strstr(e.msg, "255"), "%s", e.msg);
  seg[255] = 0;
  CHECK(ks_key_check(seg, &e) == 0, "%s", e.msg);
  const char *notutf8[] = {"a\xff", "a/\xc3", "\xc3\x28", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};
  for (size_t i = 0; i < sizeof notutf8 / sizeof notutf8[0]; i++)
    CHECK(ks_key_check(notutf8[i], &e) == KILN_EINVAL && strstr(e.msg, "UTF-8"), "%zu: %s", i, e.msg);
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

/* Links inside the store are never followed: a folder link and a file link
 * planted in objects/ lead nowhere for GET, PUT, DELETE, stat and rename. */
static void test_no_links(void) {
  ks_store *s = open_store();
  kiln_err e = {0};
  char outside[1024], p[1200];
  snprintf(outside, sizeof outside, "%s", t_path("outside"));
  snprintf(p, sizeof p, "mkdir -p '%s' && echo secret > '%s/f' && ln -sfn '%s' '%s/objects/ldir' && ln -sf '%s/f' '%s/objects/lfile'",
           outside, outside, outside, t_path("store"), outside, t_path("store"));
  CHECK(system(p) == 0, "cannot plant links");
  ks_stat st;
  char buf[64];
  CHECK(ks_stat_key(s, "ldir/f", &st, &e) == KILN_EINVAL && strstr(e.msg, "symbolic link"), "stat through a folder link: %s", e.msg);
  CHECK(get(s, "ldir/f", 0, -1, buf, sizeof buf, &e) == KILN_EINVAL, "GET through a folder link: %s", e.msg);
  CHECK(ks_stat_key(s, "lfile", &st, &e) == KILN_ENOENT, "stat of a file link: %s", e.msg);
  CHECK(get(s, "lfile", 0, -1, buf, sizeof buf, &e) == KILN_ENOENT, "GET of a file link: %s", e.msg);
  CHECK(put(s, "ldir/new", "x", &e) == KILN_EINVAL, "PUT through a folder link: %s", e.msg);
  snprintf(p, sizeof p, "%s/new", outside);
  CHECK(!t_file_exists(p), "PUT wrote outside the store");
  CHECK(ks_delete(s, "ldir/f", &e) == KILN_EINVAL, "DELETE through a folder link: %s", e.msg);
  CHECK(ks_delete(s, "lfile", &e) == KILN_ENOENT, "DELETE of a file link: %s", e.msg);
  snprintf(p, sizeof p, "%s/f", outside);
  CHECK(t_file_exists(p), "DELETE removed the file outside");
  CHECK(put(s, "in/x", "data", &e) == 0, "%s", e.msg);
  CHECK(ks_rename(s, "in/x", "ldir/x", &e) == KILN_EINVAL, "rename into a folder link: %s", e.msg);
  /* a PUT over a file link replaces the link, never the file it points at */
  CHECK(put(s, "lfile", "new", &e) == 0, "%s", e.msg);
  CHECK(get(s, "lfile", 0, -1, buf, sizeof buf, &e) == 0 && !strcmp(buf, "new"), "%s", buf);
  FILE *f = fopen(p, "r");
  CHECK(f && fgets(buf, sizeof buf, f) && !strcmp(buf, "secret\n"), "the file outside changed: %s", buf);
  if (f) fclose(f);
  ks_close(s);
}

/* A file where a folder is needed and a folder where a file is: conflicts. */
static void test_conflicts(void) {
  ks_store *s = open_store();
  kiln_err e = {0};
  CHECK(put(s, "cf/a", "1", &e) == 0, "%s", e.msg);
  CHECK(put(s, "cf/a/b", "2", &e) == KILN_ECONFLICT, "file then file/child: %d %s", e.code, e.msg);
  CHECK(put(s, "cg/a/b", "1", &e) == 0, "%s", e.msg);
  CHECK(put(s, "cg/a", "2", &e) == KILN_ECONFLICT, "folder then file: %d %s", e.code, e.msg);
  ks_stat st;
  CHECK(ks_stat_key(s, "cf/a/b", &st, &e) == KILN_ENOENT, "stat below a file: %s", e.msg);
  CHECK(ks_stat_key(s, "cg/a", &st, &e) == KILN_ENOENT, "stat of a folder: %s", e.msg);
  ks_close(s);
}

static int count_tmp(void) {
  char p[1100];
  snprintf(p, sizeof p, "%s/tmp", t_path("store"));
  DIR *d = opendir(p);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d))) n += strncmp(de->d_name, "put-", 4) == 0;
  if (d) closedir(d);
  return n;
}

/* A put-* file no live put holds (a crash's leftover, older than the grace
 * period) is swept when a store opens; a live put's file is not. */
static void test_tmp_sweep(void) {
  ks_store *s = open_store();
  kiln_err e = {0};
  int before = count_tmp();
  ks_put *live;
  CHECK(ks_put_begin(s, "sweep/live", &live, &e) == 0, "%s", e.msg);
  char p[1200];
  snprintf(p, sizeof p, "f='%s/tmp/put-crashed'; echo partial > \"$f\" && touch -d '-2 minutes' \"$f\"", t_path("store"));
  CHECK(system(p) == 0, "cannot plant a stale file");
  snprintf(p, sizeof p, "for f in '%s'/tmp/put-*; do [ \"$f\" = '%s/tmp/put-crashed' ] || touch -d '-2 minutes' \"$f\"; done",
           t_path("store"), t_path("store"));
  CHECK(system(p) == 0, "cannot age the live file");
  CHECK(count_tmp() == before + 2, "%d files", count_tmp());
  ks_store *s2 = open_store();                     /* a second process's start, in effect */
  CHECK(count_tmp() == before + 1, "after the sweep: %d files, expected %d (the live put's only)", count_tmp(), before + 1);
  CHECK(ks_put_write(live, "ok", 2, &e) == 0 && ks_put_commit(live, &e) == 0, "the live put broke: %s", e.msg);
  char buf[16];
  CHECK(get(s2, "sweep/live", 0, -1, buf, sizeof buf, &e) == 0 && !strcmp(buf, "ok"), "%s", buf);
  ks_close(s2);
  ks_close(s);
}

/* Each store handle's scratch folder is its own, locked while the handle
 * lives: a worker killed mid-task (no ks_close) leaves a folder that the
 * next store to open, or ks_sweep, removes with its files; a live one's
 * stays; ks_close removes the handle's own. (A killed worker's partial
 * output used to stay in tmp/ for good.) */
static int file_in(const char *dir, const char *name, const char *text) {
  char p[1400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* A child opens the store, writes a scratch file and dies without closing
 * it (as SIGKILL would); returns its scratch folder in dead. */
static void dead_worker(char *dead, size_t n) {
  int pfd[2];
  dead[0] = 0;
  if (pipe(pfd) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    kiln_err ce = {0};
    ks_store *c = NULL;
    char d[1200] = "";
    if (ks_open_local(&c, t_path("store"), SECRET, sizeof SECRET - 1, &ce) == 0 && ks_scratch_dir(c, d, sizeof d, &ce) == 0)
      file_in(d, ".out.mp4.part-1", "half a video");
    ssize_t w = write(pfd[1], d, strlen(d) + 1);
    (void)w;
    raise(SIGKILL);
  }
  close(pfd[1]);
  ssize_t got = read(pfd[0], dead, n - 1);
  dead[got > 0 ? got : 0] = 0;
  close(pfd[0]);
  waitpid(pid, NULL, 0);
}

static void test_scratch_sweep(void) {
  kiln_err e = {0};
  ks_store *s = open_store();
  char mine[1200], again[1200], dead[1200], dead2[1200];
  CHECK(ks_scratch_dir(s, mine, sizeof mine, &e) == 0 && is_dir(mine), "%s", e.msg);
  CHECK(ks_scratch_dir(s, again, sizeof again, &e) == 0 && !strcmp(mine, again), "one folder per handle: %s, %s", mine, again);
  CHECK(file_in(mine, "job-w.mp4", "mine") == 0, "cannot write in %s", mine);
  dead_worker(dead, sizeof dead);
  CHECK(dead[0] && strcmp(dead, mine) != 0, "a folder of its own for another handle: '%s' vs '%s'", dead, mine);
  CHECK(is_dir(dead), "the dead worker's folder is there before a sweep: %s", dead);
  ks_store *s2 = open_store();                     /* a new worker's start, in effect */
  CHECK(!is_dir(dead), "a store's open sweeps a dead worker's scratch folder: %s", dead);
  char p[1400];
  snprintf(p, sizeof p, "%s/job-w.mp4", mine);
  CHECK(access(p, F_OK) == 0, "a live handle's scratch file stays");
  dead_worker(dead2, sizeof dead2);
  CHECK(dead2[0] && is_dir(dead2), "a second dead worker's folder: %s", dead2);
  CHECK(ks_sweep(s2) == 0 && !is_dir(dead2) && access(p, F_OK) == 0, "ks_sweep takes the dead one's only");
  ks_close(s);
  CHECK(!is_dir(mine), "ks_close removes the handle's own scratch folder and its files: %s", mine);
  ks_close(s2);
}

/* Found by tests/fuzz/fuzz_range: strtoll's leniency let "bytes= 5-", "bytes=+5-" and "bytes=0-\v9" through. */
static void test_range_strict(void) {
  int64_t off = -1, len = -1;
  CHECK(ks_range_parse("bytes=0-99", 1000, &off, &len) == 0 && off == 0 && len == 100, "%lld+%lld", (long long)off, (long long)len);
  CHECK(ks_range_parse("bytes=990-", 1000, &off, &len) == 0 && off == 990 && len == 10, "open end");
  CHECK(ks_range_parse("bytes=-10", 1000, &off, &len) == 0 && off == 990 && len == 10, "suffix");
  CHECK(ks_range_parse("bytes=-5000", 1000, &off, &len) == 0 && off == 0 && len == 1000, "suffix longer than the object");
  CHECK(ks_range_parse("bytes=0-99999999999999999999999", 1000, &off, &len) == 0 && len == 1000, "a huge last byte is clamped");
  static const char *const bad[] = {"bytes= 5-", "bytes=+5-", "bytes=\v0-5", "bytes=0- 5", "bytes=0-+5", "bytes=- 5",
                                    "bytes=-+5", "bytes=-0", "bytes=5-4", "bytes=1000-", "bytes=0-1,2-3", "bytes=0-5 ",
                                    "bytes=", "bytes=-", "items=0-5", "bytes=0x10-", NULL};
  for (int i = 0; bad[i]; i++) CHECK(ks_range_parse(bad[i], 1000, &off, &len) == -1, "'%s' accepted", bad[i]);
  CHECK(ks_range_parse("bytes=-5", 0, &off, &len) == -1 && ks_range_parse("bytes=0-", 0, &off, &len) == -1, "empty object");
  CHECK(ks_range_parse("bytes=9223372036854775806-", INT64_MAX, &off, &len) == 0 && len == 1, "the last byte of the largest object");
}

/* Found by tests/fuzz/fuzz_presign: an expires far in the past overflowed "expired N s ago" (UBSan), and
 * expires='+2000', ' 2000' or '02000' verified as 2000. */
static void test_presign_query(void) {
  ks_store *s = open_store();
  if (!s) return;
  kiln_err e = {0};
  char url[2048];
  CHECK(ks_presign(s, "GET", "a/b", 2000, url, sizeof url, &e) == 0, "%s", e.msg);
  const char *sig = strstr(url, "sig=") + 4;
  CHECK(ks_presign_check(s, "GET", "a/b", "GET", "2000", sig, 1999, &e) == 0, "%s", e.msg);
  CHECK(ks_presign_check(s, "PUT", "a/b", "GET", "2000", sig, 1999, &e) == KILN_EINVAL && strstr(e.msg, "is for GET"), "%s", e.msg);
  CHECK(ks_presign_check(s, "GET", "a/b", NULL, "2000", sig, 1999, &e) == KILN_EINVAL, "no method");
  CHECK(ks_presign_check(s, "GET", "a/b", "GET", NULL, sig, 1999, &e) == KILN_EINVAL, "no expires");
  CHECK(ks_presign_check(s, "GET", "a/b", "GET", "2000", NULL, 1999, &e) == KILN_EINVAL, "no sig");
  static const char *const spellings[] = {"+2000", " 2000", "02000", "2000 ", "2000abc", "2e3", "", "-2000", NULL};
  for (int i = 0; spellings[i]; i++)
    CHECK(ks_presign_check(s, "GET", "a/b", "GET", spellings[i], sig, 1999, &e) == KILN_EINVAL, "expires='%s' accepted", spellings[i]);
  CHECK(ks_presign(s, "GET", "a/b", INT64_MIN, url, sizeof url, &e) == 0, "%s", e.msg);
  sig = strstr(url, "sig=") + 4;
  CHECK(ks_presign_verify(s, "GET", "a/b", INT64_MIN, sig, 1900000000, &e) == KILN_EINVAL && strstr(e.msg, "expired"), "%s", e.msg);
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
  T_RUN(test_range_strict);
  T_RUN(test_presign_query);
  T_RUN(test_tokens);
  T_RUN(test_no_links);
  T_RUN(test_conflicts);
  T_RUN(test_tmp_sweep);
  T_RUN(test_scratch_sweep);
  /* t_cleanup removes only files directly in the folder; remove the tree */
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", t_dir());
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", t_dir());
  return t_done();
}
