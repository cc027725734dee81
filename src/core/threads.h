/* core/threads.h: running n jobs side by side on POSIX threads, the one place
 * that knows whether this build has threads (WASM only with -pthread). */
#ifndef QS_CORE_THREADS_H
#define QS_CORE_THREADS_H

#include <stddef.h>

#if !defined(__EMSCRIPTEN__) || defined(__EMSCRIPTEN_PTHREADS__)
#define QS_HAVE_THREADS 1
#else
#define QS_HAVE_THREADS 0
#endif

/* Most threads any parallel loop of the library uses. */
#define QS_MAX_THREADS 16

/* Calls job(items + i * item_size) for i in [0, n): item 0 on the calling
 * thread, the others on threads of their own. A thread that cannot be
 * created has its job run on the caller afterwards, so every job always runs;
 * without thread support all run on the caller, in order. */
void qs_parallel_run(int n, void (*job)(void *item), void *items, size_t item_size);

/* Processors online (1 where it cannot be told), at most QS_MAX_THREADS. */
int qs_cpu_count(void);

#endif
