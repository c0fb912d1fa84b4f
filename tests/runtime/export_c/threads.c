/* Threads running an exported model at once must each get exactly the expected outputs.
 * Four threads, two handles, two input sets (A and B):
 *   t0: handle 0, set A, own workspace      t1: handle 1, set B, own workspace
 *   t2: handle 0, set B, own workspace      t3: handle 1, set A, NULL workspace
 * so two threads share each handle (the documented guarantee: one workspace per call).
 * usage: threads BATCH IN_A OUT_A IN_B OUT_B ITERATIONS   (outputs: the expected bytes)
 * Build: cc -DMODEL=NAME -DMODEL_H='"NAME.h"' threads.c -I OUTDIR -L OUTDIR -lNAME -lpthread */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include MODEL_H

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define F(f) CAT(MODEL, f)

typedef struct { char* data; size_t size; } blob;
typedef struct { F(handle) * h; const blob* in; const blob* want; int use_ws; int iters; int bad; } job;
static int64_t batch;

static blob slurp(const char* path) {
    blob b = {0, 0};
    FILE* f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    b.size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc(b.size + 1);
    if (fread(b.data, 1, b.size, f) != b.size) { perror(path); exit(2); }
    fclose(f);
    return b;
}

static void* work(void* arg) {
    job* j = arg;
    size_t ni = F(num_inputs)(), no = F(num_outputs)(), off = 0;
    const void* inputs[8];
    void* outputs[8];
    for (size_t i = 0; i < ni; i++) {   /* own, aligned copies */
        size_t nb = F(input_nbytes)(i, batch);
        void* p = malloc(nb);
        memcpy(p, j->in->data + off, nb);
        inputs[i] = p;
        off += nb;
    }
    for (size_t k = 0; k < no; k++) outputs[k] = malloc(F(output_nbytes)(k, batch));
    size_t ws_bytes = j->use_ws ? F(workspace_size)(batch) : 0;
    void* ws = ws_bytes ? malloc(ws_bytes) : NULL;
    for (int it = 0; it < j->iters; it++) {
        for (size_t k = 0; k < no; k++) memset(outputs[k], 0xff, F(output_nbytes)(k, batch));
        if (F(run)(j->h, batch, inputs, outputs, ws, ws_bytes) != KILN_OK) { j->bad++; continue; }
        size_t o = 0;
        for (size_t k = 0; k < no; k++) {
            size_t nb = F(output_nbytes)(k, batch);
            if (memcmp(outputs[k], j->want->data + o, nb) != 0) j->bad++;
            o += nb;
        }
    }
    for (size_t i = 0; i < ni; i++) free((void*)inputs[i]);
    for (size_t k = 0; k < no; k++) free(outputs[k]);
    free(ws);
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 7) { fprintf(stderr, "usage: threads BATCH IN_A OUT_A IN_B OUT_B ITERS\n"); return 2; }
    batch = atoll(argv[1]);
    blob ia = slurp(argv[2]), oa = slurp(argv[3]), ib = slurp(argv[4]), ob = slurp(argv[5]);
    int iters = atoi(argv[6]);
    F(handle) * h[2];
    for (int k = 0; k < 2; k++)
        if (F(create)(NULL, &h[k]) != KILN_OK) { fprintf(stderr, "%s\n", F(last_error)(h[k])); return 1; }
    job jobs[4] = {{h[0], &ia, &oa, 1, iters, 0}, {h[1], &ib, &ob, 1, iters, 0},
                   {h[0], &ib, &ob, 1, iters, 0}, {h[1], &ia, &oa, 0, iters, 0}};
    pthread_t t[4];
    for (int k = 0; k < 4; k++) pthread_create(&t[k], NULL, work, &jobs[k]);
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        pthread_join(t[k], NULL);
        printf("thread %d: %d of %d runs wrong\n", k, jobs[k].bad, iters);
        bad += jobs[k].bad;
    }
    F(destroy)(h[0]);
    F(destroy)(h[1]);
    return bad ? 1 : 0;
}
