/* Two exported models linked into one program: distinct prefixes, no clashes.
 * Build: cc two_models.c -I A_DIR -I B_DIR -L A_DIR -L B_DIR -lmlp -ltwo_io */
#include <stdio.h>
#include "mlp.h"
#include "two_io.h"

int main(void) {
    mlp_handle* a = NULL;
    two_io_handle* b = NULL;
    if (mlp_create(NULL, &a) != KILN_OK || two_io_create(NULL, &b) != KILN_OK) return 1;
    printf("%s %zu %zu %s\n", mlp_name(), mlp_num_inputs(), mlp_num_outputs(), MLP_WEIGHTS_SHA256);
    printf("%s %zu %zu %s\n", two_io_name(), two_io_num_inputs(), two_io_num_outputs(),
           TWO_IO_WEIGHTS_SHA256);
    mlp_destroy(a);
    two_io_destroy(b);
    return 0;
}
