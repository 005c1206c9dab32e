/* memlimit.h — a worker's memory limit (its function's memory_mb) and how
 * the worker tells running out of it from other failures. See memlimit.c
 * for why the limit is RLIMIT_DATA and what it counts. */
#ifndef KILN_MEMLIMIT_H
#define KILN_MEMLIMIT_H

#include <stddef.h>

#include "util/err.h"

/* The exit status of a worker that crashed after an allocation failed
 * (a library that does not check malloc): the server fails its task as
 * out_of_memory, not worker_lost. */
#define KW_EXIT_OOM 86

/* Limits this process's private writable memory (Linux VmData: heap,
 * anonymous mappings, thread stacks) to what it holds now plus memory_mb
 * MiB, and installs the crash handlers above. Returns 1 when the limit is
 * on, 0 when it is not enforced in this build (a sanitizer's allocator
 * reserves terabytes; *why says so), or a negative code. */
int kw_mem_limit(int memory_mb, const char **why, kiln_err *e);

/* Forgets allocation failures seen so far (call before each task). */
void kw_mem_reset(void);
/* 1 if an allocation failed since kw_mem_reset (in kiln or any library:
 * malloc and its kin, and pthread_create, are wrapped); *size: the first
 * one's bytes (0 for a thread with the default stack). */
int kw_mem_failed(size_t *size);
/* This process's VmData in bytes, or 0 if /proc says nothing. */
size_t kw_mem_data(void);

#endif
