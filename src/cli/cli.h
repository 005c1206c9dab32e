/* cli.h — the commands of the kiln binary, one file each in src/cli. main.c
 * holds the table (like git.c). Each command parses its own arguments and
 * returns the process exit status: 0 success, 1 the job failed (input,
 * media, I/O), 2 bad usage or parameters. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdint.h>

#include "util/err.h"

typedef struct kc_cmd {
  const char *name;
  int (*main)(int argc, char **argv);   /* argv[0] is the command name */
  const char *usage;
  const char *summary;
  const char *help;                      /* the text of `kiln help NAME` */
  int hidden;
} kc_cmd;

int kc_run(int argc, char **argv);
int kc_probe(int argc, char **argv);
int kc_functions(int argc, char **argv);
int kc_sample(int argc, char **argv);
int kc_token(int argc, char **argv);
int kc_serve(int argc, char **argv);
int kc_worker(int argc, char **argv);
int kc_agent(int argc, char **argv);
int kc_zygote(int argc, char **argv);
int kc_plan(int argc, char **argv);
int kc_bench(int argc, char **argv);
int kc_models(int argc, char **argv);
/* client.c: commands that talk to a running `kiln serve` over HTTP
 * (--url / KILN_URL, --token / KILN_TOKEN). */
int kc_submit(int argc, char **argv);
int kc_status(int argc, char **argv);
int kc_jobs(int argc, char **argv);
int kc_cancel(int argc, char **argv);
int kc_usage(int argc, char **argv);

/* params.c: --param KEY=VALUE and --params FILE, shared by the commands
 * that run a function. kc_params_opt returns 1 when argv[*i] (and its
 * value) was one of them, 0 when not, < 0 on an error. */
struct json_t;
typedef struct kc_params {
  struct json_t *raw;           /* the parameters so far (owned) */
  const char **kvs;
  int nkv;
} kc_params;
int kc_params_init(kc_params *p, int argc);
int kc_params_opt(kc_params *p, int argc, char **argv, int *i, kiln_err *e);
int kc_params_finish(kc_params *p, kiln_err *e);
void kc_params_release(kc_params *p);

/* Exit status for a kiln error code. */
int kc_exit_code(int code);
/* Prints "kiln: error: MESSAGE" (and a usage hint for usage errors). */
int kc_report(const kiln_err *e, const char *usage);

/* progress.c: a live bar on a TTY, plain lines otherwise. */
typedef struct kc_progress {
  const char *label;
  int tty, quiet;
  double t0, last;
  int64_t last_frames;
} kc_progress;
void kc_progress_init(kc_progress *p, const char *label, int quiet);
void kc_progress_cb(void *arg, int64_t done, int64_t total);
void kc_progress_end(kc_progress *p, int64_t frames, int ok);
double kc_now(void);

#endif
