/* machine.c — the job state machine, once for every backend. Each
 * transition is one transaction (run again when the backend reports a
 * deadlock or serialization failure) that changes the job's row, appends
 * an event, and, for a chunk or join, follows up on its split job
 * (kq_complete_claim is two: a warm worker's success and its next claim,
 * committed together). The backend (queue_int.h) only runs the SQL
 * written here.
 *
 *                 kq_submit
 *                     |
 *                     v        kq_claim
 *                 +--------+ -----------> +---------+  kq_complete   +-----------+
 *                 | queued |              | running | -------------> | succeeded |
 *                 +--------+    +-------> +---------+                +-----------+
 *                   |  ^        |kq_claim  |   |  kq_fail (bad_input, or retries
 *        kq_requeue |  |        |(delay    |   |  used up: out_of_memory has
 *      (not counted)|  +--------|passed)   |   |  one), kq_reclaim likewise
 *                   |           |          |   +-----------------------> +--------+
 *                   |      +----------+    |                             | failed |
 *                   |      | retrying | <--+ kq_fail (other class),      +--------+
 *                   |      +----------+      kq_reclaim (lease expired:
 *                   |           |             worker_lost)
 *                   v           v
 *         kq_cancel from queued, running or retrying -> +-----------+
 *                                                       | cancelled |
 *                                                       +-----------+
 *
 * kq_split takes a held (unplanned) queued job to running without a
 * worker: it becomes a split job whose chunks and join are its tasks;
 * the join's success is its success, a task failed for good fails it.
 *
 * Invariants of each state (what a row in that state always has):
 *   queued     worker NULL; run_after_ms 0, or KQ_HELD while it waits for
 *              the planner (planned = 0) or, a join, its chunks; a lease
 *              only while held: the planner that claimed it
 *              (kq_claim_unplanned), until it releases or splits it.
 *   running    a whole job, chunk or join: worker set, lease_until_ms the
 *              lease's end, attempts >= 1, claimed_ms the run's start. A
 *              split job: no worker, no lease, pending = chunks not yet
 *              succeeded; never claimed.
 *   retrying   worker NULL, no lease, run_after_ms = when it may run again,
 *              err_class/err_msg the last run's failure.
 *   succeeded, failed, cancelled (the ends): finished_ms set, phase done,
 *              no lease; nothing leaves an end state. Its webhook (if any)
 *              is due from hook_next_ms.
 * Within running, the worker reports a phase with each kq_heartbeat:
 * starting -> processing -> saving. A job's cost adds up over its runs; a
 * split job's cost is its tasks' sum (taken when it ends, and added to
 * after by tasks that were still running).
 */
#include "queue/queue_int.h"
#include "util/fs.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the transition table ------------------------------------------- */

static const struct { kq_state from, to; const char *by; } transitions[] = {
    {KQ_QUEUED, KQ_RUNNING, "kq_claim, kq_complete_claim (the next task), kq_split"},
    {KQ_RETRYING, KQ_RUNNING, "kq_claim, kq_complete_claim (its delay passed)"},
    {KQ_RUNNING, KQ_SUCCEEDED, "kq_complete, kq_complete_claim (a split job: its join's)"},
    {KQ_RUNNING, KQ_RETRYING, "kq_fail, kq_reclaim, kq_fail_worker (attempts remain, not bad_input)"},
    {KQ_RUNNING, KQ_FAILED, "kq_fail, kq_reclaim, kq_fail_worker (bad_input, or no attempts left)"},
    {KQ_RUNNING, KQ_QUEUED, "kq_requeue (its worker was stopped; the run is not counted)"},
    {KQ_QUEUED, KQ_CANCELLED, "kq_cancel"},
    {KQ_RUNNING, KQ_CANCELLED, "kq_cancel"},
    {KQ_RETRYING, KQ_CANCELLED, "kq_cancel"},
};

int kq_transition_ok(kq_state from, kq_state to) {
  for (size_t i = 0; i < sizeof transitions / sizeof transitions[0]; i++)
    if (transitions[i].from == from && transitions[i].to == to) return 1;
  return 0;
}

/* ---- SQL with named states ------------------------------------------ */

/* The names SQL may use in braces, from queue.h's X-macro lists. */
static const struct { const char *name; int value; } names[] = {
#define KQ_NAME_(N, n) {#n, KQ_##N},
    KQ_STATES(KQ_NAME_) KQ_KINDS(KQ_NAME_) KQ_HOOK_STATES(KQ_NAME_) KQ_WSTATES(KQ_NAME_)
#undef KQ_NAME_
};

/* sql with every {name} replaced by its number ({held}: KQ_HELD), at a
 * stable address: expanded once per statement (keyed by the literal's
 * address) and kept for the life of the process. */
#define EXPANDED_MAX 512
static struct { const char *src, *out; } expanded[EXPANDED_MAX];
static int nexpanded;
static pthread_mutex_t expand_mu = PTHREAD_MUTEX_INITIALIZER;

static char *expand_text(const char *sql) {
  size_t n = strlen(sql), cap = n + 64, len = 0;
  char *o = malloc(cap);
  if (!o) return NULL;
  for (const char *p = sql; *p;) {
    const char *end = *p == '{' ? strchr(p, '}') : NULL;
    char num[24] = "";
    if (end) {
      size_t k = (size_t)(end - p - 1);
      if (k == 4 && !strncmp(p + 1, "held", 4)) snprintf(num, sizeof num, "%lld", (long long)KQ_HELD);
      for (size_t i = 0; !num[0] && i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == k && !strncmp(p + 1, names[i].name, k)) snprintf(num, sizeof num, "%d", names[i].value);
    }
    const char *piece = num[0] ? num : p;
    size_t pl = num[0] ? strlen(num) : 1;
    if (len + pl + 1 > cap) {
      cap = 2 * cap + pl;
      char *g = realloc(o, cap);
      if (!g) { free(o); return NULL; }
      o = g;
    }
    memcpy(o + len, piece, pl);
    len += pl;
    p = num[0] ? end + 1 : p + 1;
  }
  o[len] = 0;
  return o;
}

const char *kq_sql(const char *sql) {
  /* entries are only ever appended (filled, then counted): a reader scans the published ones without the lock */
  int n = __atomic_load_n(&nexpanded, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (expanded[i].src == sql) return expanded[i].out;
  pthread_mutex_lock(&expand_mu);
  const char *o = NULL;
  for (int i = 0; i < nexpanded && !o; i++)
    if (expanded[i].src == sql) o = expanded[i].out;
  if (!o && (o = expand_text(sql)) && nexpanded < EXPANDED_MAX) {
    expanded[nexpanded].src = sql;
    expanded[nexpanded].out = o;
    __atomic_store_n(&nexpanded, nexpanded + 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&expand_mu);
  return o;                                       /* the table is sized for every statement kiln has */
}

/* Runs sql with the arguments fmt describes ('t' text, 'i' int64_t,
 * 'd' double). */
static int vrun(kq *q, const char *sql, const char *fmt, va_list ap, kq_rows **rows, kiln_err *e) {
  kq_arg a[16];
  int n = 0;
  for (; fmt[n] && n < 16; n++) {
    memset(&a[n], 0, sizeof a[n]);
    a[n].type = fmt[n];
    if (fmt[n] == 't') a[n].t = va_arg(ap, const char *);
    else if (fmt[n] == 'd') a[n].d = va_arg(ap, double);
    else a[n].i = va_arg(ap, int64_t);
  }
  const char *x = kq_sql(sql);
  if (!x) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  return q->be->run(q, x, a, n, rows, e);
}

/* A statement without results: the rows it changed, or < 0. */
static int db_exec(kq *q, kiln_err *e, const char *sql, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vrun(q, sql, fmt, ap, NULL, e);
  va_end(ap);
  return r;
}

/* A query: its cursor, or NULL with e set. */
static kq_rows *db_query(kq *q, kiln_err *e, const char *sql, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kq_rows *rows = NULL;
  int r = vrun(q, sql, fmt, ap, &rows, e);
  va_end(ap);
  return r < 0 ? NULL : rows;
}

/* The code a backend set with a NULL cursor (e may be NULL). */
static int ecode(const kiln_err *e) { return e && e->code < 0 ? e->code : KILN_EIO; }

static int next_row(kq *q, kq_rows *r, kiln_err *e) {
  int k = q->be->next(r);
  return k < 0 ? kiln_fail(e, KILN_EIO, "queue database: reading a result failed") : k;
}

static const char *col_text(kq *q, kq_rows *r, int i) { return q->be->text(r, i); }
static int64_t col_int(kq *q, kq_rows *r, int i) { return q->be->int64(r, i); }
static char *dup_col(kq *q, kq_rows *r, int i) {
  const char *t = q->be->text(r, i);
  return t ? strdup(t) : NULL;
}
static void copy_col(kq *q, kq_rows *r, int i, char *out, size_t n) {
  const char *t = q->be->text(r, i);
  snprintf(out, n, "%s", t ? t : "");
}

/* Runs body in a write transaction, again (up to 8 tries) when the backend
 * says the failure was a deadlock or serialization conflict. body returns
 * < 0 on failure (rolled back), else its value is returned after COMMIT. */
#define TXN(q, e, body)                                              \
  do {                                                               \
    for (int try_ = 0;; try_++) {                                    \
      int r_ = (q)->be->begin((q), (e));                             \
      if (r_ >= 0) {                                                 \
        int b_ = (body);                                             \
        if (b_ >= 0) {                                               \
          r_ = (q)->be->commit((q), (e));                            \
          if (r_ == 0) return b_;                                    \
        } else r_ = b_;                                              \
        (q)->be->rollback(q);                                        \
      }                                                              \
      if (try_ >= 7 || !(q)->be->retryable(q)) return r_;            \
    }                                                                \
  } while (0)

static int event(kq *q, const char *id, const char *kind, const char *data, int64_t now, kiln_err *e) {
  int r = db_exec(q, e, "INSERT INTO events(job_id, kind, data, ts_ms) VALUES(?1,?2,?3,?4)", "ttti", id, kind, data, now);
  return r < 0 ? r : 0;
}

/* An event whose data is a JSON object packed from fmt (jansson's). */
static int event_json(kq *q, const char *id, const char *kind, int64_t now, kiln_err *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  json_error_t je;
  json_t *o = json_vpack_ex(&je, 0, fmt, ap);
  va_end(ap);
  char *d = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!d) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int r = event(q, id, kind, d, now, e);
  free(d);
  return r;
}

static int new_id(char id[KQ_ID_LEN], kiln_err *e) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return kiln_fail(e, KILN_EINTERNAL, "no randomness for a job id");
  kiln_hex(raw, sizeof raw, id);
  return 0;
}

/* ---- rows ------------------------------------------------------------ */

static void row_to_job(kq *q, kq_rows *r, kq_job *j) {
  memset(j, 0, sizeof *j);
  copy_col(q, r, 0, j->id, sizeof j->id);
  copy_col(q, r, 1, j->fn, sizeof j->fn);
  j->state = (kq_state)col_int(q, r, 2);
  j->attempts = (int)col_int(q, r, 3);
  j->max_retries = (int)col_int(q, r, 4);
  j->created_ms = col_int(q, r, 5);
  j->started_ms = col_int(q, r, 6);
  j->finished_ms = col_int(q, r, 7);
  j->run_after_ms = col_int(q, r, 8);
  j->lease_until_ms = col_int(q, r, 9);
  copy_col(q, r, 10, j->worker, sizeof j->worker);
  j->frames_done = col_int(q, r, 11);
  j->frames_total = col_int(q, r, 12);
  copy_col(q, r, 13, j->err_class, sizeof j->err_class);
  copy_col(q, r, 14, j->err_msg, sizeof j->err_msg);
  j->spec = dup_col(q, r, 15);
  j->result = dup_col(q, r, 16);
  j->claimed_ms = col_int(q, r, 17);
  copy_col(q, r, 18, j->phase, sizeof j->phase);
  j->eta_ms = col_int(q, r, 19);
  j->cold_start_ms = col_int(q, r, 20);
  j->resource_ms = col_int(q, r, 21);
  j->usd = q->be->real(r, 22);
  j->webhook = dup_col(q, r, 23);
  j->hook_state = (kq_hook_state)col_int(q, r, 24);
  j->hook_attempts = (int)col_int(q, r, 25);
  j->hook_next_ms = col_int(q, r, 26);
  copy_col(q, r, 27, j->parent, sizeof j->parent);
  j->kind = (kq_kind)col_int(q, r, 28);
  j->part = (int)col_int(q, r, 29);
  j->pending = (int)col_int(q, r, 30);
  j->plan = dup_col(q, r, 31);
  j->planned = (int)col_int(q, r, 32);
}

/* Calls cb for each job row of rows (KQ_JOB_COLS) until it returns non-zero. */
static int each_job(kq *q, kq_rows *rows, kq_job_cb cb, void *arg, kiln_err *e) {
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1) {
    kq_job j;
    row_to_job(q, rows, &j);
    int stop = cb(arg, &j);
    kq_job_release(&j);
    if (stop) break;
  }
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

/* One job by id; locked: within a transition, its row locked until the end
 * of the transaction (PostgreSQL's FOR UPDATE; SQLite's write lock is the
 * database's already). */
static int get_row(kq *q, const char *id, int locked, kq_job *job, kiln_err *e) {
  kq_rows *rows = locked ? db_query(q, e, "SELECT " KQ_JOB_COLS " FROM jobs WHERE id=?1 /*FOR UPDATE*/", "t", id)
                         : db_query(q, e, "SELECT " KQ_JOB_COLS " FROM jobs WHERE id=?1", "t", id);
  if (!rows) return ecode(e);
  int k = next_row(q, rows, e);
  if (k == 1) row_to_job(q, rows, job);
  q->be->done(q, rows);
  return k == 1 ? 0 : k == 0 ? kiln_fail(e, KILN_ENOENT, "no job '%s'", id) : k;
}

int kq_get(kq *q, const char *id, kq_job *job, kiln_err *e) { return get_row(q, id, 0, job, e); }

/* ---- submit and claim ------------------------------------------------- */

/* A batch of submissions goes in as multi-row INSERTs of up to SUBMIT_ROWS
 * jobs (and their events): two statements per SUBMIT_ROWS jobs, not two per
 * job. The statement for k rows is made once: sql_jobs[k], sql_events[k]. */
#define SUBMIT_ROWS 8
#define JOB_ARGS 8                                /* per row; ?1 is now, ?2 the queued event's data */
static char *sql_jobs[SUBMIT_ROWS + 1], *sql_events[SUBMIT_ROWS + 1];
static pthread_once_t submit_sql_once = PTHREAD_ONCE_INIT;

static void make_submit_sql(void) {
  for (int k = 1; k <= SUBMIT_ROWS; k++) {
    char *j = malloc(256 + (size_t)k * 96), *v = malloc(96 + (size_t)k * 32);
    if (!j || !v) { free(j); free(v); return; }
    int lj = sprintf(j, "INSERT INTO jobs(id, fn, state, spec, max_retries, created_ms, webhook, hook_state,"
                        " run_after_ms, planned) VALUES");
    int lv = sprintf(v, "INSERT INTO events(job_id, kind, data, ts_ms) VALUES");
    for (int i = 0; i < k; i++) {
      int a = 2 + i * JOB_ARGS;                   /* ?a id, ?a+1 fn, ?a+2 spec, ... */
      lj += sprintf(j + lj, "%s(?%d,?%d,{queued},?%d,?%d,?1,?%d,?%d,?%d,?%d)", i ? "," : "", a + 1, a + 2, a + 3,
                    a + 4, a + 5, a + 6, a + 7, a + 8);
      lv += sprintf(v + lv, "%s(?%d,'state',?2,?1)", i ? "," : "", a + 1);
    }
    sql_jobs[k] = j;
    sql_events[k] = v;
  }
}

static int run_args(kq *q, const char *sql, const kq_arg *a, int n, kiln_err *e) {
  const char *x = sql ? kq_sql(sql) : NULL;
  if (!x) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  return q->be->run(q, x, a, n, NULL, e);
}

static int submit_locked(kq *q, kq_submit_req *reqs, int n, int64_t now, kiln_err *e) {
  pthread_once(&submit_sql_once, make_submit_sql);
  for (int i = 0; i < n; i += SUBMIT_ROWS) {
    int k = n - i < SUBMIT_ROWS ? n - i : SUBMIT_ROWS;
    kq_arg a[2 + SUBMIT_ROWS * JOB_ARGS];
    memset(a, 0, sizeof a);
    a[0].type = 'i', a[0].i = now;
    a[1].type = 't', a[1].t = "{\"state\":\"queued\"}";
    for (int t = 0; t < k; t++) {
      kq_submit_req *s = &reqs[i + t];
      int r = new_id(s->id, e);
      if (r < 0) return r;
      kq_arg *o = &a[2 + t * JOB_ARGS];
      o[0].type = 't', o[0].t = s->id;
      o[1].type = 't', o[1].t = s->fn;
      o[2].type = 't', o[2].t = s->spec ? s->spec : "{}";
      o[3].type = 'i', o[3].i = s->max_retries;
      o[4].type = 't', o[4].t = s->webhook;
      o[5].type = 'i', o[5].i = s->webhook ? KQ_HOOK_PENDING : KQ_HOOK_NONE;
      o[6].type = 'i', o[6].i = s->hold ? KQ_HELD : 0;
      o[7].type = 'i', o[7].i = !s->hold;
    }
    int r = run_args(q, sql_jobs[k], a, 2 + k * JOB_ARGS, e);
    if (r >= 0) r = run_args(q, sql_events[k], a, 3 + (k - 1) * JOB_ARGS, e);   /* up to the last id */
    if (r < 0) return r;
  }
  return 0;
}

int kq_submit_many(kq *q, kq_submit_req *reqs, int n, int64_t now, kiln_err *e) {
  TXN(q, e, submit_locked(q, reqs, n, now, e));
}

int kq_submit(kq *q, const char *fn, const char *spec, int max_retries, const char *webhook, int64_t now,
              char id[KQ_ID_LEN], kiln_err *e) {
  kq_submit_req rq = {fn, spec, max_retries, webhook, 0, ""};
  int r = kq_submit_many(q, &rq, 1, now, e);
  if (r == 0) memcpy(id, rq.id, KQ_ID_LEN);
  return r;
}

static int claim_locked(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job,
                        kiln_err *e) {
  kq_rows *rows = db_query(q, e, q->be->sql_claim, "titi", fn, now, worker, now + lease_ms);
  if (!rows) return ecode(e);
  int k = next_row(q, rows, e);
  if (k == 1) {
    row_to_job(q, rows, job);
    while (q->be->next(rows) == 1) {}
  }
  q->be->done(q, rows);
  if (k <= 0) return k;
  int r = event(q, job->id, "state", "{\"state\":\"running\",\"phase\":\"starting\"}", now, e);
  if (r < 0) { kq_job_release(job); return r; }
  return 1;
}

int kq_claim(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e) {
  /* a read first: an idle worker looking for work does not take a write lock */
  kq_rows *chk = db_query(q, e, "SELECT 1 FROM jobs WHERE fn=?1 AND state IN ({queued},{retrying}) AND run_after_ms<=?2"
                                " LIMIT 1", "ti", fn, now);
  if (!chk) return ecode(e);
  int any = next_row(q, chk, e);
  q->be->done(q, chk);
  if (any <= 0) return any;
  TXN(q, e, claim_locked(q, fn, worker, lease_ms, now, job, e));
}

/* ---- following a split job -------------------------------------------- */

/* plan's actual_ms set to now - created_ms (make: a plan when there is none). */
static int plan_actual(kq *q, const kq_job *j, int make, int64_t now, kiln_err *e) {
  json_error_t je;
  json_t *pl = j->plan ? json_loads(j->plan, 0, &je) : make ? json_object() : NULL;
  if (!json_is_object(pl)) { json_decref(pl); return 0; }
  json_object_set_new(pl, "actual_ms", json_integer(now - j->created_ms));
  char *t = json_dumps(pl, JSON_COMPACT);
  json_decref(pl);
  if (!t) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int r = db_exec(q, e, "UPDATE jobs SET plan=?2 WHERE id=?1", "tt", j->id, t);
  free(t);
  return r < 0 ? r : 0;
}

/* The split job's cost: its tasks' sum. */
static int parent_cost(kq *q, const char *parent, kiln_err *e) {
  int r = db_exec(q, e, "UPDATE jobs SET cold_start_ms=(SELECT COALESCE(SUM(cold_start_ms),0) FROM jobs WHERE parent=?1),"
                        " resource_ms=(SELECT COALESCE(SUM(resource_ms),0) FROM jobs WHERE parent=?1),"
                        " usd=(SELECT COALESCE(SUM(usd),0) FROM jobs WHERE parent=?1) WHERE id=?1", "t", parent);
  return r < 0 ? r : 0;
}

/* Within a transaction, after chunk/join `part` of split job `parent`
 * changed: progress adds up over the chunks; the last chunk releases the
 * join; the join's success is the job's; a chunk or join that failed for
 * good fails the job (its other tasks are cancelled). final_state < 0:
 * progress only. The parent's row is locked first: concurrent chunks of
 * one job follow up one after the other. */
static int parent_follow(kq *q, const char *parent, kq_kind kind, int final_state, const char *result,
                         const char *err_class, const char *msg, int part, int64_t now, kiln_err *e) {
  kq_job p;
  int r = get_row(q, parent, 1, &p, e);
  if (r < 0) return r;
  r = db_exec(q, e, "UPDATE jobs SET frames_done=(SELECT COALESCE(SUM(frames_done),0) FROM jobs"
                    " WHERE parent=?1 AND kind={chunk}) WHERE id=?1 AND state={running}", "t", parent);
  if (r >= 0 && final_state < 0) {
    kq_job_release(&p);
    if ((r = get_row(q, parent, 0, &p, e)) < 0) return r;
    /* the model's prediction, while it has not run out; then the frames' rate */
    json_error_t je;
    json_t *pl = p.plan ? json_loads(p.plan, 0, &je) : NULL;
    double pred = json_number_value(json_object_get(pl, "predicted_ms"));
    json_decref(pl);
    int64_t el = now - p.claimed_ms;
    int64_t eta = pred > 0 && p.created_ms + (int64_t)pred > now ? p.created_ms + (int64_t)pred - now
                  : p.frames_done > 0 && p.frames_total >= p.frames_done ? el * (p.frames_total - p.frames_done) / p.frames_done
                                                                        : -1;
    r = db_exec(q, e, "UPDATE jobs SET eta_ms=?2 WHERE id=?1", "ti", parent, eta);
    char data[200];
    snprintf(data, sizeof data, "{\"frames_done\":%lld,\"frames_total\":%lld,\"phase\":\"processing\",\"eta_ms\":%lld}",
             (long long)p.frames_done, (long long)p.frames_total, (long long)eta);
    kq_job_release(&p);
    return r < 0 ? r : event(q, parent, "progress", data, now, e);
  }
  if (r < 0) { kq_job_release(&p); return r; }
  if (final_state == KQ_SUCCEEDED && kind == KQ_CHUNK) {
    kq_job_release(&p);
    r = db_exec(q, e, "UPDATE jobs SET pending=pending-1 WHERE id=?1", "t", parent);
    if (r >= 0)
      r = db_exec(q, e, "UPDATE jobs SET run_after_ms=0 WHERE parent=?1 AND kind={join} AND state={queued} AND"
                        " (SELECT pending FROM jobs WHERE id=?1)<=0", "t", parent);
    return r < 0 ? r : 0;
  }
  r = parent_cost(q, parent, e);                  /* the job ends: its cost is its tasks' */
  if (r == 0 && final_state == KQ_SUCCEEDED) {    /* the join */
    r = db_exec(q, e, "UPDATE jobs SET state={succeeded}, result=?2, finished_ms=?3, phase='done', eta_ms=0,"
                      " frames_done=frames_total, hook_next_ms=?3 WHERE id=?1 AND state={running}", "tti", parent, result, now);
    if (r >= 0) r = plan_actual(q, &p, 1, now, e);
    kq_job_release(&p);
    return r < 0 ? r : event(q, parent, "state", "{\"state\":\"succeeded\",\"phase\":\"done\"}", now, e);
  }
  kq_job_release(&p);
  if (r < 0) return r;
  /* failed or cancelled for good: the job fails (or is cancelled) and its other tasks stop */
  char m[700];
  if (kind == KQ_CHUNK) snprintf(m, sizeof m, "chunk %d: %s", part, msg ? msg : "");
  else snprintf(m, sizeof m, "join: %s", msg ? msg : "");
  int st = final_state == KQ_CANCELLED ? KQ_CANCELLED : KQ_FAILED;
  const char *cls = err_class ? err_class : "internal";
  r = db_exec(q, e, "UPDATE jobs SET state=?2, finished_ms=?3, err_class=?4, err_msg=?5, phase='done', eta_ms=0,"
                    " hook_next_ms=?3 WHERE id=?1 AND state={running}", "tiitt", parent, (int64_t)st, now, cls, m);
  if (r >= 0)
    r = db_exec(q, e, "UPDATE jobs SET state={cancelled}, finished_ms=?2, err_class='cancelled', err_msg='another task of"
                      " the job failed', lease_until_ms=NULL WHERE parent=?1 AND state IN ({queued},{running},{retrying})",
                "ti", parent, now);
  return r < 0 ? r : event_json(q, parent, "state", now, e, "{s:s, s:s, s:s}", "state", kq_state_name((kq_state)st),
                                "class", cls, "message", m);
}

/* ---- a run's transitions ---------------------------------------------- */

/* Within a transaction: the job (its row locked) checked to be running
 * under worker (NULL: any). */
static int check_run(kq *q, const char *id, const char *worker, kq_job *j, kiln_err *e) {
  int r = get_row(q, id, 1, j, e);
  if (r < 0) return r;
  if (j->state == KQ_CANCELLED) r = kiln_fail(e, KILN_ECANCELLED, "job %s was cancelled", id);
  else if (j->state != KQ_RUNNING || (worker && strcmp(j->worker, worker) != 0))
    r = kiln_fail(e, KILN_EINVAL, "job %s is %s and not leased to worker '%s' (lease lost)", id, kq_state_name(j->state),
                  worker ? worker : "");
  if (r < 0) kq_job_release(j);
  return r;
}

static int heartbeat_locked(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms,
                            int64_t now, kiln_err *e) {
  kq_job j;
  int r = check_run(q, id, worker, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  r = db_exec(q, e, "UPDATE jobs SET lease_until_ms=?1, frames_done=?2, frames_total=?3, eta_ms=?4,"
                    " phase=COALESCE(?5, phase) WHERE id=?6", "iiiitt",
              now + lease_ms, p->frames_done, p->frames_total, p->eta_ms, p->phase, id);
  if (r < 0) return r;
  char data[192];
  snprintf(data, sizeof data, "{\"frames_done\":%lld,\"frames_total\":%lld,\"phase\":\"%s\",\"eta_ms\":%lld}",
           (long long)p->frames_done, (long long)p->frames_total, p->phase ? p->phase : j.phase, (long long)p->eta_ms);
  if ((r = event(q, id, "progress", data, now, e)) < 0) return r;
  return j.kind == KQ_CHUNK ? parent_follow(q, j.parent, j.kind, -1, NULL, NULL, NULL, j.part, now, e) : 0;
}

int kq_heartbeat(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms, int64_t now,
                 kiln_err *e) {
  TXN(q, e, heartbeat_locked(q, id, worker, p, lease_ms, now, e));
}

/* Adds one run's cost to the job's totals: the task's, and its split job's
 * when that has ended already (its sum was taken then). */
static int account(kq *q, const char *id, const kq_cost *c, kiln_err *e) {
  if (!c) return 0;
  int r = db_exec(q, e, "UPDATE jobs SET cold_start_ms=cold_start_ms+?1, resource_ms=resource_ms+?2, usd=usd+?4"
                        " WHERE id=?3 OR (id=(SELECT parent FROM jobs WHERE id=?3) AND state>={succeeded})", "iitd",
                  c->cold_start_ms, c->resource_ms, id, c->usd);
  return r < 0 ? r : 0;
}

int kq_account(kq *q, const char *id, const kq_cost *cost, kiln_err *e) { TXN(q, e, account(q, id, cost, e)); }

static int requeue_locked(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e) {
  kq_job j;
  int r = check_run(q, id, worker, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  r = db_exec(q, e, "UPDATE jobs SET state={queued}, attempts=CASE WHEN attempts>0 THEN attempts-1 ELSE 0 END,"
                    " worker=NULL, lease_until_ms=NULL, run_after_ms=0, phase='queued', eta_ms=-1, frames_done=0"
                    " WHERE id=?1 AND state={running}", "t", id);
  return r < 0 ? r : event(q, id, "state", "{\"state\":\"queued\",\"phase\":\"queued\"}", now, e);
}

int kq_requeue(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e) {
  TXN(q, e, requeue_locked(q, id, worker, now, e));
}

static int complete_locked(kq *q, const char *id, const char *worker, const char *result, const kq_cost *c,
                           int64_t frames, int64_t now, kiln_err *e) {
  kq_cost none = {0, 0, 0};
  if (!c) c = &none;
  /* the transition, only while `worker` holds the job: one statement, which also returns what the
   * follow-up needs (check_run below only says why, when it did not hold) */
  kq_rows *rows = db_query(q, e, "UPDATE jobs SET state={succeeded}, result=?2, finished_ms=?3, lease_until_ms=NULL,"
                                 " phase='done', eta_ms=0, frames_total=CASE WHEN ?4 >= 0 THEN ?4 ELSE frames_total END,"
                                 " frames_done=CASE WHEN ?4 >= 0 THEN ?4 ELSE frames_total END, hook_next_ms=?3,"
                                 " cold_start_ms=cold_start_ms+?5, resource_ms=resource_ms+?6, usd=usd+?7"
                                 " WHERE id=?1 AND state={running} AND (?8 IS NULL OR worker=?8)"
                                 " RETURNING kind, COALESCE(parent,''), part, plan, created_ms",
                           "ttiiiidt", id, result, now, frames, c->cold_start_ms, c->resource_ms, c->usd, worker);
  if (!rows) return ecode(e);
  kq_job j;
  memset(&j, 0, sizeof j);
  int r = next_row(q, rows, e);
  if (r == 1) {
    snprintf(j.id, sizeof j.id, "%s", id);
    j.kind = (kq_kind)col_int(q, rows, 0);
    copy_col(q, rows, 1, j.parent, sizeof j.parent);
    j.part = (int)col_int(q, rows, 2);
    j.plan = dup_col(q, rows, 3);
    j.created_ms = col_int(q, rows, 4);
    while (q->be->next(rows) == 1) {}
  }
  q->be->done(q, rows);
  if (r < 0) return r;
  if (r == 0) {                                   /* not running under this worker: why */
    kq_job x;
    if ((r = check_run(q, id, worker, &x, e)) < 0) return r;
    kq_job_release(&x);
    return kiln_fail(e, KILN_EINVAL, "job %s is not leased to worker '%s' (lease lost)", id, worker ? worker : "");
  }
  if (frames >= 0) {                              /* the final count, also for runs too short for a heartbeat */
    char data[160];
    snprintf(data, sizeof data, "{\"frames_done\":%lld,\"frames_total\":%lld,\"phase\":\"done\",\"eta_ms\":0}",
             (long long)frames, (long long)frames);
    r = db_exec(q, e, "INSERT INTO events(job_id, kind, data, ts_ms) VALUES(?1,'progress',?2,?3),(?1,'state',?4,?3)",
                "ttit", id, data, now, "{\"state\":\"succeeded\",\"phase\":\"done\"}");
  } else {
    r = event(q, id, "state", "{\"state\":\"succeeded\",\"phase\":\"done\"}", now, e);
  }
  if (r >= 0 && (j.kind == KQ_CHUNK || j.kind == KQ_JOIN)) {
    if (j.kind == KQ_CHUNK)                       /* the chunk's final count into the job's progress first */
      r = parent_follow(q, j.parent, j.kind, -1, NULL, NULL, NULL, j.part, now, e);
    if (r >= 0) r = parent_follow(q, j.parent, j.kind, KQ_SUCCEEDED, result, NULL, NULL, j.part, now, e);
  } else if (r >= 0) {
    r = plan_actual(q, &j, 0, now, e);
  }
  kq_job_release(&j);
  return r < 0 ? r : 0;
}

int kq_complete(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost, int64_t frames,
                int64_t now, kiln_err *e) {
  TXN(q, e, complete_locked(q, id, worker, result, cost, frames, now, e));
}

typedef struct complete_next {
  const char *fn;
  int64_t lease_ms;
  kq_job *next;
} complete_next;

static int complete_claim_locked(kq *q, const char *id, const char *worker, const char *result, const kq_cost *c,
                                 int64_t frames, int64_t now, complete_next *cn, kiln_err *e) {
  kq_job_release(cn->next);                       /* a try before this one claimed, then its commit failed */
  memset(cn->next, 0, sizeof *cn->next);
  int r = complete_locked(q, id, worker, result, c, frames, now, e);
  return r < 0 ? r : claim_locked(q, cn->fn, worker, cn->lease_ms, now, cn->next, e);
}

static int complete_claim_txn(kq *q, const char *id, const char *worker, const char *result, const kq_cost *c,
                              int64_t frames, int64_t now, complete_next *cn, kiln_err *e) {
  TXN(q, e, complete_claim_locked(q, id, worker, result, c, frames, now, cn, e));
}

int kq_complete_claim(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost,
                      int64_t frames, int64_t now, const char *fn, int64_t lease_ms, kq_job *next, kiln_err *e) {
  complete_next cn = {fn, lease_ms, next};
  memset(next, 0, sizeof *next);
  int r = complete_claim_txn(q, id, worker, result, cost, frames, now, &cn, e);
  if (r != 1) {
    kq_job_release(next);
    memset(next, 0, sizeof *next);
  }
  return r;
}

/* Within a transaction: the failure transition for a running job. Given
 * `holder`, only while that worker holds it; given lease_before > 0, only
 * while its lease ends before then (read again under the row's lock:
 * another replica's reclaim or a late heartbeat may have come first). */
static int fail_locked_if(kq *q, const char *id, const char *holder, int64_t lease_before, const char *err_class,
                          const char *msg, int64_t now, int *retrying, kiln_err *e) {
  kq_job j;
  int r = get_row(q, id, 1, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (retrying) *retrying = 0;
  if (j.state != KQ_RUNNING) return 0;            /* ended meanwhile (cancelled with its job, ...): nothing to fail */
  if ((holder && strcmp(j.worker, holder)) || (lease_before > 0 && j.lease_until_ms >= lease_before)) return 0;
  /* bad_input: never again; out_of_memory: once at most (see kq_fail) */
  int max_retries = !strcmp(err_class, "out_of_memory") && j.max_retries > 1 ? 1 : j.max_retries;
  int retry = strcmp(err_class, "bad_input") != 0 && j.attempts <= max_retries;
  if (retrying) *retrying = retry;
  if (retry) {
    int64_t delay = q->pol.retry_delay_ms;
    for (int k = 1; k < j.attempts && delay < q->pol.retry_max_delay_ms; k++) delay *= 2;
    if (delay > q->pol.retry_max_delay_ms) delay = q->pol.retry_max_delay_ms;
    r = db_exec(q, e, "UPDATE jobs SET state={retrying}, run_after_ms=?1, err_class=?2, err_msg=?3, worker=NULL,"
                      " lease_until_ms=NULL, phase='queued', eta_ms=-1 WHERE id=?4 AND state={running}",
                "ittt", now + delay, err_class, msg, id);
  } else {
    r = db_exec(q, e, "UPDATE jobs SET state={failed}, finished_ms=?1, err_class=?2, err_msg=?3, lease_until_ms=NULL,"
                      " phase='done', eta_ms=0, hook_next_ms=?1 WHERE id=?4 AND state={running}", "ittt",
                now, err_class, msg, id);
  }
  if (r >= 0 && !retry && (j.kind == KQ_CHUNK || j.kind == KQ_JOIN))
    r = parent_follow(q, j.parent, j.kind, KQ_FAILED, NULL, err_class, msg, j.part, now, e);
  return r < 0 ? r : event_json(q, id, "state", now, e, "{s:s, s:s, s:s}", "state", retry ? "retrying" : "failed",
                                "class", err_class, "message", msg);
}

static int fail_locked(kq *q, const char *id, const char *err_class, const char *msg, int64_t now, int *retrying,
                       kiln_err *e) {
  return fail_locked_if(q, id, NULL, 0, err_class, msg, now, retrying, e);
}

static int fail_run_locked(kq *q, const char *id, const char *worker, const char *err_class, const char *msg,
                           const kq_cost *c, int64_t now, int *retrying, kiln_err *e) {
  kq_job j;
  int r = check_run(q, id, worker, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if ((r = account(q, id, c, e)) < 0) return r;
  return fail_locked(q, id, err_class, msg, now, retrying, e);
}

int kq_fail(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, const kq_cost *cost,
            int64_t now, int *retrying, kiln_err *e) {
  char m[2048];                                   /* stored, then put in JSON (events, job records, webhooks): valid UTF-8 */
  kiln_utf8_sanitize(msg ? msg : "", m, sizeof m);
  TXN(q, e, fail_run_locked(q, id, worker, err_class, m, cost, now, retrying, e));
}

/* Within a transaction: fails every running task that rows select (id,
 * worker), as err_class with msg (NULL: a worker_lost message), each if it
 * still holds under its row's lock (worker, lease_before: fail_locked_if). */
static int fail_rows(kq *q, kq_rows *rows, const char *worker, int64_t lease_before, const char *err_class, const char *msg,
                     int64_t now, int *n, kiln_err *e) {
  if (!rows) return ecode(e);
  typedef struct { char id[KQ_ID_LEN], worker[64]; } victim;
  victim *v = malloc(256 * sizeof *v);            /* read whole first: failing a task runs statements of its own */
  if (!v) { q->be->done(q, rows); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  int k = 0, r = 0;
  while (k < 256 && (r = next_row(q, rows, e)) == 1) {
    copy_col(q, rows, 0, v[k].id, sizeof v[k].id);
    copy_col(q, rows, 1, v[k].worker, sizeof v[k].worker);
    k++;
  }
  q->be->done(q, rows);
  if (r > 0) r = 0;
  for (int i = 0; i < k && r == 0; i++) {
    char m[600];
    if (msg) snprintf(m, sizeof m, "%s", msg);
    else snprintf(m, sizeof m, "worker '%s' stopped sending heartbeats; its lease expired", v[i].worker);
    r = fail_locked_if(q, v[i].id, worker ? worker : v[i].worker, lease_before, err_class, m, now, NULL, e);
  }
  free(v);
  *n = r == 0 ? k : 0;
  return r;
}

static int reclaim_locked(kq *q, int64_t now, int *n, kiln_err *e) {
  return fail_rows(q, db_query(q, e, "SELECT id, COALESCE(worker,'') FROM jobs WHERE state={running}"
                                     " AND lease_until_ms < ?1", "i", now), NULL, now, "worker_lost", NULL, now, n, e);
}

int kq_reclaim(kq *q, int64_t now, int *n, kiln_err *e) {
  *n = 0;
  TXN(q, e, reclaim_locked(q, now, n, e));
}

static int fail_worker_locked(kq *q, const char *worker, const char *err_class, const char *msg, int64_t now, int *n,
                              kiln_err *e) {
  return fail_rows(q, db_query(q, e, "SELECT id, COALESCE(worker,'') FROM jobs WHERE state={running} AND worker=?1",
                               "t", worker), worker, 0, err_class, msg, now, n, e);
}

int kq_fail_worker(kq *q, const char *worker, const char *err_class, const char *msg, int64_t now, int *n,
                   kiln_err *e) {
  char m[2048];
  kiln_utf8_sanitize(msg ? msg : "", m, sizeof m);
  *n = 0;
  TXN(q, e, fail_worker_locked(q, worker, err_class, m, now, n, e));
}

static int cancel_locked(kq *q, const char *id, int64_t now, kiln_err *e) {
  kq_job j;
  int r = get_row(q, id, 1, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (j.kind == KQ_CHUNK || j.kind == KQ_JOIN)
    return kiln_fail(e, KILN_EINVAL, "%s is a task of job %s: cancel that job", id, j.parent);
  if (j.state >= KQ_SUCCEEDED)
    return kiln_fail(e, KILN_EINVAL, "job %s already %s; nothing to cancel", id, kq_state_name(j.state));
  r = db_exec(q, e, "UPDATE jobs SET state={cancelled}, finished_ms=?1, err_class='cancelled',"
                    " err_msg='cancelled by request', lease_until_ms=NULL, phase='done', eta_ms=0,"
                    " hook_next_ms=?1 WHERE id=?2", "it", now, id);
  if (r >= 0 && j.kind == KQ_SPLIT) {             /* its chunks and join stop too; its cost so far is theirs */
    r = db_exec(q, e, "UPDATE jobs SET state={cancelled}, finished_ms=?2, err_class='cancelled', err_msg='the job was"
                      " cancelled', lease_until_ms=NULL WHERE parent=?1 AND state IN ({queued},{running},{retrying})",
                "ti", id, now);
    if (r >= 0) r = parent_cost(q, id, e);
  }
  return r < 0 ? r : event(q, id, "state", "{\"state\":\"cancelled\",\"phase\":\"done\"}", now, e);
}

int kq_cancel(kq *q, const char *id, int64_t now, kiln_err *e) { TXN(q, e, cancel_locked(q, id, now, e)); }

/* ---- split jobs: chunks and a join ------------------------------------ */

/* Claims up to limit rows that sql picks (?1 now, ?2 until, ?3 limit; it
 * returns KQ_JOB_COLS) into *out (replacing what a failed try left).
 * Returns how many. */
typedef struct claimed { kq_job *js; int n; } claimed;

static void claimed_free(claimed *c) {
  for (int i = 0; i < c->n; i++) kq_job_release(&c->js[i]);
  free(c->js);
  c->js = NULL;
  c->n = 0;
}

static int claim_rows_locked(kq *q, const char *sql, int64_t now, int64_t until, int limit, claimed *out, kiln_err *e) {
  claimed_free(out);
  kq_rows *rows = db_query(q, e, sql, "iii", now, until, (int64_t)limit);
  if (!rows) return ecode(e);
  kq_job *js = calloc((size_t)limit, sizeof *js);
  int n = 0, k = 0;
  while (js && n < limit && (k = next_row(q, rows, e)) == 1) row_to_job(q, rows, &js[n++]);
  q->be->done(q, rows);
  if (!js) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  if (k < 0) {
    for (int i = 0; i < n; i++) kq_job_release(&js[i]);
    free(js);
    return k;
  }
  out->js = js;
  out->n = n;
  return n;
}

static int claim_rows_txn(kq *q, const char *sql, int64_t now, int64_t until, int limit, claimed *out, kiln_err *e) {
  TXN(q, e, claim_rows_locked(q, sql, now, until, limit, out, e));
}

/* Claims in a transaction, then calls cb for each claimed job outside it
 * (the callback may be slow: a probe, an HTTP POST). */
static int claim_rows(kq *q, const char *sql, int64_t now, int64_t until, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  if (limit <= 0) return 0;
  claimed c = {NULL, 0};
  int r = claim_rows_txn(q, sql, now, until, limit, &c, e);
  if (r < 0) claimed_free(&c);                    /* a try whose commit failed claimed nothing */
  for (int i = 0, stop = 0; i < c.n && !stop; i++) stop = cb(arg, &c.js[i]);
  claimed_free(&c);
  return r < 0 ? r : 0;
}

int kq_claim_unplanned(kq *q, int limit, int64_t now, int64_t lease_ms, kq_job_cb cb, void *arg, kiln_err *e) {
  return claim_rows(q, "UPDATE jobs SET lease_until_ms=?2 WHERE id IN (SELECT id FROM jobs WHERE planned=0"
                       " AND state={queued} AND COALESCE(lease_until_ms,0)<?1 ORDER BY created_ms LIMIT ?3"
                       " /*FOR UPDATE SKIP LOCKED*/) RETURNING " KQ_JOB_COLS, now, now + lease_ms, limit, cb, arg, e);
}

int kq_unlease_planning(kq *q, kiln_err *e) {
  int r = db_exec(q, e, "UPDATE jobs SET lease_until_ms=NULL WHERE planned=0 AND state={queued} AND lease_until_ms IS NOT NULL", "");
  return r < 0 ? r : 0;
}

static int release_locked(kq *q, const char *id, const char *plan, int64_t frames, kiln_err *e) {
  int r = db_exec(q, e, "UPDATE jobs SET planned=1, run_after_ms=0, plan=?2, frames_total=?3, lease_until_ms=NULL"
                        " WHERE id=?1 AND planned=0 AND state={queued}", "tti", id, plan, frames);
  return r < 0 ? r : 0;
}

int kq_release(kq *q, const char *id, const char *plan, int64_t frames, int64_t now, kiln_err *e) {
  (void)now;
  TXN(q, e, release_locked(q, id, plan, frames, e));
}

static int split_locked(kq *q, const char *id, const char *const *specs, int n, const char *join_spec, const char *plan,
                        int64_t frames, int64_t now, kiln_err *e) {
  kq_job j;
  int r = get_row(q, id, 1, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (j.state != KQ_QUEUED || j.planned)
    return kiln_fail(e, KILN_EINVAL, "job %s is %s and already planned; not split", id, kq_state_name(j.state));
  r = db_exec(q, e, "UPDATE jobs SET state={running}, kind={split}, planned=1, run_after_ms=0, plan=?2, pending=?3, lease_until_ms=NULL,"
                    " frames_total=?4, frames_done=0, phase='processing', started_ms=?5, claimed_ms=?5,"
                    " attempts=1 WHERE id=?1", "ttiii", id, plan, (int64_t)n, frames, now);
  for (int k = 0; r >= 0 && k <= n; k++) {
    char cid[KQ_ID_LEN];
    if ((r = new_id(cid, e)) < 0) return r;
    int join = k == n;
    r = db_exec(q, e, "INSERT INTO jobs(id, fn, state, spec, max_retries, created_ms, run_after_ms, parent, kind,"
                      " part, planned) VALUES(?1, ?2, {queued}, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
                "tttiiitii", cid, join ? "join" : j.fn, join ? join_spec : specs[k], (int64_t)j.max_retries, now + k,
                (int64_t)(join ? KQ_HELD : 0), id, (int64_t)(join ? KQ_JOIN : KQ_CHUNK), (int64_t)k);
  }
  if (r < 0) return r;
  char data[96];
  snprintf(data, sizeof data, "{\"state\":\"running\",\"phase\":\"processing\",\"chunks\":%d}", n);
  return event(q, id, "state", data, now, e);
}

int kq_split(kq *q, const char *id, const char *const *chunk_specs, int n, const char *join_spec, const char *plan,
             int64_t frames, int64_t now, kiln_err *e) {
  TXN(q, e, split_locked(q, id, chunk_specs, n, join_spec, plan, frames, now, e));
}

int kq_running(kq *q, kq_job_cb cb, void *arg, kiln_err *e) {
  return each_job(q, db_query(q, e, "SELECT " KQ_JOB_COLS " FROM jobs WHERE state={running} AND kind<>{split}"
                                    " ORDER BY created_ms", ""), cb, arg, e);
}

int kq_children(kq *q, const char *parent, kq_job_cb cb, void *arg, kiln_err *e) {
  return each_job(q, db_query(q, e, "SELECT " KQ_JOB_COLS " FROM jobs WHERE parent=?1 ORDER BY kind, part", "t", parent),
                  cb, arg, e);
}

/* ---- cost models -------------------------------------------------------- */

static int model_read(kq *q, const char *fn, int locked, char **json, kiln_err *e) {
  *json = NULL;
  kq_rows *rows = locked ? db_query(q, e, "SELECT data FROM models WHERE fn=?1 /*FOR UPDATE*/", "t", fn)
                         : db_query(q, e, "SELECT data FROM models WHERE fn=?1", "t", fn);
  if (!rows) return ecode(e);
  int k = next_row(q, rows, e);
  if (k == 1) *json = dup_col(q, rows, 0);
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

int kq_model_get(kq *q, const char *fn, char **json, kiln_err *e) { return model_read(q, fn, 0, json, e); }

static int model_write(kq *q, const char *fn, const char *json, int64_t now, kiln_err *e) {
  int r = db_exec(q, e, "INSERT INTO models(fn, data, updated_ms) VALUES(?1,?2,?3) ON CONFLICT(fn) DO UPDATE SET"
                        " data=excluded.data, updated_ms=excluded.updated_ms", "tti", fn, json, now);
  return r < 0 ? r : 0;
}

int kq_model_put(kq *q, const char *fn, const char *json, int64_t now, kiln_err *e) {
  TXN(q, e, model_write(q, fn, json, now, e));
}

static int model_update_locked(kq *q, const char *fn, char *(*edit)(void *, const char *), void *arg, int64_t now,
                               kiln_err *e) {
  for (int tries = 0; tries < 2; tries++) {
    char *old = NULL;
    int r = model_read(q, fn, 1, &old, e);        /* the row locked: concurrent editors wait for each other */
    if (r < 0) return r;
    char *nu = edit(arg, old);
    int had = old != NULL;
    free(old);
    if (!nu) return 0;
    if (had) r = model_write(q, fn, nu, now, e);
    else {                                        /* no row to lock: the first of two concurrent writers wins the insert */
      r = db_exec(q, e, "INSERT INTO models(fn, data, updated_ms) VALUES(?1,?2,?3) ON CONFLICT(fn) DO NOTHING", "tti", fn,
                  nu, now);
      if (r == 0) { free(nu); continue; }         /* the other made it first: edit theirs */
      if (r > 0) r = 0;
    }
    free(nu);
    return r;
  }
  return kiln_fail(e, KILN_EIO, "queue database: the cost model of '%s' changed under every try", fn);
}

int kq_model_update(kq *q, const char *fn, char *(*edit)(void *arg, const char *old), void *arg, int64_t now, kiln_err *e) {
  TXN(q, e, model_update_locked(q, fn, edit, arg, now, e));
}

/* ---- reading ------------------------------------------------------------ */

int kq_list(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  /* one statement per filter combination, so that each can use its index */
  static const char *const sql[4] = {
      "SELECT " KQ_JOB_COLS " FROM jobs WHERE ?1 < 0 AND ?2 IS NULL AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
      "SELECT " KQ_JOB_COLS " FROM jobs WHERE state=?1 AND ?2 IS NULL AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
      "SELECT " KQ_JOB_COLS " FROM jobs WHERE ?1 < 0 AND fn=?2 AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
      "SELECT " KQ_JOB_COLS " FROM jobs WHERE state=?1 AND fn=?2 AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3"};
  return each_job(q, db_query(q, e, sql[(state >= 0) + 2 * (fn != NULL)], "iti", (int64_t)state, fn,
                              (int64_t)(limit > 0 ? limit : 100)), cb, arg, e);
}

int kq_events(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e) {
  kq_rows *rows = db_query(q, e, "SELECT seq, kind, data, ts_ms FROM events WHERE job_id=?1 AND seq>?2 ORDER BY seq", "ti",
                           id, after_seq);
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1)
    if (cb(arg, col_int(q, rows, 0), col_text(q, rows, 1), col_text(q, rows, 2), col_int(q, rows, 3))) break;
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

int kq_runnable_each(kq *q, int64_t now, kq_runnable_cb cb, void *arg, kiln_err *e) {
  kq_rows *rows = db_query(q, e, "SELECT fn, COUNT(*) FILTER (WHERE run_after_ms<=?1),"
                                 " COALESCE(MIN(run_after_ms) FILTER (WHERE run_after_ms>?1 AND run_after_ms<{held}), 0)"
                                 " FROM jobs WHERE state IN ({queued},{retrying}) GROUP BY fn", "i", now);
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1)
    if (cb(arg, col_text(q, rows, 0), col_int(q, rows, 1), col_int(q, rows, 2))) break;
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

int kq_runnable(kq *q, const char *fn, int64_t now, int64_t *n, int64_t *next_ms, kiln_err *e) {
  kq_rows *rows = db_query(q, e, "SELECT COUNT(*) FILTER (WHERE run_after_ms<=?2),"
                                 " COALESCE(MIN(run_after_ms) FILTER (WHERE run_after_ms>?2 AND run_after_ms<{held}), 0)"
                                 " FROM jobs WHERE fn=?1 AND state IN ({queued},{retrying})", "ti", fn, now);
  if (!rows) return ecode(e);
  int k = next_row(q, rows, e);
  if (k == 1) {
    *n = col_int(q, rows, 0);
    if (next_ms) *next_ms = col_int(q, rows, 1);
  }
  q->be->done(q, rows);
  return k == 1 ? 0 : k < 0 ? k : kiln_fail(e, KILN_EIO, "queue database: no count of runnable jobs");
}

int kq_counts(kq *q, const char *fn, int64_t counts[KQ_NSTATES], kiln_err *e) {
  memset(counts, 0, KQ_NSTATES * sizeof counts[0]);
  kq_rows *rows = db_query(q, e, "SELECT state, COUNT(*) FROM jobs WHERE (?1 IS NULL OR fn=?1) AND parent IS NULL"
                                 " GROUP BY state", "t", fn);
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1) {
    int64_t s = col_int(q, rows, 0);
    if (s >= 0 && s < KQ_NSTATES) counts[s] = col_int(q, rows, 1);
  }
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

int kq_recent_runs(kq *q, const char *fn, int limit, kq_run_cb cb, void *arg, kiln_err *e) {
  kq_rows *rows = db_query(q, e, "SELECT finished_ms - claimed_ms, frames_total FROM jobs WHERE fn=?1"
                                 " AND state={succeeded} AND parent IS NULL ORDER BY finished_ms DESC LIMIT ?2",
                           "ti", fn, (int64_t)limit);
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1)
    if (cb(arg, col_int(q, rows, 0), col_int(q, rows, 1))) break;
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

int kq_usage(kq *q, int64_t since_ms, kq_usage_cb cb, void *arg, kiln_err *e) {
  kq_rows *rows = db_query(q, e, q->be->sql_usage, "i", since_ms);
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1)
    if (cb(arg, col_text(q, rows, 0), col_text(q, rows, 1), col_int(q, rows, 2), q->be->real(rows, 3),
           q->be->real(rows, 4)))
      break;
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

/* ---- webhooks ----------------------------------------------------------- */

int kq_hooks_due(kq *q, int64_t now, int64_t lease_ms, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  /* claimed by moving hook_next_ms past the attempt: another sender (a replica) skips them until then */
  return claim_rows(q, "UPDATE jobs SET hook_next_ms=?2 WHERE id IN (SELECT id FROM jobs WHERE hook_state={hook_pending}"
                       " AND state>={succeeded} AND hook_next_ms<=?1 ORDER BY hook_next_ms LIMIT ?3"
                       " /*FOR UPDATE SKIP LOCKED*/) RETURNING " KQ_JOB_COLS, now, now + lease_ms, limit, cb, arg, e);
}

int kq_hook_result(kq *q, const char *id, int delivered, int64_t next_ms, kiln_err *e) {
  int64_t state = delivered ? KQ_HOOK_DELIVERED : next_ms < 0 ? KQ_HOOK_FAILED : KQ_HOOK_PENDING;
  int r = db_exec(q, e, "UPDATE jobs SET hook_state=?1, hook_attempts=hook_attempts+1, hook_next_ms=?2 WHERE id=?3",
                  "iit", state, next_ms < 0 ? 0 : next_ms, id);
  return r < 0 ? r : 0;
}

/* ---- workers ------------------------------------------------------------ */

int kq_worker_put(kq *q, const kq_worker *w, kiln_err *e) {
  int r = db_exec(q, e, "INSERT INTO workers(id, fn, host, pid, state, job, started_ms, ready_ms, last_ms, tasks)"
                        " VALUES(?1,?2,?3,?4,?5,NULL,?6,?7,?8,?9) ON CONFLICT(id) DO UPDATE SET fn=excluded.fn,"
                        " host=excluded.host, pid=excluded.pid, state=excluded.state, job=NULL,"
                        " started_ms=excluded.started_ms, ready_ms=excluded.ready_ms, last_ms=excluded.last_ms,"
                        " tasks=excluded.tasks", "tttiiiiii",
                  w->id, w->fn, w->host, (int64_t)w->pid, (int64_t)(w->state == KQ_W_BUSY ? KQ_W_IDLE : w->state),
                  w->started_ms, w->ready_ms, w->last_ms, w->tasks);
  return r < 0 ? r : 0;
}

int kq_worker_list(kq *q, const char *fn, int live_only, kq_worker_cb cb, void *arg, kiln_err *e) {
  kq_rows *rows = db_query(q, e, "SELECT w.id, w.fn, COALESCE(w.host,''), w.pid, w.state,"
                                 " COALESCE((SELECT j.id FROM jobs j WHERE j.state={running} AND j.worker=w.id LIMIT 1),''),"
                                 " w.started_ms, w.ready_ms, w.last_ms, w.tasks FROM workers w"
                                 " WHERE (?1 IS NULL OR w.fn=?1) AND (?2=0 OR w.state<{w_exited}) ORDER BY w.started_ms, w.id",
                           "ti", fn, (int64_t)live_only);
  if (!rows) return ecode(e);
  int k;
  while ((k = next_row(q, rows, e)) == 1) {
    kq_worker w;
    memset(&w, 0, sizeof w);
    copy_col(q, rows, 0, w.id, sizeof w.id);
    copy_col(q, rows, 1, w.fn, sizeof w.fn);
    copy_col(q, rows, 2, w.host, sizeof w.host);
    w.pid = (int)col_int(q, rows, 3);
    w.state = (kq_wstate)col_int(q, rows, 4);
    copy_col(q, rows, 5, w.job, sizeof w.job);
    if (w.state == KQ_W_IDLE && w.job[0]) w.state = KQ_W_BUSY;   /* busy: it holds a running job */
    w.started_ms = col_int(q, rows, 6);
    w.ready_ms = col_int(q, rows, 7);
    w.last_ms = col_int(q, rows, 8);
    w.tasks = col_int(q, rows, 9);
    if (cb(arg, &w)) break;
  }
  q->be->done(q, rows);
  return k < 0 ? k : 0;
}

int kq_worker_known(kq *q, const char *id, kiln_err *e) {
  kq_rows *rows = db_query(q, e, "SELECT 1 FROM workers WHERE id=?1", "t", id);
  if (!rows) return ecode(e);
  int k = next_row(q, rows, e);
  q->be->done(q, rows);
  return k;
}

int kq_worker_touch(kq *q, const char *host, int64_t now, kiln_err *e) {
  int r = db_exec(q, e, "UPDATE workers SET last_ms=?2 WHERE host=?1 AND state<{w_exited}", "ti", host, now);
  return r < 0 ? r : 0;
}

int kq_worker_expire(kq *q, const char *host, int64_t before_ms, int *n, kiln_err *e) {
  int r = db_exec(q, e, "UPDATE workers SET state={w_exited} WHERE state<{w_exited} AND host<>?1 AND last_ms<?2", "ti", host,
                  before_ms);
  if (n) *n = r > 0 ? r : 0;
  return r < 0 ? r : 0;
}

int kq_worker_prune(kq *q, int64_t before_ms, kiln_err *e) {
  int r = db_exec(q, e, "DELETE FROM workers WHERE state={w_exited} AND last_ms<?1", "i", before_ms);
  return r < 0 ? r : 0;
}

/* ---- the handle --------------------------------------------------------- */

void kq_close(kq *q) {
  if (q) q->be->close(q);
}

const char *kq_backend_name(const kq *q) { return q ? q->be->name : "none"; }

int kq_watch(kq *q, int timeout_ms, kq_change_cb cb, void *arg, kiln_err *e) {
  return q->be->watch(q, timeout_ms, cb, arg, e);
}
