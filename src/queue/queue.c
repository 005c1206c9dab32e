/* queue.c — names of the queue's enums, kq_job_release, and kq_open, which
 * picks a backend from a URL. The operations are machine.c's. */
#include "queue/queue_int.h"

#include <stdlib.h>
#include <string.h>

#define KQ_STR_(N, n) #n,
static const char *const state_names[] = {KQ_STATES(KQ_STR_)};
const char *kq_state_name(kq_state s) { return (unsigned)s < KQ_NSTATES ? state_names[s] : "unknown"; }

static const char *const wstate_names[] = {"starting", "idle", "busy", "exited"};
const char *kq_wstate_name(kq_wstate s) { return (unsigned)s < KQ_NWSTATES ? wstate_names[s] : "unknown"; }

void kq_job_release(kq_job *j) {
  if (!j) return;
  free(j->spec);
  free(j->result);
  free(j->webhook);
  free(j->plan);
  j->spec = j->result = j->webhook = j->plan = NULL;
}

int kq_open(kq **out, const char *url, const kq_policy *policy, kiln_err *e) {
  *out = NULL;
  if (!url || !*url) return kiln_fail(e, KILN_EINVAL, "no queue URL (postgres://..., sqlite:PATH or a file path)");
  if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13)) return kq_open_postgres(out, url, policy, e);
  if (!strncmp(url, "postgres:", 9)) return kq_open_postgres(out, url + 9, policy, e);
  if (!strncmp(url, "sqlite:", 7)) return kq_open_sqlite(out, url + 7, policy, e);
  const char *colon = strstr(url, "://");
  if (colon) return kiln_fail(e, KILN_EINVAL, "queue URL '%.*s': unknown scheme (postgres://... or sqlite:PATH)",
                              (int)(colon - url + 3) > 40 ? 40 : (int)(colon - url + 3), url);
  return kq_open_sqlite(out, url, policy, e);
}
