/* Stress harness for kiln_threads.c (built and run by tests/runtime/test_threads.py):
 * every unit of every job runs exactly once, whatever the chunking, whether the
 * workers spin, sleep (the caller pauses past their spin), are outnumbered by the
 * pool's threads, or share the pool with a second caller (which runs serially). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct kiln_pool kiln_pool;
typedef void (*kiln_task)(void *ctx, int64_t begin, int64_t end);
kiln_pool *kiln_pool_create(int);
void kiln_pool_destroy(kiln_pool *);
void kiln_parallel_for(kiln_pool *p, kiln_task fn, void *ctx, int64_t n);

#define MAXN 4096
typedef struct { int hits[MAXN]; kiln_pool *pool; int nested; } job;

static void count(void *ctx, int64_t b, int64_t e) {
    job *j = ctx;
    for (int64_t i = b; i < e; i++) __atomic_add_fetch(&j->hits[i], 1, __ATOMIC_RELAXED);
    if (j->nested) { /* a kernel calling the pool from inside a task runs serially */
        job inner;
        memset(&inner, 0, sizeof inner);
        kiln_parallel_for(j->pool, count, &inner, 7);
        for (int i = 0; i < 7; i++) if (inner.hits[i] != 1) j->hits[MAXN - 1] += 1000;
    }
}

static void pause_us(long us) {
    struct timespec t = {0, us * 1000};
    nanosleep(&t, NULL);
}

static int run(kiln_pool *p, int jobs, unsigned seed) {
    static __thread job j;
    for (int k = 0; k < jobs; k++) {
        seed = seed * 1103515245u + 12345u;
        int64_t n = 1 + (seed >> 8) % (k % 3 ? 97 : MAXN - 1);
        memset(j.hits, 0, sizeof j.hits);
        j.pool = p;
        j.nested = (k % 50) == 0;
        kiln_parallel_for(p, count, &j, n);
        for (int64_t i = 0; i < n; i++)
            if (j.hits[i] != 1) {
                printf("job %d unit %ld ran %d times (n %ld)\n", k, (long)i, j.hits[i], (long)n);
                return 1;
            }
        if (j.hits[MAXN - 1] >= 1000) { printf("job %d: nested call wrong\n", k); return 1; }
        if (k % 400 == 0) pause_us(2000); /* past the spin: workers go to sleep */
    }
    return 0;
}

typedef struct { kiln_pool *p; int rc; } caller;
static void *second(void *arg) {
    caller *c = arg;
    c->rc = run(c->p, 3000, 7);
    return NULL;
}

int main(void) {
    int threads[] = {2, 3, 8};
    for (int t = 0; t < 3; t++) {
        kiln_pool *p = kiln_pool_create(threads[t]);
        if (!p || run(p, 6000, 1 + t)) return 1;
        caller c = {p, 0};
        pthread_t other;
        pthread_create(&other, NULL, second, &c);
        int rc = run(p, 3000, 99);
        pthread_join(other, NULL);
        if (rc || c.rc) return 1;
        kiln_pool_destroy(p);
    }
    puts("ok");
    return 0;
}
