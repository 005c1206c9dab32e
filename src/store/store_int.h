/* store_int.h — the backend vtable behind store.h (like sqlite3_vfs). */
#ifndef KILN_STORE_INT_H
#define KILN_STORE_INT_H

#include "store/store.h"

typedef struct ks_backend {
  const char *name;
  int (*put_begin)(ks_store *s, const char *key, ks_put **out, kiln_err *e);
  int (*put_write)(ks_put *p, const void *buf, size_t n, kiln_err *e);
  int (*put_commit)(ks_put *p, kiln_err *e);
  void (*put_abort)(ks_put *p);
  int (*get_open)(ks_store *s, const char *key, int64_t off, int64_t len, ks_get **out, kiln_err *e);
  ssize_t (*get_read)(ks_get *g, void *buf, size_t n, kiln_err *e);
  void (*get_close)(ks_get *g);
  int (*stat)(ks_store *s, const char *key, ks_stat *st, kiln_err *e);
  int (*del)(ks_store *s, const char *key, kiln_err *e);
  int (*rename)(ks_store *s, const char *from, const char *to, kiln_err *e);
  int (*list)(ks_store *s, const char *prefix, ks_list_cb cb, void *arg, kiln_err *e);
  void (*close)(ks_store *s);
  /* optional: a local file holding the object; a local file moved in as an object */
  int (*local_path)(ks_store *s, const char *key, char *out, size_t n, kiln_err *e);
  int (*put_file)(ks_store *s, const char *key, const char *path, kiln_err *e);
  /* optional: a folder for a worker's scratch files (same file system as the objects) */
  int (*scratch_dir)(ks_store *s, char *out, size_t n, kiln_err *e);
  /* optional: removes what dead holders left in temporary storage (ks_sweep) */
  int (*sweep)(ks_store *s);
  /* optional: a presigned URL of the backend's own (S3's SigV4 query); absent: kiln's HMAC URL,
   * checked by ks_presign_check. expires: unix seconds. */
  int (*presign)(ks_store *s, const char *method, const char *key, int64_t expires, char *out, size_t n, kiln_err *e);
  /* optional: a folder on the same file system as ks_scratch_dir's, where ks_fetch keeps its
   * copies of objects (absent: the backend has local_path and no cache is needed) */
  const char *(*cache_dir)(ks_store *s, int64_t *max_bytes);
  /* optional: the object's version tag (S3's ETag) and size, for the fetch cache's names */
  int (*version)(ks_store *s, const char *key, char *tag, size_t n, ks_stat *st, kiln_err *e);
} ks_backend;

struct ks_store {
  const ks_backend *be;
  uint8_t secret[64];
  size_t secret_len;
  void *impl;                   /* the backend's state */
};

/* A handle's scratch folder (scratch.c): TMPDIR/run-XXXXXX, flock'ed while the
 * handle lives; held = 0 (a zeroed struct) until first asked for. */
typedef struct ks_scratch {
  int held, fd;
  char path[1100];
} ks_scratch;
int ks_scratch_get(ks_scratch *sc, const char *tmpdir, char *out, size_t n, kiln_err *e);
void ks_scratch_release(ks_scratch *sc);
/* Removes what dead holders left in the folder dir (put-*, run-*); <0 when it cannot be read. */
int ks_tmp_sweep(const char *dir);
/* Removes everything in the folder dfd (not the folder), never following a link. */
void ks_clear_dir(int dfd, int depth);

/* Every ks_put / ks_get starts with its store so the front end can dispatch. */
struct ks_put { ks_store *s; };
struct ks_get { ks_store *s; };

#endif
