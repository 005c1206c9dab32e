/* pool.c — see pool.h. Invariant: `pending` counts queued plus running tasks;
 * kp_pool_wait returns when it is zero. Tasks are a singly linked FIFO. */
#include "util/pool.h"
#include "util/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct kp_task {
  kp_task_fn fn;
  void *arg;
  struct kp_task *next;
} kp_task;

struct kp_pool {
  pthread_mutex_t mu;
  pthread_cond_t has_work, idle;
  kp_task *head, *tail;
  int pending, stopping, n;
  pthread_t *threads;
};

int kp_ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (int)n;
}

static void *kp_worker(void *arg) {
  kp_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stopping) pthread_cond_wait(&p->has_work, &p->mu);
    if (!p->head && p->stopping) break;
    kp_task *t = p->head;
    p->head = t->next;
    if (!p->head) p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    t->fn(t->arg);
    free(t);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_broadcast(&p->idle);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

kp_pool *kp_pool_new(int n) {
  if (n <= 0) n = kp_ncpu();
  kp_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->threads = calloc((size_t)n, sizeof *p->threads);
  if (!p->threads) { free(p); return NULL; }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->has_work, NULL);
  pthread_cond_init(&p->idle, NULL);
  for (int i = 0; i < n; i++) {
    if (pthread_create(&p->threads[i], NULL, kp_worker, p) != 0) break;
    p->n++;
  }
  if (p->n == 0) { kp_pool_free(p); return NULL; }
  return p;
}

int kp_pool_size(const kp_pool *p) { return p->n; }

int kp_pool_submit(kp_pool *p, kp_task_fn fn, void *arg) {
  kp_task *t = malloc(sizeof *t);
  if (!t) return KILN_ENOMEM;
  t->fn = fn; t->arg = arg; t->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->tail) p->tail->next = t; else p->head = t;
  p->tail = t;
  p->pending++;
  pthread_cond_signal(&p->has_work);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void kp_pool_wait(kp_pool *p) {
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->idle, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

void kp_pool_free(kp_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->has_work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->has_work);
  pthread_cond_destroy(&p->idle);
  free(p->threads);
  free(p);
}
