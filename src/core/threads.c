/* core/threads.c: qs_parallel_run on pthreads, and the processor count that
 * callers use as their default number of threads. */
#define _POSIX_C_SOURCE 200809L
#include "core/threads.h"

#include <stdint.h>
#include <unistd.h>

#if QS_HAVE_THREADS
#include <pthread.h>

typedef struct job_call {
    void (*job)(void *);
    void *item;
} job_call;

static void *call_job(void *arg) {
    job_call *c = arg;
    c->job(c->item);
    return NULL;
}
#endif

void qs_parallel_run(int n, void (*job)(void *item), void *items, size_t item_size) {
    uint8_t *base = items;
    int first_unthreaded = 0;
#if QS_HAVE_THREADS
    int n_threads = n < QS_MAX_THREADS ? n : QS_MAX_THREADS;
    pthread_t tid[QS_MAX_THREADS];
    job_call calls[QS_MAX_THREADS];
    int started[QS_MAX_THREADS] = {0};
    for (int i = 1; i < n_threads; i++) {
        calls[i] = (job_call){job, base + (size_t)i * item_size};
        started[i] = pthread_create(&tid[i], NULL, call_job, &calls[i]) == 0;
    }
    if (n > 0) job(base);
    for (int i = 1; i < n_threads; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else job(base + (size_t)i * item_size); /* no thread to be had: run it here */
    }
    first_unthreaded = n_threads > 0 ? n_threads : 0;
#endif
    for (int i = first_unthreaded; i < n; i++) job(base + (size_t)i * item_size);
}

int qs_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > QS_MAX_THREADS ? QS_MAX_THREADS : (int)n;
}
