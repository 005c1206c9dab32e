/* loop.c — see loop.h. */
#include "util/loop.h"

#include <stdint.h>
#include <time.h>

static int64_t rt_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);            /* a wall-clock step does not stall the loop */
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *loop_main(void *arg) {
  kl_loop *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->stop) {
    pthread_mutex_unlock(&l->mu);
    int64_t last = rt_us();
    int again = l->tick(l->arg);
    pthread_mutex_lock(&l->mu);
    if (again) continue;
    for (;;) {
      int64_t now = rt_us();
      if (l->stop || (l->kicked && now - last >= (int64_t)l->min_gap_ms * 1000) || now - last >= (int64_t)l->period_ms * 1000)
        break;
      int64_t until = last + (int64_t)(l->kicked ? l->min_gap_ms : l->period_ms) * 1000;
      struct timespec ts = {(time_t)(until / 1000000), (long)(until % 1000000) * 1000};
      pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    l->kicked = 0;
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

int kl_start(kl_loop *l, int period_ms, int min_gap_ms, int (*tick)(void *arg), void *arg) {
  l->tick = tick;
  l->arg = arg;
  l->period_ms = period_ms;
  l->min_gap_ms = min_gap_ms;
  l->stop = l->kicked = 0;
  pthread_mutex_init(&l->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&l->cv, &ca);
  pthread_condattr_destroy(&ca);
  l->started = pthread_create(&l->th, NULL, loop_main, l) == 0;
  if (!l->started) {
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    return -1;
  }
  return 0;
}

void kl_kick(kl_loop *l) {
  if (!l || !l->started) return;
  pthread_mutex_lock(&l->mu);
  l->kicked = 1;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

void kl_stop(kl_loop *l) {
  if (!l || !l->started) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->th, NULL);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  l->started = 0;
}
