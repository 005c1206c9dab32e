/* pool.h — a fixed-size thread pool with a FIFO of tasks.
 *
 * kp_pool_new() starts n threads that run submitted tasks in submission order
 * (several at once). The pool never owns task arguments: whoever submits keeps
 * them alive until the task has run. kp_pool_free() waits for every submitted
 * task to finish, then joins the threads. Callers that need back-pressure
 * bound their own submissions (see media/pipeline.c). */
#ifndef KILN_POOL_H
#define KILN_POOL_H

typedef struct kp_pool kp_pool;
typedef void (*kp_task_fn)(void *arg);

/* n <= 0 means one thread per online CPU. Returns NULL on allocation failure. */
kp_pool *kp_pool_new(int n);
int kp_pool_size(const kp_pool *p);
/* Returns 0, or KILN_ENOMEM. */
int kp_pool_submit(kp_pool *p, kp_task_fn fn, void *arg);
/* Blocks until the queue is empty and no task is running. */
void kp_pool_wait(kp_pool *p);
void kp_pool_free(kp_pool *p);

/* Number of online CPUs (at least 1). */
int kp_ncpu(void);

#endif
