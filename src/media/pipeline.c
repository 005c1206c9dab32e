/* pipeline.c — decode thread → kernel on a thread pool → encode (caller's
 * thread), frame-parallel with the output order kept.
 *
 *   decode thread:  read source frame (with a lookahead: `see` it, and hold
 *                   it until `lookahead` more are read), pick which output frames show it
 *                   (trim, speed, output fps), put each in slot[n % Q]
 *                   and hand the slot to the pool
 *   pool threads:   run the kernel on a slot: in -> out       (any order)
 *   caller thread:  wait for slot[next % Q] to be DONE, encode, free it
 *
 * Q slots bound the frames alive at once (memory does not grow with the
 * length of the video). Slot states: FREE -> QUEUED -> DONE (or FAILED) ->
 * FREE. The first error anywhere sets `abort`, wakes everyone, and is the
 * one reported. The output is written to a temporary name in the output's
 * folder and renamed only when complete; on any failure it is removed. */
#include "media/media.h"
#include "util/log.h"
#include "util/pool.h"

#include <errno.h>
#include <libavutil/imgutils.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Timestamps are exact rationals; 1 µs absorbs float rounding when an
 * output instant lands exactly on a source frame's start. */
#define KM_TIME_EPS 1e-6

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_DONE, SLOT_FAILED };

typedef struct pl_slot {
  struct pl *pl;
  AVFrame *in, *out;
  km_kinfo ki;
  int state;
  kiln_err err;
} pl_slot;

typedef struct pl {
  const km_pipeline_cfg *c;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pl_slot *slots;
  int q;
  int64_t emitted;              /* output frames handed to the pool */
  int64_t frames_in;
  int decode_done;
  int abort;
  int err_code;
  kiln_err err;
  kp_pool *pool;
  km_decoder *dec;
  int in_w, in_h;               /* every input frame's size (the decoder guarantees it) */
  int out_w, out_h;
  AVRational fps;
  AVFrame **spare;              /* output frames to reuse (fresh pages cost a fault each) */
  int nspare;
  int64_t first;                /* the first output frame made (a chunk's out_start, less its warm-up) */
  int64_t stop;                 /* the frame to stop before (a chunk's end, plus its encoder tail); < 0: none */
  AVFrame **ahead;              /* with cfg.see: decoded frames not yet given to the selector, a ring of lookahead+1 */
  km_frame_info *ahead_info;
  int ahead_first, nahead, ahead_end;
} pl;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pl_fail(pl *p, int code, const kiln_err *e) {
  pthread_mutex_lock(&p->mu);
  if (!p->err_code) {
    p->err_code = code;
    p->err = *e;
  }
  p->abort = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static int cancelled(const pl *p) { return p->c->cancel && *p->c->cancel; }

static void run_slot(void *arg) {
  pl_slot *s = arg;
  pl *p = s->pl;
  int r = 0;
  s->err.code = 0;
  pthread_mutex_lock(&p->mu);
  s->out = p->nspare > 0 ? p->spare[--p->nspare] : NULL;
  pthread_mutex_unlock(&p->mu);
  if (!s->out) s->out = km_frame_new(p->out_w, p->out_h);
  if (!s->out) r = kiln_fail(&s->err, KILN_ENOMEM, "out of memory");
  else if (s->in->width != p->in_w || s->in->height != p->in_h)
    r = kiln_fail(&s->err, KILN_EINTERNAL, "frame %lld is %dx%d, expected %dx%d", (long long)s->ki.src.src_index,
                  s->in->width, s->in->height, p->in_w, p->in_h);
  else if (p->c->kernel) r = p->c->kernel(p->c->kctx, &s->ki, s->in, s->out, &s->err);
  else if (s->in->width == p->out_w && s->in->height == p->out_h && av_frame_copy(s->out, s->in) >= 0) ;
  else r = kiln_fail(&s->err, KILN_EINTERNAL, "no kernel to change the frame size");
  pthread_mutex_lock(&p->mu);
  s->state = r < 0 ? SLOT_FAILED : SLOT_DONE;
  if (r < 0) s->err.code = r;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Hands output frame n (showing source frame f) to the pool. */
static int emit(pl *p, const AVFrame *f, const km_frame_info *fi, int64_t n) {
  int64_t k = n - p->first;                      /* position in this run's output */
  pl_slot *s = &p->slots[k % p->q];
  pthread_mutex_lock(&p->mu);
  while (s->state != SLOT_FREE && !p->abort) pthread_cond_wait(&p->cv, &p->mu);
  int ab = p->abort;
  pthread_mutex_unlock(&p->mu);
  if (ab) return KILN_ECANCELLED;
  s->in = av_frame_clone(f);
  if (!s->in) { kiln_err e; kiln_fail(&e, KILN_ENOMEM, "out of memory"); pl_fail(p, KILN_ENOMEM, &e); return KILN_ENOMEM; }
  s->ki.src = *fi;
  s->ki.out_index = n;
  s->ki.out_time = n / av_q2d(p->fps);
  pthread_mutex_lock(&p->mu);
  s->state = SLOT_QUEUED;
  p->emitted = k + 1;
  pthread_mutex_unlock(&p->mu);
  if (kp_pool_submit(p->pool, run_slot, s) < 0) {
    kiln_err e; kiln_fail(&e, KILN_ENOMEM, "out of memory");
    pl_fail(p, KILN_ENOMEM, &e);
    return KILN_ENOMEM;
  }
  return 0;
}

/* The next source frame for the selector. With a lookahead, frames are
 * decoded and seen up to `lookahead` frames before they come out of here
 * (a FIFO of decoded frames); at the end of the input the FIFO drains.
 * Returns 1 (a frame), 0 (the end) or an error, as km_decoder_read. */
static int next_frame(pl *p, AVFrame **f, km_frame_info *fi, kiln_err *e) {
  const km_pipeline_cfg *c = p->c;
  if (!c->see) return km_decoder_read(p->dec, f, fi, e);
  while (!p->ahead_end && p->nahead <= c->lookahead) {
    AVFrame *g = NULL;
    km_frame_info gi;
    int r = km_decoder_read(p->dec, &g, &gi, e);
    if (r < 0) return r;
    if (r == 0) { p->ahead_end = 1; break; }
    if ((r = c->see(c->kctx, g, &gi, e)) < 0) { av_frame_free(&g); return r; }
    int k = (p->ahead_first + p->nahead) % (c->lookahead + 1);
    p->ahead[k] = g;
    p->ahead_info[k] = gi;
    p->nahead++;
  }
  if (p->nahead == 0) return 0;
  *f = p->ahead[p->ahead_first];
  *fi = p->ahead_info[p->ahead_first];
  p->ahead[p->ahead_first] = NULL;
  p->ahead_first = (p->ahead_first + 1) % (c->lookahead + 1);
  p->nahead--;
  return 1;
}

/* The frame selector: output frame n shows the source frame on screen at
 * source time to_src((n + 0.5) / fps) — the middle of its output interval. */
static void *decode_main(void *arg) {
  pl *p = arg;
  const km_timeline *tl = &p->c->tl;
  double fps = av_q2d(p->fps);
  AVFrame *prev = NULL, *cur = NULL;
  km_frame_info pi = {0}, ci;
  int64_t n = p->first, n_total = -1;
  int64_t n_stop = p->stop;                     /* a chunk's end, with its encoder tail (< 0: none) */
  kiln_err e = {0};
  int r = 0;
  for (;;) {
    if (cancelled(p)) { r = kiln_fail(&e, KILN_ECANCELLED, "cancelled"); break; }
    if (n_stop >= 0 && n >= n_stop) { r = 0; break; }
    r = next_frame(p, &cur, &ci, &e);
    if (r < 0) break;
    int at_end = r == 0;
    double t_c;
    if (at_end) {
      double src_end = prev ? pi.src_time + pi.src_duration : 0;
      n_total = llround(km_timeline_duration(tl, src_end) * fps);
      t_c = INFINITY;
    } else {
      p->frames_in++;
      t_c = ci.src_time;
      if (tl->end > 0 && t_c >= tl->end && n_total < 0)
        n_total = llround(km_timeline_duration(tl, tl->end) * fps);
    }
    if (n_total >= 0 && n_stop >= 0 && n_stop < n_total) n_total = n_stop;
    if (prev) {
      while ((n_total < 0 || n < n_total) && (n_stop < 0 || n < n_stop) &&
             km_timeline_to_src(tl, INFINITY, (n + 0.5) / fps) < t_c - KM_TIME_EPS) {
        if ((r = emit(p, prev, &pi, n)) < 0) goto out;
        n++;
      }
      av_frame_free(&prev);
    }
    if (at_end) { r = 0; break; }
    prev = cur; pi = ci; cur = NULL;
    if (n_total >= 0) {          /* past the trim end: the rest show this frame */
      while (n < n_total) {
        if ((r = emit(p, prev, &pi, n)) < 0) goto out;
        n++;
      }
      r = 0;
      break;
    }
  }
out:
  av_frame_free(&prev);
  av_frame_free(&cur);
  if (r < 0 && r != KILN_ECANCELLED) pl_fail(p, r, &e);
  else if (r == KILN_ECANCELLED && cancelled(p)) pl_fail(p, r, &e);
  pthread_mutex_lock(&p->mu);
  p->decode_done = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int km_x264_lookahead(const char *preset) {
  static const struct { const char *name; int frames; } t[] = {
      {"ultrafast", 0}, {"superfast", 0}, {"veryfast", 10}, {"faster", 20}, {"fast", 30},
      {"medium", 40},   {"slow", 50},     {"slower", 60},   {"veryslow", 60}, {"placebo", 60}};
  for (size_t i = 0; preset && i < sizeof t / sizeof t[0]; i++)
    if (!strcmp(preset, t[i].name)) return t[i].frames;
  return 40;
}

int64_t km_pipeline_expected_frames(const km_probe *pr, const km_timeline *tl, AVRational out_fps) {
  double fps = out_fps.num > 0 ? av_q2d(out_fps) : pr->fps;
  double src_end = pr->frames_exact && !pr->vfr && pr->fps > 0 ? pr->frames / pr->fps : pr->duration;
  if (src_end <= 0) return 0;
  return llround(km_timeline_duration(tl, src_end) * fps);
}

static void tmp_name(char *buf, size_t n, const char *out) {
  const char *slash = strrchr(out, '/');
  if (slash)
    snprintf(buf, n, "%.*s/.%s.part-%ld", (int)(slash - out), out, slash + 1, (long)getpid());
  else
    snprintf(buf, n, ".%s.part-%ld", out, (long)getpid());
}

int km_pipeline_run(const km_pipeline_cfg *c, km_pipeline_stats *st, kiln_err *e) {
  pl p;
  memset(&p, 0, sizeof p);
  memset(st, 0, sizeof *st);
  p.c = c;
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  km_writer *w = NULL;
  pthread_t th;
  int started = 0, r;
  char tmp[4096];
  tmp_name(tmp, sizeof tmp, c->output);
  double t0 = now_s();

  if ((r = km_timeline_check(&c->tl, e)) < 0) goto done;
  int chunk = c->out_start > 0 || c->out_end > 0;
  int64_t src_start = c->start;
  /* a chunk of a fixed-GOP lossy encode starts `pre` frames early and runs
   * `post` frames long, so the encoder's rate control and lookahead see
   * what they see in the whole run; the writer keeps only the chunk */
  int64_t pre = 0, post = 0;
  if (chunk && c->enc.keyint_s > 0 && !c->enc.lossless && !c->enc.gop) {
    pre = KM_CHUNK_WARMUP;
    post = km_x264_lookahead(c->enc.preset) + 4;
  }
  if (pre) {                                      /* a lossy chunk must start on one of the run's keyframes */
    km_probe own;
    const km_probe *pq = c->probe;
    if (!pq && (r = km_probe_file(c->input, &own, e)) < 0) goto done;
    if (!pq) pq = &own;
    AVRational ofps = c->out_fps.num > 0 ? c->out_fps : pq->fps_q;
    int64_t gop = lround(c->enc.keyint_s * av_q2d(ofps));
    if (gop > 1 && c->out_start % gop != 0) {
      r = kiln_fail(e, KILN_EINVAL, "a chunk must start on a keyframe: output frame %lld is not a multiple of %lld "
                    "(keyint %g s)", (long long)c->out_start, (long long)gop, c->enc.keyint_s);
      goto done;
    }
  }
  p.first = c->out_start > pre ? c->out_start - pre : 0;
  p.stop = c->out_end > 0 ? c->out_end + post : -1;
  if (chunk && p.first > 0) {
    /* the source frame shown by the chunk's first output frame, less a margin:
     * frames before it are decoded and passed over by the selector */
    km_probe own;
    const km_probe *pq = c->probe;
    if (!pq && (r = km_probe_file(c->input, &own, e)) < 0) goto done;
    if (!pq) pq = &own;
    AVRational ofps = c->out_fps.num > 0 ? c->out_fps : pq->fps_q;
    double t = km_timeline_to_src(&c->tl, INFINITY, (p.first + 0.5) / av_q2d(ofps));
    double sfps = pq->fps > 0 ? pq->fps : 25;
    int64_t margin = pq->vfr ? (int64_t)(sfps + 2) : 2;
    src_start = (int64_t)floor(t * sfps) - margin;
    if (src_start < 0) src_start = 0;
  }
  if ((r = km_decoder_open(&p.dec, c->input, c->probe, src_start, chunk ? -1 : c->end, c->threads, e)) < 0) goto done;
  const km_probe *pr = km_decoder_probe(p.dec);
  p.fps = c->out_fps.num > 0 ? c->out_fps : pr->fps_q;
  p.in_w = pr->width & ~1;
  p.in_h = pr->height & ~1;
  p.out_w = c->out_w > 0 ? c->out_w : pr->width & ~1;
  p.out_h = c->out_h > 0 ? c->out_h : pr->height & ~1;
  if ((r = km_check_pixels(p.out_w, p.out_h, 1, e, "the output frame of '%s'", c->output)) < 0) goto done;
  if (pr->frames_exact && pr->frames == 0) {
    r = kiln_fail(e, KILN_ENOFRAMES, "input '%s' has a video stream with no frames", c->input);
    goto done;
  }
  int64_t expect = km_pipeline_expected_frames(pr, &c->tl, p.fps);
  if (chunk) expect = (c->out_end > 0 && c->out_end < expect ? c->out_end : expect) - c->out_start;
  if (c->tl.start > 0 && pr->duration > 0 && c->tl.start >= pr->duration) {
    r = kiln_fail(e, KILN_EPARAM, "trim.start (%g s) is at or past the end of the input (%.3f s)", c->tl.start, pr->duration);
    goto done;
  }

  km_enc_opts eo = c->enc;
  eo.width = p.out_w;
  eo.height = p.out_h;
  eo.fps = p.fps;
  if (chunk) {
    eo.first_index = p.first;
    eo.keep_from = c->out_start;
    eo.keep_to = c->out_end > 0 ? c->out_end : INT64_MAX;
  }
  km_audio_opts ao = {0};
  if (c->keep_audio && pr->n_audio > 0 && c->start <= 0 && !chunk) {
    ao.path = c->input;
    ao.tl = c->tl;
    ao.video_start = pr->start_time;   /* keeps audio in sync with the first video frame */
  }
  if ((r = km_writer_open(&w, tmp, c->output, &eo, &ao, e)) < 0) goto done;

  /* The encoder already runs `threads` threads; a cheap kernel gets half as
   * many so the CPUs are not oversubscribed (measured: bench/README.md). */
  int kthreads = c->kernel_threads > 0 ? c->kernel_threads : (c->threads > 0 ? c->threads : kp_ncpu()) / 2;
  p.pool = kp_pool_new(kthreads > 0 ? kthreads : 1);
  if (!p.pool) { r = kiln_fail(e, KILN_ENOMEM, "cannot start threads"); goto done; }
  /* Enough slack for the decoder to run ahead while x264 takes a burst of
   * frames (measured: 4 slots ran ~3% slower than 8-16 at 1080p). */
  p.q = 2 * kp_pool_size(p.pool) + 8;
  p.slots = calloc((size_t)p.q, sizeof *p.slots);
  p.spare = calloc((size_t)p.q, sizeof *p.spare);
  if (!p.slots || !p.spare) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
  for (int i = 0; i < p.q; i++) p.slots[i].pl = &p;
  if (c->see) {
    if (c->lookahead < 0) { r = kiln_fail(e, KILN_EINVAL, "pipeline: negative lookahead"); goto done; }
    p.ahead = calloc((size_t)c->lookahead + 1, sizeof *p.ahead);
    p.ahead_info = calloc((size_t)c->lookahead + 1, sizeof *p.ahead_info);
    if (!p.ahead || !p.ahead_info) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
  }
  if (pthread_create(&th, NULL, decode_main, &p) != 0) { r = kiln_fail(e, KILN_EINTERNAL, "cannot start the decode thread"); goto done; }
  started = 1;

  for (int64_t n = 0;; n++) {
    pl_slot *s = &p.slots[n % p.q];
    pthread_mutex_lock(&p.mu);
    while (!p.abort && !(p.decode_done && n >= p.emitted) && s->state != SLOT_DONE && s->state != SLOT_FAILED) {
      if (c->cancel && *c->cancel) { p.abort = 1; pthread_cond_broadcast(&p.cv); break; }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100 * 1000 * 1000;
      if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
      pthread_cond_timedwait(&p.cv, &p.mu, &ts);
    }
    int finished = p.decode_done && n >= p.emitted && s->state != SLOT_DONE;
    int ab = p.abort;
    int state = s->state;
    pthread_mutex_unlock(&p.mu);
    if (ab) break;
    if (finished) break;
    if (state == SLOT_FAILED) { pl_fail(&p, s->err.code, &s->err); break; }
    kiln_err we = {0};
    r = km_writer_write(w, s->out, &we);
    av_frame_free(&s->in);
    pthread_mutex_lock(&p.mu);
    if (av_frame_is_writable(s->out) && p.nspare < p.q) { p.spare[p.nspare++] = s->out; s->out = NULL; }
    else av_frame_free(&s->out);
    s->state = SLOT_FREE;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    if (r < 0) { pl_fail(&p, r, &we); break; }
    int64_t done = n + 1 - (chunk ? c->out_start - p.first : 0);   /* the warm-up frames are not the chunk's */
    if (done > 0 && (!chunk || done <= expect))
      if (c->progress) c->progress(c->progress_arg, done, expect > done ? expect : done);
  }
  pthread_join(th, NULL);
  started = 0;
  kp_pool_wait(p.pool);
  if (p.abort) {
    if (!p.err_code) { p.err_code = KILN_ECANCELLED; kiln_fail(&p.err, KILN_ECANCELLED, "cancelled"); }
    r = p.err_code;
    *e = p.err;
    e->code = r;
    goto done;
  }
  if (km_writer_frames(w) == 0) {
    r = kiln_fail(e, KILN_ENOFRAMES, "input '%s' produced no frames%s", c->input,
                  c->tl.start > 0 || c->tl.end > 0 ? " in the trimmed range" : "");
    goto done;
  }
  if ((r = km_writer_finish(w, e)) < 0) goto done;
  if (rename(tmp, c->output) != 0) {
    r = kiln_fail(e, KILN_EIO, "cannot move the finished output to '%s': %s", c->output, strerror(errno));
    goto done;
  }
  st->frames_in = p.frames_in;
  st->frames_out = km_writer_frames(w);
  st->seconds = now_s() - t0;
  st->fps = st->seconds > 0 ? st->frames_out / st->seconds : 0;
  st->out_w = p.out_w;
  st->out_h = p.out_h;
  st->out_fps = p.fps;
  st->out_duration = st->frames_out / av_q2d(p.fps);
  snprintf(st->audio, sizeof st->audio, "%s", km_writer_audio_mode(w));
  r = 0;
done:
  if (started) {
    pl_fail(&p, KILN_ECANCELLED, &(kiln_err){KILN_ECANCELLED, "cancelled"});
    pthread_join(th, NULL);
  }
  if (p.pool) { kp_pool_wait(p.pool); kp_pool_free(p.pool); }
  if (p.slots) {
    for (int i = 0; i < p.q; i++) { av_frame_free(&p.slots[i].in); av_frame_free(&p.slots[i].out); }
    free(p.slots);
  }
  for (int i = 0; i < p.nspare; i++) av_frame_free(&p.spare[i]);
  free(p.spare);
  for (int i = 0; p.ahead && i <= c->lookahead; i++) av_frame_free(&p.ahead[i]);
  free(p.ahead);
  free(p.ahead_info);
  km_writer_free(w);
  km_decoder_free(p.dec);
  if (r < 0) unlink(tmp);
  pthread_mutex_destroy(&p.mu);
  pthread_cond_destroy(&p.cv);
  return r;
}
