/* memlimit.c — memory_mb, enforced on a worker process.
 *
 * The mechanism is RLIMIT_DATA, set by the worker on itself when it starts
 * (after the zygote's fork or an exec alike), as the memory it holds then
 * plus memory_mb MiB. Since Linux 4.7 RLIMIT_DATA bounds every private
 * writable mapping (VmData in /proc/PID/status: brk heap, anonymous mmap,
 * thread stacks), which is exactly the memory a job can make resident
 * besides files. It was chosen over the alternatives because it counts
 * what matters and works for any user:
 *   - RLIMIT_AS counts address space that costs nothing: an idle worker
 *     holds 290 MB of it for 43 MB resident, a 640x360 reframe 804 MB for
 *     205 MB (libraries, glibc's 64 MB arena reservation per thread,
 *     thread stacks, guard pages); a limit near memory_mb would refuse
 *     normal jobs, one far above it would bound nothing.
 *   - a cgroup's memory.max counts resident memory, but a user can only
 *     make one under a delegated cgroup v2 tree (systemd's Delegate=);
 *     kiln serve itself can run in one (docs/operations.md).
 * A limit of this kind makes allocations fail (mmap/brk answer ENOMEM)
 * instead of killing the process, so the worker records the failure and
 * lives to report it: malloc and its kin are wrapped here (defined in the
 * executable, so libav, x264, oneDNN and libc itself call these) to note
 * the first failure since the task began (pthread_create too: a thread's
 * stack is such memory); the worker then reports the task
 * as out_of_memory whatever error the code that met the failure made of
 * it ("corrupt data", "generic error in an external library"). A library
 * that crashes on a NULL instead makes the worker exit with KW_EXIT_OOM
 * (the crash handlers below), which the server also reports as
 * out_of_memory.
 *
 * Sanitizer builds neither wrap malloc (the sanitizer's allocator does)
 * nor limit (it reserves terabytes of shadow memory): kw_mem_limit says so. */
#include "worker/memlimit.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define KW_SANITIZED 1
#endif
#endif

static atomic_int g_failed;
static atomic_size_t g_fail_size;

__attribute__((unused)) static void note(size_t n) {   /* unused in sanitizer builds */
  if (!atomic_exchange(&g_failed, 1)) atomic_store(&g_fail_size, n);
}

#ifndef KW_SANITIZED
/* glibc's own allocator under its exported internal names: the wrappers
 * add only the note. free and malloc_usable_size stay glibc's (the same
 * allocator). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

void *malloc(size_t n) {
  void *p = __libc_malloc(n);
  if (!p) note(n);
  return p;
}

void *calloc(size_t a, size_t b) {
  void *p = __libc_calloc(a, b);
  if (!p && a && b && a <= SIZE_MAX / b) note(a * b);    /* an overflowing count is not memory */
  return p;
}

void *realloc(void *q, size_t n) {
  void *p = __libc_realloc(q, n);
  if (!p && n) note(n);
  return p;
}

void *memalign(size_t align, size_t n) {
  void *p = __libc_memalign(align, n);
  if (!p) note(n);
  return p;
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
  if (!align || (align & (align - 1)) || align % sizeof(void *)) return EINVAL;
  void *p = __libc_memalign(align, n);
  if (!p) { note(n); return ENOMEM; }
  *out = p;
  return 0;
}

void *valloc(size_t n) {
  void *p = __libc_valloc(n);
  if (!p) note(n);
  return p;
}

void *pvalloc(size_t n) {
  void *p = __libc_pvalloc(n);
  if (!p) note(n);
  return p;
}

/* A thread's stack is a private writable mapping too (8 MB by default):
 * the limit can refuse it, and then a library reports "cannot create a
 * thread" rather than a failed malloc. */
typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*start)(void *), void *arg) {
  static _Atomic(pthread_create_fn) real;
  pthread_create_fn f = atomic_load(&real);
  if (!f) {
    f = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
    if (!f) return EAGAIN;
    atomic_store(&real, f);
  }
  int r = f(t, a, start, arg);
  if (r == EAGAIN) {
    size_t stack = 0;
    if (!a || pthread_attr_getstacksize(a, &stack) != 0) stack = 0;
    note(stack);
  }
  return r;
}
#endif

void kw_mem_reset(void) {
  atomic_store(&g_fail_size, 0);
  atomic_store(&g_failed, 0);
}

int kw_mem_failed(size_t *size) {
  if (!atomic_load(&g_failed)) return 0;
  if (size) *size = atomic_load(&g_fail_size);
  return 1;
}

/* Reads VmData without allocating (it may run when memory is short). */
size_t kw_mem_data(void) {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *p = strstr(buf, "\nVmData:");
  if (!p) return 0;
  p += 8;
  while (*p == ' ' || *p == '\t') p++;
  size_t kb = 0;
  while (*p >= '0' && *p <= '9') kb = kb * 10 + (size_t)(*p++ - '0');
  return kb * 1024;
}

/* A crash after an allocation failed is the library's answer to running
 * out of memory: exit with KW_EXIT_OOM. Any other crash goes on to its
 * default action (SA_RESETHAND, and the signal raised again). */
__attribute__((unused)) static void on_crash(int sig) {
  if (atomic_load(&g_failed)) {
    static const char m[] = "kiln worker: crashed after an allocation failed (over its function's memory_mb)\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    _exit(KW_EXIT_OOM);
  }
  raise(sig);
}

int kw_mem_limit(int memory_mb, const char **why, kiln_err *e) {
  *why = NULL;
#ifdef KW_SANITIZED
  (void)memory_mb;
  (void)e;
  *why = "a sanitizer build (its allocator reserves terabytes of address space)";
  return 0;
#else
  if (memory_mb <= 0) { *why = "memory_mb is 0"; return 0; }
  size_t base = kw_mem_data();
  if (!base) return kiln_fail(e, KILN_EINTERNAL, "cannot read this process's memory use from /proc/self/status");
  struct rlimit rl;
  if (getrlimit(RLIMIT_DATA, &rl) != 0) return kiln_fail(e, KILN_EINTERNAL, "getrlimit(RLIMIT_DATA): %s", strerror(errno));
  rlim_t want = (rlim_t)base + ((rlim_t)memory_mb << 20);
  if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) want = rl.rlim_max;   /* an operator's lower limit stays */
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_DATA, &rl) != 0) return kiln_fail(e, KILN_EINTERNAL, "setrlimit(RLIMIT_DATA): %s", strerror(errno));
  /* a thread's stack counts in full: at most the usual 8 MiB each, whatever `ulimit -s` says (glibc's
   * default follows it, and takes 32 MiB when it is unlimited) */
  pthread_attr_t a;
  size_t stack = 0;
  if (pthread_getattr_default_np(&a) == 0) {
    if (pthread_attr_getstacksize(&a, &stack) == 0 && stack > ((size_t)8 << 20) &&
        pthread_attr_setstacksize(&a, (size_t)8 << 20) == 0)
      pthread_setattr_default_np(&a);
    pthread_attr_destroy(&a);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGABRT, &sa, NULL);
  return 1;
#endif
}
