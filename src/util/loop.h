/* loop.h — a background thread that runs tick() every period_ms and at
 * once when kicked (kicks closer than min_gap_ms to the last tick wait for
 * the rest: under a burst, one tick covers many kicks). tick returns
 * non-zero to run again at once (more work is waiting). The autoscaler, the
 * planner and webhook delivery are such loops. */
#ifndef KILN_LOOP_H
#define KILN_LOOP_H

#include <pthread.h>

typedef struct kl_loop {
  int (*tick)(void *arg);
  void *arg;
  int period_ms, min_gap_ms;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop, kicked, started;
} kl_loop;

/* 0, or -1 when the thread cannot start. */
int kl_start(kl_loop *l, int period_ms, int min_gap_ms, int (*tick)(void *arg), void *arg);
void kl_kick(kl_loop *l);
/* Stops after the tick in progress; the loop can be freed then. */
void kl_stop(kl_loop *l);

#endif
