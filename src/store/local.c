/* local.c — the store on a local folder.
 *
 * Layout under the root: objects/KEY (the key's '/' are folders) and tmp/
 * for puts in progress. A put writes tmp/put-XXXXXX, fsyncs it, and renames
 * it over objects/KEY, so readers never see a partial object and a crash
 * leaves only a temporary file (swept at the next start once no put holds
 * it). Parent folders are made on demand. No operation follows a symbolic
 * link (open_parent).
 *
 * A handle's scratch folder (ks_scratch_dir, a worker's partial outputs) is
 * tmp/run-XXXXXX, made on first use and flock'ed for as long as the handle
 * lives; ks_close removes it. A worker killed mid-task leaves its folder
 * unlocked, and the next sweep (any store's open, or ks_sweep: the server
 * calls it when a worker dies) removes it with what is in it. */
#include "store/store_int.h"
#include "util/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct local {
  char root[900];
  int objfd;                    /* root/objects, O_DIRECTORY */
  ks_scratch scratch;           /* root/tmp/run-XXXXXX (scratch.c), made on first use */
} local;

typedef struct lput {
  struct ks_put base;
  int fd;
  char tmp[1024], key[KS_KEY_MAX + 1];
} lput;

typedef struct lget {
  struct ks_get base;
  int fd;
  int64_t left;
} lget;

static void obj_path(ks_store *s, const char *key, char *out, size_t n) {
  snprintf(out, n, "%s/objects/%s", ((local *)s->impl)->root, key);
}

/* The store never follows a link: every folder of a key is opened with
 * O_NOFOLLOW from the objects folder down (keys hold no "." or ".."
 * segments, ks_key_check), and the leaf is opened, stat'ed or replaced
 * relative to that folder without following it either.
 * Opens the folder that holds key's leaf; creates missing folders when
 * create. Returns its fd and points *leaf into key; <0 with a message:
 * ENOENT (a folder is missing), ECONFLICT (a segment is an object, not a
 * folder), EINVAL (a segment is a link). */
static int open_parent(ks_store *s, const char *key, int create, const char **leaf, kiln_err *e) {
  int dfd = dup(((local *)s->impl)->objfd);
  if (dfd < 0) return kiln_fail(e, KILN_EIO, "cannot open the store folder: %s", strerror(errno));
  const char *p = key;
  const char *slash;
  while ((slash = strchr(p, '/'))) {
    char seg[KS_SEGMENT_MAX + 1];
    size_t n = (size_t)(slash - p);
    memcpy(seg, p, n);
    seg[n] = 0;
    int fd = openat(dfd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (mkdirat(dfd, seg, 0755) != 0 && errno != EEXIST) {
        int err = errno;
        close(dfd);
        return kiln_fail(e, err == ENOSPC || err == EDQUOT ? KILN_ENOSPACE : KILN_EIO,
                         "cannot make the folder for object '%s': %s", KILN_CLIP(key, 80), strerror(err));
      }
      fd = openat(dfd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    int err = errno;
    struct stat sb;
    int islink = fd < 0 && fstatat(dfd, seg, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode);
    close(dfd);
    if (fd < 0) {
      if (islink || err == ELOOP)
        return kiln_fail(e, KILN_EINVAL, "object key '%s' passes through a symbolic link in the store; links are not followed",
                         KILN_CLIP(key, 80));
      if (err == ENOENT) return kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(key, 80));
      if (err == ENOTDIR)
        return kiln_fail(e, KILN_ECONFLICT, "object key '%s': '%s' is an object, not a folder", KILN_CLIP(key, 80),
                         KILN_CLIP(seg, 80));
      return kiln_fail(e, KILN_EIO, "cannot open the folder of object '%s': %s", KILN_CLIP(key, 80), strerror(err));
    }
    dfd = fd;
    p = slash + 1;
  }
  *leaf = p;
  return dfd;
}

/* Stats the leaf without following it: 0 for a regular file, else
 * ENOENT (absent, a folder, or a link: none is an object). */
static int leaf_stat(int dfd, const char *key, const char *leaf, struct stat *sb, kiln_err *e) {
  if (fstatat(dfd, leaf, sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb->st_mode))
    return kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(key, 80));
  return 0;
}

static int io_code(int err) { return err == ENOSPC || err == EDQUOT ? KILN_ENOSPACE : KILN_EIO; }

static int l_put_begin(ks_store *s, const char *key, ks_put **out, kiln_err *e) {
  /* refuse a clash with an existing object or folder before taking the body */
  const char *leaf;
  int dfd = open_parent(s, key, 0, &leaf, e);
  if (dfd < 0 && dfd != KILN_ENOENT) return dfd;
  if (dfd >= 0) {
    struct stat sb;
    int isdir = fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
    close(dfd);
    if (isdir) return kiln_fail(e, KILN_ECONFLICT, "object key '%s' is a folder of other objects", KILN_CLIP(key, 80));
  }
  lput *p = calloc(1, sizeof *p);
  if (!p) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  p->base.s = s;
  snprintf(p->key, sizeof p->key, "%s", key);
  snprintf(p->tmp, sizeof p->tmp, "%s/tmp/put-XXXXXX", ((local *)s->impl)->root);
  p->fd = mkostemp(p->tmp, O_CLOEXEC);
  if (p->fd < 0) {
    int r = kiln_fail(e, io_code(errno), "cannot start writing object '%s': %s", KILN_CLIP(key, 80), strerror(errno));
    free(p);
    return r;
  }
  flock(p->fd, LOCK_EX);                          /* held while this put lives: tells the start-up sweep it is not stale */
  *out = &p->base;
  return 0;
}

static int l_put_write(ks_put *bp, const void *buf, size_t n, kiln_err *e) {
  lput *p = (lput *)bp;
  const char *c = buf;
  while (n > 0) {
    ssize_t w = write(p->fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return kiln_fail(e, io_code(errno), "writing object '%s' failed: %s", KILN_CLIP(p->key, 80), strerror(errno));
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static void l_put_abort(ks_put *bp) {
  lput *p = (lput *)bp;
  unlink(p->tmp);
  if (p->fd >= 0) close(p->fd);
  free(p);
}

/* Moves the file at tmp (a path) to be object key. */
/* place()'s answer when tmp is on another file system than the store: the
 * caller copies (put_file) or says so (rename, commit). */
#define PLACE_XDEV 1

static int place(ks_store *s, const char *tmp, const char *key, kiln_err *e) {
  const char *leaf;
  int dfd = open_parent(s, key, 1, &leaf, e);
  if (dfd < 0) return dfd;
  int r = 0;
  struct stat sb;
  if (fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
    r = kiln_fail(e, KILN_ECONFLICT, "object key '%s' is a folder of other objects", KILN_CLIP(key, 80));
  else if (renameat(AT_FDCWD, tmp, dfd, leaf) != 0)     /* replaces a link itself, never its target */
    r = errno == EXDEV ? PLACE_XDEV
        : kiln_fail(e, errno == EISDIR ? KILN_ECONFLICT : io_code(errno), "cannot store object '%s': %s", KILN_CLIP(key, 80),
                    strerror(errno));
  close(dfd);
  return r;
}

static int l_put_commit(ks_put *bp, kiln_err *e) {
  lput *p = (lput *)bp;
  int r = 0;
  if (fsync(p->fd) != 0) r = kiln_fail(e, io_code(errno), "saving object '%s' failed: %s", KILN_CLIP(p->key, 80), strerror(errno));
  if (r == 0 && (r = place(p->base.s, p->tmp, p->key, e)) == PLACE_XDEV)
    r = kiln_fail(e, KILN_EIO, "the store's tmp folder is on another file system than its objects");
  if (r < 0) unlink(p->tmp);
  close(p->fd);
  free(p);
  return r;
}

static int l_get_open(ks_store *s, const char *key, int64_t off, int64_t len, ks_get **out, kiln_err *e) {
  const char *leaf;
  int dfd = open_parent(s, key, 0, &leaf, e);
  if (dfd < 0) return dfd == KILN_ECONFLICT ? kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(key, 80)) : dfd;
  int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  int err = errno;
  close(dfd);
  if (fd < 0) return kiln_fail(e, err == ENOENT || err == ELOOP || err == EISDIR ? KILN_ENOENT : KILN_EIO, "no object '%s'", KILN_CLIP(key, 80));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(key, 80)); }
  if (off > sb.st_size || (off == sb.st_size && sb.st_size > 0)) {
    close(fd);
    return kiln_fail(e, KILN_EINVAL, "range starts at byte %lld but object '%s' has %lld bytes", (long long)off, KILN_CLIP(key, 80),
                     (long long)sb.st_size);
  }
  lget *g = calloc(1, sizeof *g);
  if (!g) { close(fd); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  g->base.s = s;
  g->fd = fd;
  int64_t avail = sb.st_size - off;
  g->left = len < 0 || len > avail ? avail : len;
  if (lseek(fd, off, SEEK_SET) < 0) { close(fd); free(g); return kiln_fail(e, KILN_EIO, "seek in '%s' failed", KILN_CLIP(key, 80)); }
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
  const char *leaf;
  int dfd = open_parent(s, key, 0, &leaf, e);
  if (dfd < 0) return dfd == KILN_ECONFLICT ? kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(key, 80)) : dfd;
  struct stat sb;
  int r = leaf_stat(dfd, key, leaf, &sb, e);
  close(dfd);
  if (r < 0) return r;
  st->size = sb.st_size;
  st->mtime = sb.st_mtime;
  return 0;
}

static int l_del(ks_store *s, const char *key, kiln_err *e) {
  const char *leaf;
  int dfd = open_parent(s, key, 0, &leaf, e);
  if (dfd < 0) return dfd == KILN_ECONFLICT ? kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(key, 80)) : dfd;
  struct stat sb;
  int r = leaf_stat(dfd, key, leaf, &sb, e);
  if (r == 0 && unlinkat(dfd, leaf, 0) != 0)
    r = kiln_fail(e, errno == ENOENT ? KILN_ENOENT : KILN_EIO, "cannot delete object '%s': %s", KILN_CLIP(key, 80), strerror(errno));
  close(dfd);
  return r;
}

static int l_rename(ks_store *s, const char *from, const char *to, kiln_err *e) {
  const char *leaf;
  int dfd = open_parent(s, from, 0, &leaf, e);
  if (dfd < 0) return dfd == KILN_ECONFLICT ? kiln_fail(e, KILN_ENOENT, "no object '%s'", KILN_CLIP(from, 80)) : dfd;
  struct stat sb;
  int r = leaf_stat(dfd, from, leaf, &sb, e);
  char a[2048];
  obj_path(s, from, a, sizeof a);                 /* its folders were just opened without following links */
  close(dfd);
  if (r < 0) return r;
  r = place(s, a, to, e);
  return r == PLACE_XDEV ? kiln_fail(e, KILN_EIO, "cannot rename '%s' to '%s'", KILN_CLIP(from, 80), KILN_CLIP(to, 80)) : r;
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

static void l_close(ks_store *s) {
  local *l = s->impl;
  ks_scratch_release(&l->scratch);                /* the handle's scratch folder goes with it */
  close(l->objfd);
  free(s->impl);
}

static int sweep_tmp(const char *root) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tmp", root);
  return ks_tmp_sweep(dir);
}

static int l_sweep(ks_store *s) { return sweep_tmp(((local *)s->impl)->root); }

static int l_local_path(ks_store *s, const char *key, char *out, size_t n, kiln_err *e) {
  ks_stat st;
  int r = l_stat(s, key, &st, e);                /* no link on the way, a regular file at the end */
  if (r < 0) return r;
  obj_path(s, key, out, n);
  return 0;
}

static int l_put_file(ks_store *s, const char *key, const char *path, kiln_err *e) {
  int r = place(s, path, key, e);
  return r == PLACE_XDEV ? KILN_EINVAL : r;      /* another file system: the front end copies */
}

static int l_scratch_dir(ks_store *s, char *out, size_t n, kiln_err *e) {
  local *l = s->impl;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tmp", l->root);
  return ks_scratch_get(&l->scratch, dir, out, n, e);
}

static const ks_backend local_backend = {
    "local", l_put_begin, l_put_write, l_put_commit, l_put_abort, l_get_open, l_get_read, l_get_close,
    l_stat,  l_del,       l_rename,    l_list,       l_close,      l_local_path, l_put_file, l_scratch_dir, l_sweep};

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
  snprintf(p, sizeof p, "%s/objects", root);
  if (r == 0 && (l->objfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
    r = kiln_fail(e, KILN_EIO, "cannot open the store folder '%s': %s", p, strerror(errno));
  if (r < 0) { free(s); free(l); return r; }
  sweep_tmp(root);
  s->be = &local_backend;
  s->impl = l;
  memcpy(s->secret, secret, secret_len);
  s->secret_len = secret_len;
  *out = s;
  return 0;
}
