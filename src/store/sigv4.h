/* sigv4.h — AWS Signature Version 4 (the S3 backend's signer, written in
 * kiln): canonical request, string to sign, signing key, the Authorization
 * header, and query-string (presigned) signing. Checked against AWS's own
 * test suite (tests/test_sigv4.py) and, for presigned URLs, byte for byte
 * against an independent signer (npm aws4).
 *
 * Two rule sets: S3's (s3 = 1: the path is encoded once and never
 * normalised, since an S3 key may hold "//" or "..") and every other
 * service's (the path normalised as RFC 3986 says, each segment encoded
 * twice). Names and values are passed raw (not percent-encoded); the
 * signer encodes them. Nothing here touches the network or the clock. */
#ifndef KILN_SIGV4_H
#define KILN_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct ks_kv {
  const char *k, *v;
} ks_kv;

typedef struct ks_sigv4_key {
  const char *access_key, *secret_key;
  const char *token;                  /* session token or NULL (presign adds X-Amz-Security-Token) */
  const char *region, *service;       /* "us-east-1", "s3" */
  int s3;                             /* S3's path rules (above) */
} ks_sigv4_key;

typedef struct ks_sigv4_req {
  const char *method;                 /* "GET" */
  const char *path;                   /* raw: "/bucket/a key" */
  const ks_kv *query;                 /* raw names and values; a NULL value is "" */
  int nquery;
  const ks_kv *headers;               /* every header to sign, "Host" among them, in the order sent */
  int nheaders;
  const char *payload_hash;           /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
  const char *amz_date;               /* "20150830T123600Z" (the X-Amz-Date the request carries) */
} ks_sigv4_req;

typedef struct ks_sigv4_out {
  char *creq;                         /* the canonical request (malloc'd) */
  char *sts;                          /* the string to sign (malloc'd) */
  char *authorization;                /* the Authorization header's value (malloc'd) */
  char signature[65];
} ks_sigv4_out;

/* Signs req with key. 0 and *out filled (free with ks_sigv4_out_release),
 * or KILN_EINVAL naming what is malformed (a date that is not
 * YYYYMMDDTHHMMSSZ, no Host header) or KILN_ENOMEM. */
int ks_sigv4_sign(const ks_sigv4_key *key, const ks_sigv4_req *req, ks_sigv4_out *out, kiln_err *e);
void ks_sigv4_out_release(ks_sigv4_out *out);

/* A presigned request's query string: query (may be empty) plus
 * X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders=host,
 * -Security-Token when key has a token, all encoded and in canonical
 * order, then &X-Amz-Signature=. host is the Host header's value (with
 * ":port" when the URL has one); the payload is UNSIGNED-PAYLOAD for S3.
 * Returns a malloc'd string in *qs, or <0. expires_s: 1..604800. */
int ks_sigv4_presign(const ks_sigv4_key *key, const char *method, const char *host, const char *path, const ks_kv *query,
                     int nquery, int64_t expires_s, const char *amz_date, char **qs, kiln_err *e);

/* The canonical (encoded, sorted) query string of raw pairs, malloc'd; NULL when out of memory. */
char *ks_sigv4_query(const ks_kv *q, int n);
/* The X-Amz-Date of unix time t: "YYYYMMDDTHHMMSSZ" (16 characters). */
void ks_sigv4_date(int64_t t, char out[17]);
/* Appends s percent-encoded as SigV4 wants (unreserved A-Z a-z 0-9 - . _ ~
 * kept, '/' kept when keep_slash, every other byte %XX upper-case) to out
 * (n bytes, NUL-terminated). Returns the length it needed, as snprintf. */
size_t ks_uri_encode(const char *s, int keep_slash, char *out, size_t n);

#endif
