/* timeline.c — maps source time to output time for trim and speed.
 *
 * The timeline is a list of contiguous pieces [a, b) of source time, each at
 * one speed (1 where no segment says otherwise). Output time is the sum over
 * pieces of (overlap / speed), so it is continuous, piecewise linear and
 * strictly increasing: both directions of the map are exact. */
#include "media/media.h"

#include <math.h>
#include <string.h>

void km_timeline_identity(km_timeline *tl) {
  memset(tl, 0, sizeof *tl);
}

int km_timeline_is_identity(const km_timeline *tl) {
  if (tl->start > 0 || tl->end > 0) return 0;
  for (int i = 0; i < tl->nseg; i++)
    if (tl->seg[i].speed != 1.0) return 0;
  return 1;
}

int km_timeline_check(const km_timeline *tl, kiln_err *e) {
  if (tl->start < 0) return kiln_fail(e, KILN_EPARAM, "trim.start must be >= 0 seconds, got %g", tl->start);
  if (tl->end > 0 && tl->end <= tl->start)
    return kiln_fail(e, KILN_EPARAM, "trim.end (%g s) must be after trim.start (%g s)", tl->end, tl->start);
  for (int i = 0; i < tl->nseg; i++) {
    const km_speed_seg *s = &tl->seg[i];
    if (!(s->end > s->start))
      return kiln_fail(e, KILN_EPARAM, "speed[%d]: end (%g s) must be after start (%g s)", i, s->end, s->start);
    if (s->speed < 0.25 || s->speed > 4.0)
      return kiln_fail(e, KILN_EPARAM, "speed[%d].speed must be between 0.25 and 4, got %g", i, s->speed);
    if (i > 0 && s->start < tl->seg[i - 1].end)
      return kiln_fail(e, KILN_EPARAM,
                       "speed[%d] starts at %g s, before speed[%d] ends (%g s); segments must be in order and not overlap",
                       i, s->start, i - 1, tl->seg[i - 1].end);
  }
  return 0;
}

int km_timeline_pieces(const km_timeline *tl, double src_end, km_piece *out, int max) {
  double end = tl->end > 0 ? fmin(tl->end, src_end) : src_end;
  double t = tl->start;
  int n = 0;
  for (int i = 0; i < tl->nseg && t < end && n < max; i++) {
    const km_speed_seg *s = &tl->seg[i];
    if (s->end <= t) continue;
    if (s->start >= end) break;
    if (s->start > t) {                       /* a gap at normal speed */
      out[n++] = (km_piece){t, s->start, 1.0};
      t = s->start;
      if (n >= max) break;
    }
    out[n++] = (km_piece){t, fmin(s->end, end), s->speed};
    t = fmin(s->end, end);
  }
  if (t < end && n < max) out[n++] = (km_piece){t, end, 1.0};
  return n;
}

double km_timeline_to_out(const km_timeline *tl, double src_end, double t) {
  km_piece p[2 * KM_MAX_SEGMENTS + 2];
  int n = km_timeline_pieces(tl, src_end, p, (int)(sizeof p / sizeof p[0]));
  double tau = 0;
  for (int i = 0; i < n; i++) {
    if (t <= p[i].start) break;
    tau += (fmin(t, p[i].end) - p[i].start) / p[i].speed;
  }
  return tau;
}

double km_timeline_to_src(const km_timeline *tl, double src_end, double tau) {
  km_piece p[2 * KM_MAX_SEGMENTS + 2];
  int n = km_timeline_pieces(tl, src_end, p, (int)(sizeof p / sizeof p[0]));
  double acc = 0;
  for (int i = 0; i < n; i++) {
    double len = (p[i].end - p[i].start) / p[i].speed;
    if (tau < acc + len || i == n - 1) return p[i].start + (tau - acc) * p[i].speed;
    acc += len;
  }
  return tl->start + tau;
}

double km_timeline_duration(const km_timeline *tl, double src_end) {
  double end = tl->end > 0 ? fmin(tl->end, src_end) : src_end;
  return km_timeline_to_out(tl, src_end, end);
}
