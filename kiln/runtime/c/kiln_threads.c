/* kiln's thread pool: the one piece of run-time support generated code calls.
 *
 * A pool is an explicit object (no global state): the JIT creates one per process,
 * an exported model one per handle. Generated kernels split their outermost loop
 * into `n` units and call kiln_parallel_for(pool, task, ctx, n); the calling thread
 * runs one share itself and the workers the rest, in contiguous static ranges
 * [n*i/T, n*(i+1)/T). Workers spin briefly on a generation counter before sleeping
 * on a condition variable, so back-to-back kernels (the common case inside one model
 * call) start without a futex wake-up. A pool that is already running a job (another
 * thread's, or a nested call from inside a task) runs the new one serially on the
 * caller: never a deadlock, never oversubscription.
 *
 * Build: cc -O2 -fPIC -pthread -c kiln_threads.c
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef void (*kiln_task)(void *ctx, int64_t begin, int64_t end);

typedef struct kiln_pool {
    int nthreads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done;
    /* the current job */
    kiln_task fn;
    void *ctx;
    int64_t n;
    int pending;                 /* workers still running their share */
    volatile uint64_t generation; /* bumped per job; workers watch it */
    int stop;
    int busy;                    /* a job is in flight: nested/concurrent calls go serial */
} kiln_pool;

typedef struct {
    kiln_pool *pool;
    int index;
} kiln_worker_arg;

static void run_share(kiln_pool *p, int i) {
    int64_t b = p->n * i / p->nthreads, e = p->n * (i + 1) / p->nthreads;
    if (b < e) p->fn(p->ctx, b, e);
}

static void *worker(void *arg) {
    kiln_worker_arg *w = (kiln_worker_arg *)arg;
    kiln_pool *p = w->pool;
    int index = w->index;
    free(w);
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&p->generation, __ATOMIC_ACQUIRE) == seen &&
               !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE) && spins < 200000) {
            spins++;
            __builtin_ia32_pause();
        }
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->stop) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_share(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

kiln_pool *kiln_pool_create(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    kiln_pool *p = (kiln_pool *)calloc(1, sizeof(kiln_pool));
    if (!p) return NULL;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < nthreads; i++) {
        kiln_worker_arg *w = (kiln_worker_arg *)malloc(sizeof(kiln_worker_arg));
        if (w) {
            w->pool = p;
            w->index = i;
        }
        if (!w || pthread_create(&p->threads[i], NULL, worker, w) != 0) {
            free(w);
            p->nthreads = i; /* run with the workers that did start */
            break;
        }
    }
    return p;
}

void kiln_pool_destroy(kiln_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int kiln_pool_threads(const kiln_pool *p) { return p ? p->nthreads : 1; }

void kiln_parallel_for(kiln_pool *p, kiln_task fn, void *ctx, int64_t n) {
    if (n <= 0) return;
    if (!p || p->nthreads == 1 || n == 1 ||
        __atomic_exchange_n(&p->busy, 1, __ATOMIC_ACQ_REL)) {
        fn(ctx, 0, n); /* serial: no pool, nothing to split, or the pool is in use */
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->pending = p->nthreads - 1;
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_share(p, 0);
    for (int spins = 0; spins < 200000 && __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) > 0; spins++)
        __builtin_ia32_pause();
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    __atomic_store_n(&p->busy, 0, __ATOMIC_RELEASE);
}
