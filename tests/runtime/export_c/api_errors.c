/* Bad arguments to an exported model's C API: every case prints one line
 * "CASE STATUS MESSAGE" for the Python test to check; nothing may crash.
 * Build: cc -DMODEL=NAME -DMODEL_H='"NAME.h"' api_errors.c -I OUTDIR -L OUTDIR -lNAME */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include MODEL_H

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define F(f) CAT(MODEL, f)

static F(handle) * H;

static void report(const char* what, kiln_status s) {
    printf("%s %d %s\n", what, (int)s, s == KILN_OK ? "" : F(last_error)(H));
}

int main(void) {
    /* create */
    printf("create_out_null %d -\n", (int)F(create)(NULL, NULL));
    kiln_status s = F(create)("/nonexistent/dir/x.weights", &H);
    report("create_missing_file", s);
    F(destroy)(H);
    H = NULL;
    s = F(create_with_threads)(NULL, -1, &H);
    report("create_negative_threads", s);
    F(destroy)(H);
    H = NULL;
    s = F(create_with_threads)(NULL, 1, &H);
    printf("threads_one %d -\n", F(num_threads)(H));
    F(destroy)(H);
    s = F(create_with_threads)(NULL, 3, &H);
    printf("threads_three %d -\n", F(num_threads)(H));
    F(destroy)(H);
    H = NULL;
    s = F(create)(NULL, &H);
    report("create_ok", s);
    if (s != KILN_OK) return 1;

    int64_t batch = 3;
    size_t ni = F(num_inputs)(), no = F(num_outputs)();
    void* in_bufs[8];
    const void* inputs[8];
    void* outputs[8];
    for (size_t i = 0; i < ni; i++) inputs[i] = in_bufs[i] = calloc(1, F(input_nbytes)(i, batch) + 8);
    for (size_t j = 0; j < no; j++) outputs[j] = calloc(1, F(output_nbytes)(j, batch) + 8);
    size_t ws_bytes = F(workspace_size)(batch);
    char* ws = malloc(ws_bytes + 64);

    /* run: bad arguments */
    printf("run_null_handle %d %s\n", (int)F(run)(NULL, batch, inputs, outputs, ws, ws_bytes),
           F(last_error)(NULL));
    report("run_batch_zero", F(run)(H, 0, inputs, outputs, ws, ws_bytes));
    report("run_batch_negative", F(run)(H, -5, inputs, outputs, ws, ws_bytes));
    report("run_inputs_null", F(run)(H, batch, NULL, outputs, ws, ws_bytes));
    report("run_outputs_null", F(run)(H, batch, inputs, NULL, ws, ws_bytes));
    const void* saved = inputs[ni - 1];
    inputs[ni - 1] = NULL;
    report("run_input_elem_null", F(run)(H, batch, inputs, outputs, ws, ws_bytes));
    inputs[ni - 1] = (const char*)saved + 1;   /* misaligned for a 4-byte dtype */
    report("run_input_misaligned", F(run)(H, batch, inputs, outputs, ws, ws_bytes));
    inputs[ni - 1] = saved;
    void* saved_out = outputs[0];
    outputs[0] = NULL;
    report("run_output_elem_null", F(run)(H, batch, inputs, outputs, ws, ws_bytes));
    outputs[0] = saved_out;
    report("run_workspace_small", F(run)(H, batch, inputs, outputs, ws, 10));
    report("run_workspace_off_by_one", F(run)(H, batch, inputs, outputs, ws + 1, ws_bytes - 64));
    report("run_batch_huge", F(run)(H, INT64_MAX / 2, inputs, outputs, ws, ws_bytes));

    /* run: good arguments */
    report("run_ok", F(run)(H, batch, inputs, outputs, ws, ws_bytes));
    report("run_ok_unaligned_workspace", F(run)(H, batch, inputs, outputs, ws + 1, ws_bytes));
    report("run_ok_null_workspace", F(run)(H, batch, inputs, outputs, NULL, 0));

    /* queries */
    printf("query_input_info_out_of_range %d -\n", F(input_info)(ni) == NULL);
    printf("query_output_info_out_of_range %d -\n", F(output_info)(no) == NULL);
    printf("query_input_nbytes_bad %d -\n", (int)(F(input_nbytes)(0, 0) + F(input_nbytes)(ni, 1)));
    printf("query_workspace_bad_batch %zu -\n", F(workspace_size)(-1));
    printf("query_workspace_overflow %zu -\n", F(workspace_size)(INT64_MAX));
    printf("query_status_string_unknown 0 %s\n", F(status_string)((kiln_status)99));
    for (size_t i = 0; i < ni; i++) {
        const kiln_tensor_info* t = F(input_info)(i);
        printf("info_input %s %d %d", t->name, (int)t->dtype, (int)t->ndim);
        for (int k = 0; k < t->ndim; k++) printf(" %lld", (long long)t->shape[k]);
        printf("\n");
    }
    for (size_t j = 0; j < no; j++) {
        const kiln_tensor_info* t = F(output_info)(j);
        printf("info_output %s %d %d", t->name, (int)t->dtype, (int)t->ndim);
        for (int k = 0; k < t->ndim; k++) printf(" %lld", (long long)t->shape[k]);
        printf("\n");
    }
    printf("meta %s %s %s %u %zu %d\n", F(name)(), F(kiln_version)(), F(weights_sha256)(),
           F(abi_version)(), F(weights_bytes)(), F(weights_embedded)());

    for (size_t i = 0; i < ni; i++) free(in_bufs[i]);
    for (size_t j = 0; j < no; j++) free(outputs[j]);
    free(ws);
    F(destroy)(H);
    F(destroy)(NULL);
    return 0;
}
