/* local.c — the store on a local folder.
 *
 * Layout under the root: objects/KEY (the key's '/' are folders) and tmp/
 * for puts in progress. A put writes tmp/put-XXXXXX, fsyncs it, and renames
 * it over objects/KEY, so readers never see a partial object and a crash
 * leaves only a temporary file. Parent folders are made on demand. */
#include "store/store_int.h"
#include "util/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct local { char root[900]; } local;

typedef struct lput {
  struct ks_put base;
  int fd;
  char tmp[1024], dst[2048], key[KS_KEY_MAX + 1];
} lput;

typedef struct lget {
  struct ks_get base;
  int fd;
  int64_t left;
} lget;

static void obj_path(ks_store *s, const char *key, char *out, size_t n) {
  snprintf(out, n, "%s/objects/%s", ((local *)s->impl)->root, key);
}

static int l_put_begin(ks_store *s, const char *key, ks_put **out, kiln_err *e) {
  lput *p = calloc(1, sizeof *p);
  if (!p) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  p->base.s = s;
  snprintf(p->key, sizeof p->key, "%s", key);
  snprintf(p->tmp, sizeof p->tmp, "%s/tmp/put-XXXXXX", ((local *)s->impl)->root);
  obj_path(s, key, p->dst, sizeof p->dst);
  p->fd = mkostemp(p->tmp, O_CLOEXEC);
  if (p->fd < 0) {
    int r = kiln_fail(e, KILN_EIO, "cannot start writing object '%s': %s", key, strerror(errno));
    free(p);
    return r;
  }
  *out = &p->base;
  return 0;
}

static int l_put_write(ks_put *bp, const void *buf, size_t n, kiln_err *e) {
  lput *p = (lput *)bp;
  const char *c = buf;
  while (n > 0) {
    ssize_t w = write(p->fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return kiln_fail(e, KILN_EIO, "writing object '%s' failed: %s", p->key, strerror(errno));
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static void l_put_abort(ks_put *bp) {
  lput *p = (lput *)bp;
  if (p->fd >= 0) close(p->fd);
  unlink(p->tmp);
  free(p);
}

static int l_put_commit(ks_put *bp, kiln_err *e) {
  lput *p = (lput *)bp;
  int r = 0;
  if (fsync(p->fd) != 0 || close(p->fd) != 0) r = kiln_fail(e, KILN_EIO, "saving object '%s' failed: %s", p->key, strerror(errno));
  p->fd = -1;
  if (r == 0) r = kiln_mkdirs(p->dst, 0755, e);
  if (r == 0 && rename(p->tmp, p->dst) != 0)
    r = kiln_fail(e, KILN_EIO, "cannot store object '%s': %s", p->key, strerror(errno));
  if (r < 0) unlink(p->tmp);
  free(p);
  return r;
}

static int l_get_open(ks_store *s, const char *key, int64_t off, int64_t len, ks_get **out, kiln_err *e) {
  char path[2048];
  obj_path(s, key, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kiln_fail(e, errno == ENOENT || errno == ENOTDIR ? KILN_ENOENT : KILN_EIO, "no object '%s'", key);
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return kiln_fail(e, KILN_ENOENT, "no object '%s'", key); }
  if (off > sb.st_size || (off == sb.st_size && sb.st_size > 0)) {
    close(fd);
    return kiln_fail(e, KILN_EINVAL, "range starts at byte %lld but object '%s' has %lld bytes", (long long)off, key,
                     (long long)sb.st_size);
  }
  lget *g = calloc(1, sizeof *g);
  if (!g) { close(fd); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  g->base.s = s;
  g->fd = fd;
  int64_t avail = sb.st_size - off;
  g->left = len < 0 || len > avail ? avail : len;
  if (lseek(fd, off, SEEK_SET) < 0) { close(fd); free(g); return kiln_fail(e, KILN_EIO, "seek in '%s' failed", key); }
  *out = &g->base;
  return 0;
}

static ssize_t l_get_read(ks_get *bg, void *buf, size_t n, kiln_err *e) {
  lget *g = (lget *)bg;
  if (g->left <= 0) return 0;
  if ((int64_t)n > g->left) n = (size_t)g->left;
  ssize_t r;
  do r = read(g->fd, buf, n); while (r < 0 && errno == EINTR);
  if (r < 0) return kiln_fail(e, KILN_EIO, "reading object failed: %s", strerror(errno));
  g->left -= r;
  return r;
}

static void l_get_close(ks_get *bg) {
  lget *g = (lget *)bg;
  close(g->fd);
  free(g);
}

static int l_stat(ks_store *s, const char *key, ks_stat *st, kiln_err *e) {
  char path[2048];
  obj_path(s, key, path, sizeof path);
  struct stat sb;
  if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return kiln_fail(e, KILN_ENOENT, "no object '%s'", key);
  st->size = sb.st_size;
  st->mtime = sb.st_mtime;
  return 0;
}

static int l_del(ks_store *s, const char *key, kiln_err *e) {
  char path[2048];
  obj_path(s, key, path, sizeof path);
  struct stat sb;
  if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return kiln_fail(e, KILN_ENOENT, "no object '%s'", key);
  if (unlink(path) != 0) return kiln_fail(e, KILN_EIO, "cannot delete object '%s': %s", key, strerror(errno));
  return 0;
}

static int l_rename(ks_store *s, const char *from, const char *to, kiln_err *e) {
  char a[2048], b[2048];
  obj_path(s, from, a, sizeof a);
  obj_path(s, to, b, sizeof b);
  struct stat sb;
  if (stat(a, &sb) != 0 || !S_ISREG(sb.st_mode)) return kiln_fail(e, KILN_ENOENT, "no object '%s'", from);
  int r = kiln_mkdirs(b, 0755, e);
  if (r < 0) return r;
  if (rename(a, b) != 0) return kiln_fail(e, KILN_EIO, "cannot rename '%s' to '%s': %s", from, to, strerror(errno));
  return 0;
}

typedef struct keylist { char **k; size_t n, cap; } keylist;

static int walk(const char *dir, const char *rel, keylist *kl) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *de;
  int r = 0;
  while (r == 0 && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char path[2048], key[2048];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    snprintf(key, sizeof key, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
    struct stat sb;
    if (lstat(path, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode)) r = walk(path, key, kl);
    else if (S_ISREG(sb.st_mode)) {
      if (kl->n == kl->cap) {
        size_t cap = kl->cap ? 2 * kl->cap : 64;
        char **k = realloc(kl->k, cap * sizeof *k);
        if (!k) { r = KILN_ENOMEM; break; }
        kl->k = k;
        kl->cap = cap;
      }
      if (!(kl->k[kl->n] = strdup(key))) { r = KILN_ENOMEM; break; }
      kl->n++;
    }
  }
  closedir(d);
  return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int l_list(ks_store *s, const char *prefix, ks_list_cb cb, void *arg, kiln_err *e) {
  char dir[2048];
  snprintf(dir, sizeof dir, "%s/objects", ((local *)s->impl)->root);
  keylist kl = {0};
  int r = walk(dir, "", &kl);
  if (r < 0) r = kiln_fail(e, r, "listing objects failed: out of memory");
  if (r == 0) qsort(kl.k, kl.n, sizeof *kl.k, cmp_str);
  size_t pl = strlen(prefix);
  for (size_t i = 0; r == 0 && i < kl.n; i++) {
    if (strncmp(kl.k[i], prefix, pl) != 0) continue;
    ks_stat st;
    kiln_err ignore;
    if (l_stat(s, kl.k[i], &st, &ignore) < 0) continue;   /* deleted meanwhile */
    if (cb(arg, kl.k[i], &st)) break;
  }
  for (size_t i = 0; i < kl.n; i++) free(kl.k[i]);
  free(kl.k);
  return r;
}

static void l_close(ks_store *s) { free(s->impl); }

static int l_local_path(ks_store *s, const char *key, char *out, size_t n, kiln_err *e) {
  obj_path(s, key, out, n);
  struct stat sb;
  if (stat(out, &sb) != 0 || !S_ISREG(sb.st_mode)) return kiln_fail(e, KILN_ENOENT, "no object '%s'", key);
  return 0;
}

static int l_put_file(ks_store *s, const char *key, const char *path, kiln_err *e) {
  char dst[2048];
  obj_path(s, key, dst, sizeof dst);
  int r = kiln_mkdirs(dst, 0755, e);
  if (r < 0) return r;
  if (rename(path, dst) == 0) return 0;
  if (errno != EXDEV) return kiln_fail(e, KILN_EIO, "cannot store '%s' as object '%s': %s", path, key, strerror(errno));
  return KILN_EINVAL;                            /* another file system: the front end copies */
}

static int l_scratch_dir(ks_store *s, char *out, size_t n, kiln_err *e) {
  snprintf(out, n, "%s/tmp", ((local *)s->impl)->root);
  (void)e;
  return 0;
}

static const ks_backend local_backend = {
    "local", l_put_begin, l_put_write, l_put_commit, l_put_abort, l_get_open, l_get_read, l_get_close,
    l_stat,  l_del,       l_rename,    l_list,       l_close,      l_local_path, l_put_file, l_scratch_dir};

int ks_open_local(ks_store **out, const char *root, const uint8_t *secret, size_t secret_len, kiln_err *e) {
  if (secret_len == 0 || secret_len > 64) return kiln_fail(e, KILN_EINVAL, "store secret must be 1 to 64 bytes");
  ks_store *s = calloc(1, sizeof *s);
  local *l = calloc(1, sizeof *l);
  if (!s || !l) { free(s); free(l); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  if (strlen(root) >= sizeof l->root) { free(s); free(l); return kiln_fail(e, KILN_EINVAL, "store folder path is too long"); }
  snprintf(l->root, sizeof l->root, "%s", root);
  char p[1024];
  int r = 0;
  snprintf(p, sizeof p, "%s/objects/x", root);
  if (r == 0) r = kiln_mkdirs(p, 0755, e);
  snprintf(p, sizeof p, "%s/tmp/x", root);
  if (r == 0) r = kiln_mkdirs(p, 0755, e);
  if (r < 0) { free(s); free(l); return r; }
  s->be = &local_backend;
  s->impl = l;
  memcpy(s->secret, secret, secret_len);
  s->secret_len = secret_len;
  *out = s;
  return 0;
}
