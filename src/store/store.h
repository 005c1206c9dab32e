/* store.h — object storage for inputs and outputs (DESIGN.md, "Store
 * backend"): streaming put, streaming get with byte ranges, stat, delete,
 * atomic rename, list, and presigned GET/PUT URLs. One vtable, one
 * implementation per backend (local.c: a folder; an S3 backend later).
 *
 * Keys are validated by every call (ks_key_check): 1..1024 bytes of
 * printable UTF-8 segments separated by '/', no leading or trailing '/', no
 * empty, '.' or '..' segment. A put is invisible until committed: readers
 * see the old object or the new one, never a half-written one. */
#ifndef KILN_STORE_H
#define KILN_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

#define KS_KEY_MAX 1024
#define KS_SEGMENT_MAX 255           /* a file name's limit on every file system we use */
#define KS_TMP_GRACE_S 60             /* the start-up sweep leaves younger put-* files alone */

typedef struct ks_store ks_store;
typedef struct ks_put ks_put;
typedef struct ks_get ks_get;

typedef struct ks_stat {
  int64_t size;
  int64_t mtime;                /* seconds since the epoch */
} ks_stat;

/* Called for each key under a prefix, in byte order; return non-zero to stop. */
typedef int (*ks_list_cb)(void *arg, const char *key, const ks_stat *st);

/* What a store URL needs besides itself (ks_open); zero means the default. */
typedef struct ks_options {
  const uint8_t *secret;        /* the local store's key for presigned URLs (1..64 bytes; the store keeps a copy) */
  size_t secret_len;
  const char *endpoint;         /* S3: scheme://host[:port]; NULL: AWS's https://s3.REGION.amazonaws.com */
  const char *region;           /* S3: default us-east-1 */
  const char *addressing;       /* S3: "path" or "virtual" (default: path on a custom endpoint, virtual on AWS) */
  const char *cache_dir;        /* S3: the local folder for scratch files and fetched inputs */
  int64_t cache_max_bytes;      /* S3: the fetched inputs kept at most (default 10 GiB) */
  size_t part_size;             /* S3: multipart part size, 5 MiB..1 GiB (default 8 MiB) */
  int64_t copy_max;             /* S3: the largest single CopyObject (default 5 GiB; larger: a multipart copy) */
  int tries;                    /* S3: attempts per request (default 6) */
  int backoff_ms;               /* S3: the first retry's delay (default 100; doubles, capped at 5 s) */
} ks_options;

/* Opens the store a URL names: "s3://BUCKET[/PREFIX]" (s3.c; credentials
 * from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; the
 * bucket is checked at open), "file:PATH" or a plain path (local.c). */
int ks_open(ks_store **out, const char *url, const ks_options *o, kiln_err *e);
int ks_open_s3(ks_store **out, const char *url, const ks_options *o, kiln_err *e);
/* The backend's name: "local", "s3". */
const char *ks_backend_name(const ks_store *s);

/* Opens a store on a local folder (created if missing). `secret` signs
 * presigned URLs; the store keeps a copy. */
int ks_open_local(ks_store **out, const char *root, const uint8_t *secret, size_t secret_len, kiln_err *e);
void ks_close(ks_store *s);

int ks_key_check(const char *key, kiln_err *e);

/* Streaming put: begin, write any number of times, then commit (atomic) or
 * abort (nothing is left). The ks_put is freed by commit and by abort. */
int ks_put_begin(ks_store *s, const char *key, ks_put **out, kiln_err *e);
int ks_put_write(ks_put *p, const void *buf, size_t n, kiln_err *e);
int ks_put_commit(ks_put *p, kiln_err *e);
void ks_put_abort(ks_put *p);

/* Streaming get of bytes [off, off + len) (len < 0: to the end). An offset
 * past the end is KILN_EINVAL (an HTTP server answers 416). */
int ks_get_open(ks_store *s, const char *key, int64_t off, int64_t len, ks_get **out, kiln_err *e);
/* Returns bytes read (0 at the end of the range) or a negative code. */
ssize_t ks_get_read(ks_get *g, void *buf, size_t n, kiln_err *e);
void ks_get_close(ks_get *g);

int ks_stat_key(ks_store *s, const char *key, ks_stat *st, kiln_err *e);
int ks_delete(ks_store *s, const char *key, kiln_err *e);
/* Atomic: `to` is replaced if it exists. */
int ks_rename(ks_store *s, const char *from, const char *to, kiln_err *e);
int ks_list(ks_store *s, const char *prefix, ks_list_cb cb, void *arg, kiln_err *e);

/* For workers. ks_local_path: a file holding the object that can be read
 * in place (KILN_ENOENT when the object is missing; KILN_EINVAL when the
 * backend has no local files: download it with ks_get instead).
 * ks_put_file: the file at path becomes object key atomically (moved when
 * it can be, else copied; path is gone or left as it was either way).
 * ks_scratch_dir: a folder for a worker's temporary files, on the same
 * file system as the objects when the backend has one (else the system's
 * temporary folder); on a local store it is the handle's own (tmp/run-*),
 * made on first use, held while the handle lives and removed by ks_close. */
int ks_local_path(ks_store *s, const char *key, char *out, size_t n, kiln_err *e);
/* A local file with object key's bytes, for reading in place (workers'
 * inputs, the planner's probe): on a store with local files the object
 * itself (*linked = 0: leave it alone); on others a hard link, in the
 * handle's scratch folder, to a copy in the store's fetch cache (*linked =
 * 1: unlink it when done). The cache keeps a copy per object version
 * (ETag), downloaded once, and removes the least recently used copies over
 * its size bound; a link handed out keeps its bytes until it is unlinked.
 * The link's name ends with the key's own file name (extensions kept). */
int ks_fetch(ks_store *s, const char *key, char *out, size_t n, int *linked, kiln_err *e);
int ks_put_file(ks_store *s, const char *key, const char *path, kiln_err *e);
int ks_scratch_dir(ks_store *s, char *out, size_t n, kiln_err *e);
/* Removes what dead holders left in the store's temporary folder: puts
 * (tmp/put-*) and scratch folders no live handle holds. A store's open does
 * it too; the server calls it when it sees a worker die. 0, or <0 when the
 * folder cannot be read. */
int ks_sweep(ks_store *s);

/* Presigned URLs. A local store's: "/v1/objects/KEY?method=GET&expires=T&sig=HEX"
 * (relative: the server's base goes before it), where sig is
 * HMAC-SHA256(secret, "METHOD\nKEY\nEXPIRES") in hex, usable without a token
 * until `expires` (unix seconds). An S3 store's: an absolute SigV4 URL of
 * the bucket itself (S3 checks it; at most 7 days). */
int ks_presign(ks_store *s, const char *method, const char *key, int64_t expires, char *out, size_t n,
               kiln_err *e);
/* 0 if sig is valid for (method, key, expires) and now < expires; else
 * KILN_EINVAL with the reason (expired, bad signature). Constant-time compare. */
int ks_presign_verify(ks_store *s, const char *method, const char *key, int64_t expires, const char *sig,
                      int64_t now, kiln_err *e);
/* The query of a presigned URL as the request gives it (qmethod, qexpires,
 * qsig: the values of ?method=, &expires=, &sig=; any may be NULL) checked
 * for a request doing `method` on key at `now`: 0, or KILN_EINVAL with the
 * reason (wrong method, missing member, bad signature, expired). */
int ks_presign_check(ks_store *s, const char *method, const char *key, const char *qmethod, const char *qexpires,
                     const char *qsig, int64_t now, kiln_err *e);

/* An HTTP Range header against an object of size bytes: "bytes=A-B",
 * "bytes=A-" or "bytes=-N" (one range). 0 and [*off, *off + *len) within
 * the object, or -1 when it cannot be satisfied (answer 416). */
int ks_range_parse(const char *h, int64_t size, int64_t *off, int64_t *len);

#endif
