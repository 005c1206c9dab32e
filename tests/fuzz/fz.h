/* fz.h — what the libFuzzer harnesses in tests/fuzz share (fz.c): a
 * scratch folder per process, input bytes as strings and files, the checks
 * every harness makes on kiln's messages, and (fz_server.c) a real
 * `kiln serve` HTTP server in the harness's own process on a loopback port.
 *
 * A harness is tests/fuzz/fuzz_NAME.c defining LLVMFuzzerTestOneInput (and,
 * when it needs set-up, LLVMFuzzerInitialize); seeds.c writes its seed
 * corpus. A violated invariant calls fz_fail, which prints and aborts, so
 * libFuzzer records the input as a crash. */
#ifndef KILN_FZ_H
#define KILN_FZ_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* A folder of this process's own under $TMPDIR (made on first use, removed
 * at exit). */
const char *fz_scratch(void);
/* data as a NUL-terminated string (an embedded NUL ends it); free() it. */
char *fz_str(const uint8_t *data, size_t n);
/* Writes n bytes to path (replacing it); aborts when it cannot. */
void fz_write(const char *path, const void *data, size_t n);
/* Removes path and everything under it. */
void fz_rm_rf(const char *path);
/* Prints the message and aborts (a crash libFuzzer keeps). */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Every message kiln makes from user input must be valid UTF-8 that a JSON
 * encoder takes (issue 12, item 1), non-empty when a code was returned.
 * With FZ_VERBOSE set, prints every call's answer (for checking seeds). */
void fz_check_msg(int rc, const kiln_err *e, const char *where);

/* A local store in the scratch folder (the secret "fuzz-secret"), opened once. */
struct ks_store;
struct ks_store *fz_store(void);

/* ---- fz_server.c: kiln's HTTP server on 127.0.0.1, in this process ---- */

/* Starts it once (KILN_HOME in the scratch folder, no workers, a token, an
 * object "fuzz/a" of FZ_OBJ_SIZE bytes). */
#define FZ_OBJ_SIZE 1000
void fz_server_start(void);
const char *fz_token(void);
/* A presigned query ("method=GET&expires=...&sig=...") for "fuzz/a". */
const char *fz_presigned(const char *method);
/* Sends req (n bytes, a whole HTTP request) on a new connection and reads
 * the answer to its end (the server closes it: send "Connection: close").
 * Returns the status (0 when the server closed without one); aborts when
 * no answer comes within 10 s. *body: the answer's body (NUL-terminated,
 * owned by the harness until the next call), may be NULL. */
int fz_http(const char *req, size_t n, const char **body);
/* Every FZ_SWEEP_EVERY calls: removes what requests stored (keeps fuzz/a). */
void fz_server_sweep(void);

#endif
