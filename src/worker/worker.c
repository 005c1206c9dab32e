/* worker.c — one worker process serving one function.
 *
 *   start ──enter (model load; cold start = ready - spawned)──> idle
 *   idle ──kq_claim──> busy ──run──> kq_complete | kq_fail ──> idle
 *   idle for idle_timeout (and not needed for min_workers) ──exit──> gone
 *
 * A heartbeat thread (its own queue connection) extends the lease every
 * third of it and reports progress (frames done, phase, ETA) at most every
 * 250 ms; if the job was cancelled or the lease lost, it sets the cancel
 * flag and the function stops. The output is written to a scratch file on
 * the store's file system and becomes the object only when complete
 * (ks_put_file): a retried task overwrites, never half-writes. A join
 * removes its chunks before it records its success, so no kill leaves them
 * in the store; a re-run that finds them gone and the output stored joins
 * again from the output (the same frames and audio). The worker
 * registers itself in the queue's workers table so the autoscaler and
 * GET /v1/functions see it; SIGTERM puts a running task back in the queue.
 * Waiting for work: poll() on the wake pipe from the server (a byte per
 * arrival), else every 200 ms (a worker started by hand). When the pipe
 * closes, the server that started the worker died: it finishes the task
 * it has (so a job survives a server crash) and leaves.
 * Memory: the worker holds itself to its function's memory_mb (memlimit.c)
 * and pixel budget (ke_apply_limits) before its enter hook runs. A task
 * that ran out of memory fails as out_of_memory (whatever error the code
 * that met the failed allocation reported), and the worker then leaves, so
 * that the one retry the queue allows runs in a fresh process. */
#include "worker/worker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/cost.h"
#include "util/log.h"
#include "worker/memlimit.h"

static volatile sig_atomic_t g_stop;
static void on_term(int sig) { (void)sig; g_stop = 1; }

typedef struct run {
  const kw_opts *o;
  const char *worker_id;
  char job[KQ_ID_LEN];
  pthread_mutex_t *mu;          /* the beat's */
  pthread_cond_t *cv;
  int done;                     /* the task ended: the heartbeat thread lets go of it */
  int64_t last_beat;
  volatile int cancel;          /* read by the function */
  int64_t frames_done, frames_total, eta_ms;
  const char *phase;
  int dirty;                    /* progress changed since the last heartbeat */
  int64_t first_frame_ms;
  int lost;                     /* KILN_ECANCELLED or KILN_EINVAL from a heartbeat */
} run;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_progress(void *arg, int64_t done, int64_t total) {
  run *r = arg;
  int64_t now = mono_ms();
  pthread_mutex_lock(r->mu);
  if (!r->first_frame_ms) r->first_frame_ms = now;
  r->frames_done = done;
  r->frames_total = total;
  r->phase = total > 0 && done >= total ? "saving" : "processing";
  double el = (double)(now - r->first_frame_ms);
  r->eta_ms = done > 0 && total >= done ? (int64_t)(el / (double)done * (double)(total - done)) : -1;
  r->dirty = 1;
  pthread_mutex_unlock(r->mu);
}

static void set_phase(run *r, const char *phase) {
  pthread_mutex_lock(r->mu);
  r->phase = phase;
  r->dirty = 1;
  pthread_cond_signal(r->cv);
  pthread_mutex_unlock(r->mu);
}

/* The heartbeat thread, one per worker: it follows whichever run is
 * current (beat.cur) with its own queue connection. */
typedef struct beat {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  run *cur;
  int quit;
  kq *q;
  int64_t lease;
} beat;

static void *heartbeat_main(void *arg) {
  beat *b = arg;
  kiln_err e = {0};
  pthread_mutex_lock(&b->mu);
  while (!b->quit) {
    run *r = b->cur;
    if (!r) { pthread_cond_wait(&b->cv, &b->mu); continue; }
    if (r->done) { b->cur = NULL; pthread_cond_broadcast(&b->cv); continue; }
    int64_t now = mono_ms();
    if ((r->dirty && now - r->last_beat >= 250) || now - r->last_beat >= b->lease / 3) {
      kq_progress p = {r->frames_done, r->frames_total, r->eta_ms, r->phase};
      r->dirty = 0;
      r->last_beat = now;
      pthread_mutex_unlock(&b->mu);              /* the run stays current until we let go of it */
      int rc = kq_heartbeat(b->q, r->job, r->worker_id, &p, b->lease, ke_now_ms(), &e);
      pthread_mutex_lock(&b->mu);
      if (rc == KILN_ECANCELLED || rc == KILN_EINVAL) {
        r->lost = rc;
        r->cancel = 1;
        klog(KLOG_INFO, "worker %s: stopping job %s: %s", r->worker_id, r->job, e.msg);
      } else if (rc < 0) {
        klog(KLOG_WARN, "worker %s: heartbeat failed: %s", r->worker_id, e.msg);
      }
    }
    if (g_stop) r->cancel = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;                 /* a signal (SIGTERM) is noticed within 50 ms */
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&b->cv, &b->mu, &ts);
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

typedef struct worker {
  const kw_opts *o;
  const ke_fnconf *fc;
  kq *q, *hbq;                  /* claims and results; heartbeats (another thread) */
  beat beat;
  ks_store *store;
  void *state;
  kq_worker row;
  int64_t cold_ms;              /* charged to the first task */
  int charged;
  int mem_limited;              /* memory_mb is enforced (kw_mem_limit) */
  int out_of_memory;            /* the last task ran out of memory: leave */
} worker;

static void put_row(worker *w, kq_wstate st, const char *job) {
  kiln_err e = {0};
  w->row.state = st;
  snprintf(w->row.job, sizeof w->row.job, "%s", job ? job : "");
  w->row.last_ms = ke_now_ms();
  if (kq_worker_put(w->q, &w->row, &e) < 0) klog(KLOG_WARN, "worker %s: %s", w->row.id, e.msg);
}

/* Error messages name the object, not the server's files: the input's
 * path becomes its key, the scratch folder goes. */
static void redact(char *msg, size_t n, const char *path, const char *key, const char *scratch) {
  char out[sizeof(((kiln_err *)0)->msg)];
  size_t o = 0;
  const char *p = msg;
  size_t pl = path && *path ? strlen(path) : 0, sl = scratch && *scratch ? strlen(scratch) : 0;
  while (*p && o + 1 < sizeof out) {
    if (pl && !strncmp(p, path, pl)) {
      o += (size_t)snprintf(out + o, sizeof out - o, "%s", key ? key : "input");
      p += pl;
    } else if (sl && !strncmp(p, scratch, sl)) {
      p += sl;
      if (*p == '/') p++;
    } else {
      out[o++] = *p++;
    }
    if (o >= sizeof out) o = sizeof out - 1;
  }
  out[o] = 0;
  snprintf(msg, n, "%s", out);
}

/* Reports a finished task to the cost model (cost.h), which learns from it. */
static void learn(worker *w, const kq_job *j, const km_pipeline_stats *st, int64_t run_ms, int64_t bytes) {
  kiln_err e = {0};
  if (ke_cost_report_task(w->q, w->o->cfg, j, st->frames_out, (double)st->out_w * st->out_h / 1e6, run_ms, bytes, &e) < 0)
    klog(KLOG_DEBUG, "worker %s: cost model: %s", w->row.id, e.msg);
}

/* A test hook (tests/test_chaos.py): with KILN_TEST_JOIN_DIE=deleted or
 * =recorded, the first run of a join dies (SIGKILL) at that point: once its
 * chunks are removed, or once its success is recorded. */
static void join_die_at(const kq_job *j, const char *point) {
  const char *at = getenv("KILN_TEST_JOIN_DIE");
  if (at && j->kind == KQ_JOIN && j->attempts == 1 && !strcmp(at, point)) raise(SIGKILL);
}

/* Runs one claimed job to its end (complete, fail, or back to the queue). */
/* Runs j and records how it ended. A success also claims the next task of
 * the function into *next (one transaction: kq_complete_claim) while the
 * worker means to go on; returns 1 when it did. */
static int run_job(worker *w, kq_job *j, kq_job *next) {
  int claimed = 0;
  kiln_err e = {0};
  int64_t t0 = ke_now_ms();
  const kf_desc *fn = w->fc->fn;
  run r;
  memset(&r, 0, sizeof r);
  r.o = w->o;
  r.worker_id = w->row.id;
  r.phase = "starting";
  r.eta_ms = -1;
  snprintf(r.job, sizeof r.job, "%s", j->id);
  kw_mem_reset();                                 /* allocation failures from here on are this task's */
  r.mu = &w->beat.mu;
  r.cv = &w->beat.cv;
  pthread_mutex_lock(r.mu);
  r.last_beat = mono_ms();                        /* the claim set the lease */
  w->beat.cur = &r;
  pthread_cond_broadcast(r.cv);
  pthread_mutex_unlock(r.mu);

  json_error_t je;
  json_t *spec = json_loads(j->spec, 0, &je), *params = NULL;
  const char *in_key = json_string_value(json_object_get(spec, "input"));
  /* where the output goes: a whole job's output; a chunk under its job's prefix; a join's as its job's output */
  const char *ext = json_string_value(json_object_get(spec, "ext"));
  if (!ext) ext = fn->out_ext ? fn->out_ext : "mp4";
  char out_key[KS_KEY_MAX + 1];
  const json_t *range = json_object_get(spec, "range");
  const json_t *chunks = json_object_get(spec, "chunks");
  char in_path[4200] = "", scratch[4200] = "", out_path[4400] = "";
  char **chunk_paths = NULL;
  int nchunks = 0, chunk_linked = 0;           /* chunk_linked: the paths are ks_fetch's links, unlinked after the run */
  int rc = 0;
  if (!spec) rc = kiln_fail(&e, KILN_EINTERNAL, "job %s has a damaged spec", j->id);
  if (rc == 0 && (rc = kf_validate(fn, json_object_get(spec, "params"), &params, &e)) < 0) {}
  int in_linked = 0;
  if (rc == 0 && in_key && (rc = ks_fetch(w->store, in_key, in_path, sizeof in_path, &in_linked, &e)) < 0) {
    if (rc == KILN_ENOENT) kiln_fail(&e, KILN_ENOENT, "input object '%s' does not exist (upload it first)", in_key);
  }
  if (rc == 0 && in_key && fn->out_ext_for && j->kind != KQ_CHUNK && j->kind != KQ_JOIN) {
    const char *x = fn->out_ext_for(in_path);      /* a still image's PNG, say */
    if (x) ext = x;
  }
  if (j->kind == KQ_CHUNK) snprintf(out_key, sizeof out_key, "jobs/%s/chunk-%d.%s", j->parent, j->part, ext);
  else if (j->kind == KQ_JOIN) snprintf(out_key, sizeof out_key, "jobs/%s/output.%s", j->parent, ext);
  else snprintf(out_key, sizeof out_key, "jobs/%s/output.%s", j->id, ext);
  if (rc == 0 && j->kind == KQ_JOIN && json_array_size(chunks) > 0) {
    /* the chunks' files, in order; none at all: chunks without output (noop) */
    size_t n = json_array_size(chunks), missing = 0;
    chunk_paths = calloc(n, sizeof *chunk_paths);
    for (size_t k = 0; chunk_paths && k < n; k++) {
      char pth[4200];
      kiln_err ce = {0};
      int lk = 0;
      if (ks_fetch(w->store, json_string_value(json_array_get(chunks, k)), pth, sizeof pth, &lk, &ce) < 0) missing++;
      else {
        chunk_linked |= lk;
        chunk_paths[nchunks++] = strdup(pth);
      }
    }
    char op[4200];
    kiln_err oe = {0};
    int olk = 0;
    int from_output = chunk_paths && missing && ks_fetch(w->store, out_key, op, sizeof op, &olk, &oe) == 0;
    if (from_output) {
      /* an earlier run stored the output (whole: it is renamed into place), then died removing the
       * chunks or before recording its success: the output holds every chunk's frames, so this run
       * joins from it alone (the same frames, the source's audio muxed the same way) */
      for (int k = 0; k < nchunks; k++) {
        if (chunk_linked) unlink(chunk_paths[k]);
        free(chunk_paths[k]);
      }
      chunk_linked = olk;
      chunk_paths[0] = strdup(op);
      nchunks = chunk_paths[0] ? 1 : 0;
      klog(KLOG_INFO, "worker %s: join of job %s: an earlier run stored the output and removed chunks; joining from the output",
           w->row.id, j->parent);
    }
    if (!chunk_paths || (from_output && nchunks == 0)) rc = kiln_fail(&e, KILN_ENOMEM, "out of memory");
    else if (!from_output && missing && missing < n)
      rc = kiln_fail(&e, KILN_EINTERNAL, "%zu of the %zu chunks of job %s are missing", missing, n, j->parent);
  }
  if (rc == 0 && (rc = ks_scratch_dir(w->store, scratch, sizeof scratch, &e)) == 0)
    snprintf(out_path, sizeof out_path, "%s/%s-%s.%s", scratch, j->id, w->row.id, ext);
  kf_result res;
  memset(&res, 0, sizeof res);
  if (rc == 0) {
    kf_task t = {.input = in_key ? in_path : NULL, .output = out_path, .params = params, .start = 0, .end = -1,
                 .out_start = (int64_t)json_integer_value(json_array_get(range, 0)),
                 .out_end = (int64_t)json_integer_value(json_array_get(range, 1)),
                 .inputs = (const char *const *)chunk_paths, .ninputs = nchunks,
                 .threads = w->fc->res.cpus, .progress = on_progress, .progress_arg = &r, .cancel = &r.cancel,
                 .memory_mb = w->fc->res.memory_mb};
    rc = fn->run(w->state, &t, &res, &e);
  }
  for (int k = 0; k < nchunks; k++) {
    if (chunk_linked) unlink(chunk_paths[k]);
    free(chunk_paths[k]);
  }
  free(chunk_paths);
  if (in_linked) unlink(in_path);
  struct stat sb;
  int64_t bytes = 0;
  if (rc == 0 && !res.no_output) {
    set_phase(&r, "saving");
    if (stat(out_path, &sb) == 0) bytes = sb.st_size;
    rc = ks_put_file(w->store, out_key, out_path, &e);
  }
  if (out_path[0]) remove(out_path);              /* whatever is left of a failed or cancelled run */
  size_t failed_bytes = 0;
  int oom = kw_mem_failed(&failed_bytes);
  if (rc < 0 && rc != KILN_ECANCELLED && (oom || rc == KILN_ENOMEM || rc == KILN_EOOM)) {
    /* whatever the code that met the failed allocation made of it (a "corrupt" frame, an encoder's
     * "generic error"), the task ran out of memory */
    char orig[sizeof e.msg], got[64] = "";
    snprintf(orig, sizeof orig, "%s", e.msg);
    if (oom && failed_bytes) snprintf(got, sizeof got, " (an allocation of %.1f MB failed)", (double)failed_bytes / (1 << 20));
    else if (oom) snprintf(got, sizeof got, " (a new thread's stack did not fit)");
    if (w->mem_limited)
      rc = kiln_fail(&e, KILN_EOOM, "%s needed more memory than its worker's memory_mb of %d MB%s; raise "
                     "functions.%s.memory_mb in the config, or send a smaller input (%s)",
                     fn->name, w->fc->res.memory_mb, got, fn->name, orig);
    else
      rc = kiln_fail(&e, KILN_EOOM, "%s ran out of memory: the machine had none left%s (%s)", fn->name, got, orig);
    w->out_of_memory = 1;
  }

  pthread_mutex_lock(r.mu);
  r.done = 1;
  pthread_cond_broadcast(r.cv);
  while (w->beat.cur == &r) pthread_cond_wait(r.cv, r.mu);
  pthread_mutex_unlock(r.mu);

  int64_t now = ke_now_ms();
  int units = 1;
  double price = ke_price_per_s(w->o->cfg, &w->fc->res, &units);
  kq_cost cost = {0, 0, 0};
  int64_t billed = now - t0;
  if (!w->charged) { cost.cold_start_ms = w->cold_ms; billed += w->cold_ms; w->charged = 1; }
  cost.resource_ms = billed * units;
  cost.usd = (double)billed / 1000 * price;

  kiln_err e2 = {0};
  if (rc == 0) {
    const km_pipeline_stats *st = &res.stats;
    json_t *stats = json_pack("{s:I, s:I, s:f}", "frames", (json_int_t)st->frames_out, "frames_in",
                              (json_int_t)st->frames_in, "seconds", (double)(now - t0) / 1000);
    if (st->out_w > 0) {
      json_object_set_new(stats, "width", json_integer(st->out_w));
      json_object_set_new(stats, "height", json_integer(st->out_h));
      json_object_set_new(stats, "fps", json_real(av_q2d(st->out_fps)));
      json_object_set_new(stats, "duration", json_real(st->out_duration));
      json_object_set_new(stats, "audio", json_string(st->audio));
    }
    if (st->frames_out > 0)
      json_object_set_new(stats, "ms_per_frame", json_real((double)(now - t0) / (double)st->frames_out));
    if (res.info) json_object_update_missing(stats, res.info);   /* the function's own figures (kf_result.info) */
    json_t *result = res.no_output ? json_pack("{s:[], s:o}", "outputs", "stats", stats)
                                   : json_pack("{s:[{s:s, s:I}], s:o}", "outputs", "key", out_key, "bytes",
                                               (json_int_t)bytes, "stats", stats);
    char *rs = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    /* a join's chunks are in its output now: they go before its success is recorded, so that no
     * moment leaves them behind (a run that dies after this joins again from the output: above) */
    if (j->kind == KQ_JOIN)
      for (size_t k = 0; k < json_array_size(chunks); k++) ks_delete(w->store, json_string_value(json_array_get(chunks, k)), &e2);
    join_die_at(j, "deleted");
    /* go on: not stopping, not at max_tasks (w->row.tasks counts this one) */
    int go_on = !g_stop && !(w->o->max_tasks > 0 && w->row.tasks >= w->o->max_tasks);
    int got = go_on ? kq_complete_claim(w->q, j->id, w->row.id, rs, &cost, st->frames_out, now, w->fc->fn->name,
                                        w->o->cfg->lease_ms, next, &e2)
                    : kq_complete(w->q, j->id, w->row.id, rs, &cost, st->frames_out, now, &e2);
    if (got < 0) {
      klog(KLOG_WARN, "worker %s: job %s finished but could not be recorded: %s", w->row.id, j->id, e2.msg);
      if (e2.code == KILN_ECANCELLED) ks_delete(w->store, out_key, &e2);   /* cancelled meanwhile: its output goes */
    } else {
      join_die_at(j, "recorded");
      klog(KLOG_INFO, "worker %s: %s %s succeeded in %lld ms", w->row.id,
           j->kind == KQ_CHUNK ? "chunk of job" : j->kind == KQ_JOIN ? "join of job" : "job",
           j->kind == KQ_WHOLE ? j->id : j->parent, (long long)(now - t0));
      learn(w, j, st, now - t0, bytes);
      claimed = go_on && got == 1;
    }
    free(rs);
  } else if (r.lost) {
    /* cancelled: the run still cost what it cost; a lost lease is another worker's now */
    if (r.lost == KILN_ECANCELLED && kq_account(w->q, j->id, &cost, &e2) < 0)
      klog(KLOG_WARN, "worker %s: could not record the cost of cancelled job %s: %s", w->row.id, j->id, e2.msg);
  } else if (rc == KILN_ECANCELLED && g_stop) {   /* stopped, not failed: back in the queue, no attempt used */
    if (kq_account(w->q, j->id, &cost, &e2) < 0 || kq_requeue(w->q, j->id, w->row.id, now, &e2) < 0)
      klog(KLOG_WARN, "worker %s: could not put job %s back in the queue: %s", w->row.id, j->id, e2.msg);
  } else {
    const char *cls = kiln_errclass(rc);
    redact(e.msg, sizeof e.msg, in_path, in_key, scratch);
    int retrying = 0;
    if (kq_fail(w->q, j->id, w->row.id, cls, e.msg, &cost, now, &retrying, &e2) < 0)
      klog(KLOG_WARN, "worker %s: could not record the failure of job %s: %s", w->row.id, j->id, e2.msg);
    klog(KLOG_INFO, "worker %s: job %s failed (%s%s): %s", w->row.id, j->id, cls, retrying ? ", will retry" : "", e.msg);
    if (!retrying && (j->kind == KQ_CHUNK || j->kind == KQ_JOIN) && j->parent[0]) {   /* the whole job failed: its chunks go */
      int n = ke_drop_chunks(w->store, j->parent);
      if (n) klog(KLOG_INFO, "worker %s: job %s failed: removed %d chunk(s) of it from the store", w->row.id, j->parent, n);
    }
    if (rc != KILN_EOOM) w->out_of_memory = 0;
  }
  json_decref(res.info);
  json_decref(params);
  json_decref(spec);
  return claimed;
}

/* Waits up to ms for a wake byte (or polls). Returns 1 when woken. */
static int wait_work(worker *w, int *wake_fd, int64_t ms) {
  if (ms <= 0) return 0;
  struct pollfd p = {*wake_fd, POLLIN, 0};
  int timeout = *wake_fd >= 0 ? (int)(ms > 1000 ? 1000 : ms) : (int)(ms > 200 ? 200 : ms);
  int n = poll(*wake_fd >= 0 ? &p : NULL, *wake_fd >= 0 ? 1 : 0, timeout);
  if (n > 0) {
    char buf[64];
    ssize_t got = read(*wake_fd, buf, sizeof buf);
    if (got == 0) { close(*wake_fd); *wake_fd = -2; }   /* the server went away */
    return got > 0;
  }
  (void)w;
  return 0;
}

static void stop_beat(beat *b, pthread_t th) {
  pthread_mutex_lock(&b->mu);
  b->quit = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  pthread_join(th, NULL);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
}

typedef struct live_count { const char *host; int n; } live_count;
static int count_live(void *arg, const kq_worker *kw) {   /* min_workers are kept per host */
  live_count *c = arg;
  c->n += !strcmp(kw->host, c->host);
  return 0;
}

int kw_main(const kw_opts *o, kiln_err *e) {
  worker w;
  memset(&w, 0, sizeof w);
  w.o = o;
  w.fc = ke_fn(o->cfg, o->fn);
  if (!w.fc) return kiln_fail(e, KILN_EUSAGE, "no function '%s' (see `kiln functions`)", o->fn);
  int r = ke_open_queue(o->cfg, 1, &w.q, e);
  if (r == 0) r = ke_open_queue(o->cfg, 1, &w.hbq, e);
  if (r == 0) r = ke_open_store(o->cfg, &w.store, e);
  if (r < 0) { kq_close(w.q); kq_close(w.hbq); return r; }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  char host[64];
  ke_host_name(host, sizeof host);
  ke_worker_id(o->fn, (int)getpid(), w.row.id, sizeof w.row.id);
  snprintf(w.row.fn, sizeof w.row.fn, "%s", o->fn);
  snprintf(w.row.host, sizeof w.row.host, "%s", host);
  w.row.pid = (int)getpid();
  w.row.started_ms = o->spawned_ms > 0 ? o->spawned_ms : ke_now_ms();
  put_row(&w, KQ_W_STARTING, NULL);
  pthread_mutex_init(&w.beat.mu, NULL);
  pthread_cond_init(&w.beat.cv, NULL);
  w.beat.q = w.hbq;
  w.beat.lease = o->cfg->lease_ms;
  pthread_t hb;
  if (pthread_create(&hb, NULL, heartbeat_main, &w.beat) != 0) {
    put_row(&w, KQ_W_EXITED, NULL);
    ks_close(w.store);
    kq_close(w.q);
    kq_close(w.hbq);
    return kiln_fail(e, KILN_EINTERNAL, "cannot start the heartbeat thread");
  }

  const kf_desc *fn = w.fc->fn;
  ke_apply_limits(o->cfg, o->fn);                 /* the pixel budget of this function's frames */
  const char *why = NULL;
  kiln_err le = {0};
  int lim = kw_mem_limit(w.fc->res.memory_mb, &why, &le);   /* memory_mb, from what the worker holds now */
  w.mem_limited = lim > 0;
  if (lim < 0) klog(KLOG_WARN, "worker %s: memory_mb is not enforced: %s", w.row.id, le.msg);
  else if (lim == 0) klog(KLOG_INFO, "worker %s: memory_mb is not enforced: %s", w.row.id, why);
  else klog(KLOG_DEBUG, "worker %s: memory limited to %d MB (memory_mb) over its %.0f MB at start", w.row.id,
            w.fc->res.memory_mb, (double)kw_mem_data() / (1 << 20));
  if (fn->enter && (r = fn->enter(&w.state, e)) < 0) {
    kiln_err_prefix(e, "%s: loading the function failed", fn->name);
    stop_beat(&w.beat, hb);
    put_row(&w, KQ_W_EXITED, NULL);
    ks_close(w.store);
    kq_close(w.q);
    kq_close(w.hbq);
    return r;
  }
  w.row.ready_ms = ke_now_ms();
  w.cold_ms = w.row.ready_ms - w.row.started_ms;
  put_row(&w, KQ_W_IDLE, NULL);
  klog(KLOG_INFO, "worker %s: ready (cold start %lld ms)", w.row.id, (long long)w.cold_ms);
  {                                               /* the planner's cold-start figure */
    kiln_err me = {0};
    ke_cost_report_cold(w.q, w.fc, w.cold_ms, &me);
  }

  int wake_fd = o->wake_fd;
  int idle_s = o->idle_timeout_s >= 0 ? o->idle_timeout_s : w.fc->res.idle_timeout_s;
  int64_t idle_since = mono_ms();
  kq_job j;
  int held = 0;                                   /* j: claimed with the last success (kq_complete_claim) */
  while (!g_stop) {
    kiln_err ce = {0};
    int got = held ? 1 : kq_claim(w.q, fn->name, w.row.id, o->cfg->lease_ms, ke_now_ms(), &j, &ce);
    if (got < 0) klog(KLOG_WARN, "worker %s: claim failed: %s", w.row.id, ce.msg);
    if (got == 1) {
      kq_job next;
      w.row.tasks++;                             /* listed busy while it holds the job: no write here */
      held = run_job(&w, &j, &next);
      kq_job_release(&j);
      if (held) j = next;
      idle_since = mono_ms();
      if (o->max_tasks > 0 && w.row.tasks >= o->max_tasks) break;
      if (w.out_of_memory) {                      /* a retry, and the next task, start in a fresh process */
        klog(KLOG_INFO, "worker %s: leaving after a task ran out of memory", w.row.id);
        break;
      }
      continue;
    }
    int64_t left = (int64_t)idle_s * 1000 - (mono_ms() - idle_since);
    if (left <= 0) {
      live_count live = {w.row.host, 0};
      kq_worker_list(w.q, fn->name, 1, count_live, &live, &ce);
      if (live.n <= w.fc->res.min_workers) {      /* one of the min_workers kept warm: stay */
        idle_since = mono_ms();
        continue;
      }
      klog(KLOG_INFO, "worker %s: idle for %d s, leaving", w.row.id, idle_s);
      break;
    }
    wait_work(&w, &wake_fd, left);
    if (wake_fd == -2) {                          /* a restarted server starts workers of its own */
      klog(KLOG_INFO, "worker %s: the server that started it is gone; leaving", w.row.id);
      break;
    }
  }
  if (held) {                                     /* claimed, then told to stop: back in the queue, no attempt used */
    kiln_err re = {0};
    if (kq_requeue(w.q, j.id, w.row.id, ke_now_ms(), &re) < 0)
      klog(KLOG_WARN, "worker %s: could not put job %s back in the queue: %s", w.row.id, j.id, re.msg);
    kq_job_release(&j);
  }
  if (fn->exit) fn->exit(w.state);
  stop_beat(&w.beat, hb);
  put_row(&w, KQ_W_EXITED, NULL);
  ks_close(w.store);
  kq_close(w.q);
  kq_close(w.hbq);
  return 0;
}
