/* kiln_model.c -- the C runtime of an exported kiln model (kiln/runtime/export.py).
 *
 * One copy of this file is compiled per exported model, next to the model's object
 * code (emitted by llvmlite from the same passes and codegen as the JIT). It is
 * generic: everything about the model comes from "kiln_model_meta.h", generated per
 * model, which defines KILN_NAME (the symbol prefix), includes the public header
 * NAME.h, and holds the tables below (tensor infos, parameter offsets in the
 * weights blob, the arena size as a polynomial in the batch size, the SHA-256 of
 * the weights).
 *
 * The generated entry is
 *     void NAME__kiln_main(char** inputs, char** outputs, char** params,
 *                          char* arena, int64_t* dims)
 * and this file wraps it in the documented API: create (weights embedded or read
 * from a file, size- and checksum-verified), run (argument checks, workspace
 * handling), queries and error messages. No global mutable state: everything a
 * handle needs is in the handle; error messages are per handle.
 *
 * Threads: each handle owns a thread pool (kiln/runtime/c/kiln_threads.c, compiled
 * next to this file with its symbols prefixed by NAME__), passed to the generated code
 * in dims[] after the symbol values, as the JIT does. Its size: the create argument,
 * else $KILN_NUM_THREADS, else the CPUs this process may run on.
 *
 * Needs only libc and pthreads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_model_meta.h"

#define KILN_CAT2(a, b) a##_##b
#define KILN_CAT(a, b) KILN_CAT2(a, b)
#define API(f) KILN_CAT(KILN_NAME, f)
#define EXPORT __attribute__((visibility("default")))
#define HIDDEN __attribute__((visibility("hidden")))
#define KILN_STR2(x) #x
#define KILN_STR(x) KILN_STR2(x)

/* the generated code (llvmlite object) */
HIDDEN extern void KILN_ENTRY(char** inputs, char** outputs, char** params, char* arena,
                              int64_t* dims);
#if KILN_WEIGHTS_EMBEDDED
HIDDEN extern const unsigned char KILN_WEIGHTS_SYMBOL[];
#endif
/* the thread pool (kiln_threads.c, its names prefixed) */
struct kiln_pool;
HIDDEN extern struct kiln_pool* KILN_POOL_CREATE(int nthreads);
HIDDEN extern void KILN_POOL_DESTROY(struct kiln_pool* p);
HIDDEN extern int KILN_POOL_THREADS(const struct kiln_pool* p);

#define ALIGN 64u
#define ERR_CAP 512

struct API(handle) {
    char* params[KILN_NUM_PARAMS > 0 ? KILN_NUM_PARAMS : 1];
    void* owned_weights;         /* weights read from a file (NULL: embedded) */
    struct kiln_pool* pool;      /* NULL: run serially */
    int ready;                   /* create succeeded */
    pthread_mutex_t err_lock;
    char err[ERR_CAP];
};

/* -- errors --------------------------------------------------------------------------- */

static kiln_status fail(API(handle) * h, kiln_status s, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kiln_status fail(API(handle) * h, kiln_status s, const char* fmt, ...) {
    if (!h) return s;
    char buf[ERR_CAP];
    int n = snprintf(buf, sizeof buf, "%s: ", KILN_STR(KILN_NAME));
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof buf) vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&h->err_lock);
    memcpy(h->err, buf, sizeof buf);
    pthread_mutex_unlock(&h->err_lock);
    return s;
}

EXPORT const char* API(status_string)(kiln_status s) {
    switch (s) {
    case KILN_OK: return "ok";
    case KILN_ERR_INVALID_ARGUMENT: return "invalid argument";
    case KILN_ERR_WORKSPACE: return "workspace too small";
    case KILN_ERR_OUT_OF_MEMORY: return "out of memory";
    case KILN_ERR_WEIGHTS: return "weights do not match this model";
    case KILN_ERR_IO: return "cannot read the weights file";
    }
    return "unknown status";
}

EXPORT const char* API(last_error)(const API(handle) * h) {
    if (!h) return KILN_STR(KILN_NAME) ": no handle (NULL; create failed before a handle existed, "
                                       "or out of memory)";
    return h->err;
}

/* -- queries -------------------------------------------------------------------------- */

EXPORT uint32_t API(abi_version)(void) { return KILN_MODEL_ABI_VERSION; }
EXPORT const char* API(kiln_version)(void) { return KILN_VERSION_STRING; }
EXPORT const char* API(name)(void) { return KILN_STR(KILN_NAME); }
EXPORT const char* API(target_cpu)(void) { return KILN_TARGET_CPU_STRING; }
EXPORT const char* API(weights_sha256)(void) { return kiln_weights_sha256_hex; }
EXPORT size_t API(weights_bytes)(void) { return (size_t)KILN_WEIGHTS_BYTES; }
EXPORT int API(weights_embedded)(void) { return KILN_WEIGHTS_EMBEDDED; }
EXPORT size_t API(num_inputs)(void) { return KILN_NUM_INPUTS; }
EXPORT size_t API(num_outputs)(void) { return KILN_NUM_OUTPUTS; }

EXPORT const kiln_tensor_info* API(input_info)(size_t i) {
    return i < KILN_NUM_INPUTS ? &kiln_input_infos[i] : NULL;
}

EXPORT const kiln_tensor_info* API(output_info)(size_t i) {
    return i < KILN_NUM_OUTPUTS ? &kiln_output_infos[i] : NULL;
}

static size_t itemsize(kiln_dtype d) {
    switch (d) {
    case KILN_F32: case KILN_I32: return 4;
    case KILN_F64: case KILN_I64: return 8;
    case KILN_BOOL: return 1;
    }
    return 0;
}

/* every byte count is checked against overflow and kept <= INT64_MAX (the generated
   code indexes with signed 64-bit integers) */
static int mul_ok(uint64_t a, uint64_t b, uint64_t* r) {
    return !__builtin_mul_overflow(a, b, r) && *r <= (uint64_t)INT64_MAX;
}

static int add_ok(uint64_t a, uint64_t b, uint64_t* r) {
    return !__builtin_add_overflow(a, b, r) && *r <= (uint64_t)INT64_MAX;
}

static int tensor_nbytes(const kiln_tensor_info* t, int64_t batch, uint64_t* out) {
    uint64_t n = itemsize(t->dtype);
    for (int32_t k = 0; k < t->ndim; k++) {
        uint64_t d = t->shape[k] < 0 ? (uint64_t)batch : (uint64_t)t->shape[k];
        if (!mul_ok(n, d, &n)) return 0;
    }
    *out = n;
    return 1;
}

/* the arena's bytes: sum_k coeff[k] * batch^k (the memory plan, kiln/passes/memory.py) */
static int arena_bytes(int64_t batch, uint64_t* out) {
    uint64_t total = 0, power = 1;
    for (int k = 0; k <= KILN_ARENA_DEGREE; k++) {
        uint64_t term;
        if (k > 0 && !mul_ok(power, (uint64_t)batch, &power)) return 0;
        if (!mul_ok(kiln_arena_coeffs[k], power, &term) || !add_ok(total, term, &total)) return 0;
    }
    *out = total;
    return 1;
}

static int batch_ok(int64_t batch) { return batch > 0 && (KILN_HAS_BATCH || batch == 1); }

static size_t nbytes_or_zero(const kiln_tensor_info* t, int64_t batch) {
    uint64_t n;
    return t && batch_ok(batch) && tensor_nbytes(t, batch, &n) && n <= SIZE_MAX ? (size_t)n : 0;
}

EXPORT size_t API(input_nbytes)(size_t i, int64_t batch) {
    return nbytes_or_zero(API(input_info)(i), batch);
}

EXPORT size_t API(output_nbytes)(size_t i, int64_t batch) {
    return nbytes_or_zero(API(output_info)(i), batch);
}

EXPORT size_t API(workspace_size)(int64_t batch) {
    uint64_t n;
    if (!batch_ok(batch) || !arena_bytes(batch, &n)) return 0;
    if (n == 0) return 0;
    if (n > SIZE_MAX - (ALIGN - 1)) return 0;
    return (size_t)n + (ALIGN - 1);   /* slack: any pointer can be aligned up inside it */
}

/* -- SHA-256 (FIPS 180-4), to verify a weights file ----------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t* h, const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha256(const unsigned char* data, size_t n, unsigned char out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t i = 0;
    for (; i + 64 <= n; i += 64) sha256_block(h, data + i);
    unsigned char tail[128] = {0};
    size_t r = n - i;
    memcpy(tail, data + i, r);
    tail[r] = 0x80;
    size_t tl = r + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int j = 0; j < 8; j++) tail[tl - 1 - j] = (unsigned char)(bits >> (8 * j));
    for (size_t j = 0; j < tl; j += 64) sha256_block(h, tail + j);
    for (int j = 0; j < 8; j++) {
        out[4 * j] = (unsigned char)(h[j] >> 24); out[4 * j + 1] = (unsigned char)(h[j] >> 16);
        out[4 * j + 2] = (unsigned char)(h[j] >> 8); out[4 * j + 3] = (unsigned char)h[j];
    }
}

/* -- create / destroy ----------------------------------------------------------------- */

static kiln_status load_weights(API(handle) * h, const char* path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail(h, KILN_ERR_IO, "cannot open weights file '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(h, KILN_ERR_IO, "weights file '%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size != (uint64_t)KILN_WEIGHTS_BYTES) {
        close(fd);
        return fail(h, KILN_ERR_WEIGHTS, "weights file '%s' has %lld bytes; this model needs "
                    "%llu (is it the weights of another model?)", path, (long long)st.st_size,
                    (unsigned long long)KILN_WEIGHTS_BYTES);
    }
    void* buf = NULL;
    if (posix_memalign(&buf, ALIGN, KILN_WEIGHTS_BYTES > 0 ? (size_t)KILN_WEIGHTS_BYTES : 1) != 0) {
        close(fd);
        return fail(h, KILN_ERR_OUT_OF_MEMORY, "cannot allocate %llu bytes for the weights",
                    (unsigned long long)KILN_WEIGHTS_BYTES);
    }
    size_t got = 0;
    while (got < (size_t)KILN_WEIGHTS_BYTES) {
        ssize_t r = read(fd, (char*)buf + got, (size_t)KILN_WEIGHTS_BYTES - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return fail(h, KILN_ERR_IO, "reading weights file '%s' failed after %zu bytes%s%s",
                        path, got, e ? ": " : " (file shrank)", e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    unsigned char digest[32];
    sha256((const unsigned char*)buf, (size_t)KILN_WEIGHTS_BYTES, digest);
    if (memcmp(digest, kiln_weights_sha256, 32) != 0) {
        free(buf);
        char hex[65];
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        return fail(h, KILN_ERR_WEIGHTS, "weights file '%s' is corrupt or belongs to another "
                    "model: its SHA-256 is %s, this model's weights have %s", path, hex,
                    kiln_weights_sha256_hex);
    }
    h->owned_weights = buf;
    return KILN_OK;
}

/* threads to use when create is given 0: $KILN_NUM_THREADS, else the CPUs we may run on */
static kiln_status default_threads(API(handle) * h, int32_t* n) {
    const char* env = getenv("KILN_NUM_THREADS");
    if (env && *env) {
        char* end;
        errno = 0;
        long v = strtol(env, &end, 10);
        if (*end || errno || v < 1 || v > 4096)
            return fail(h, KILN_ERR_INVALID_ARGUMENT, "KILN_NUM_THREADS must be a positive "
                        "integer, got '%s'", env);
        *n = (int32_t)v;
        return KILN_OK;
    }
    cpu_set_t set;
    long c = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                         : sysconf(_SC_NPROCESSORS_ONLN);
    *n = c > 0 ? (int32_t)c : 1;
    return KILN_OK;
}

EXPORT kiln_status API(create)(const char* weights_path, API(handle) * *out) {
    return API(create_with_threads)(weights_path, 0, out);
}

EXPORT int32_t API(num_threads)(const API(handle) * h) {
    return h && h->pool ? (int32_t)KILN_POOL_THREADS(h->pool) : 1;
}

EXPORT kiln_status API(create_with_threads)(const char* weights_path, int32_t num_threads,
                                            API(handle) * *out) {
    if (!out) return KILN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    API(handle)* h = (API(handle)*)calloc(1, sizeof *h);
    if (!h) return KILN_ERR_OUT_OF_MEMORY;
    if (pthread_mutex_init(&h->err_lock, NULL) != 0) {
        free(h);
        return KILN_ERR_OUT_OF_MEMORY;
    }
    *out = h;   /* even on failure below, so NAME_last_error(*out) can say why */
    const unsigned char* base;
    if (weights_path) {
        kiln_status s = load_weights(h, weights_path);
        if (s != KILN_OK) return s;
        base = (const unsigned char*)h->owned_weights;
    } else {
#if KILN_WEIGHTS_EMBEDDED
        base = KILN_WEIGHTS_SYMBOL;
#else
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "this library was exported with its weights in "
                    "a separate file: pass the path of %s.weights (SHA-256 %s)",
                    KILN_STR(KILN_NAME), kiln_weights_sha256_hex);
#endif
    }
    for (size_t j = 0; j < KILN_NUM_PARAMS; j++)
        h->params[j] = (char*)(uintptr_t)(base + kiln_param_offsets[j]);
    if (num_threads < 0)
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "num_threads must be >= 0 (0: the default), "
                    "got %d", (int)num_threads);
    if (num_threads == 0) {
        kiln_status s = default_threads(h, &num_threads);
        if (s != KILN_OK) return s;
    }
    if (num_threads > 1 && !(h->pool = KILN_POOL_CREATE(num_threads)))
        return fail(h, KILN_ERR_OUT_OF_MEMORY, "cannot create a pool of %d threads",
                    (int)num_threads);
    h->ready = 1;
    return KILN_OK;
}

EXPORT void API(destroy)(API(handle) * h) {
    if (!h) return;
    if (h->pool) KILN_POOL_DESTROY(h->pool);
    free(h->owned_weights);
    pthread_mutex_destroy(&h->err_lock);
    free(h);
}

/* -- run ------------------------------------------------------------------------------ */

static kiln_status check_buffers(API(handle) * h, const char* what, const void* const* ptrs,
                                 size_t count, const kiln_tensor_info* infos, int64_t batch) {
    if (count == 0) return KILN_OK;
    if (!ptrs)
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "%s is NULL; pass an array of %zu pointer(s)",
                    what, count);
    for (size_t i = 0; i < count; i++) {
        uint64_t n;
        if (!ptrs[i])
            return fail(h, KILN_ERR_INVALID_ARGUMENT, "%s[%zu] ('%s') is NULL", what, i,
                        infos[i].name);
        if ((uintptr_t)ptrs[i] % itemsize(infos[i].dtype))
            return fail(h, KILN_ERR_INVALID_ARGUMENT, "%s[%zu] ('%s') is not aligned to its "
                        "element size (%zu bytes)", what, i, infos[i].name, itemsize(infos[i].dtype));
        if (!tensor_nbytes(&infos[i], batch, &n) || n > SIZE_MAX)
            return fail(h, KILN_ERR_INVALID_ARGUMENT, "batch %" PRId64 " is too large: %s[%zu] "
                        "('%s') would not fit in memory", batch, what, i, infos[i].name);
    }
    return KILN_OK;
}

EXPORT kiln_status API(run)(API(handle) * h, int64_t batch, const void* const* inputs,
                            void* const* outputs, void* workspace, size_t workspace_bytes) {
    if (!h) return KILN_ERR_INVALID_ARGUMENT;
    if (!h->ready)
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "this handle's create failed; destroy it");
    if (batch <= 0)
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "batch must be >= 1, got %" PRId64, batch);
    if (!KILN_HAS_BATCH && batch != 1)
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "this model has static shapes (no batch "
                    "dimension): batch must be 1, got %" PRId64, batch);
    kiln_status s = check_buffers(h, "inputs", inputs, KILN_NUM_INPUTS, kiln_input_infos, batch);
    if (s != KILN_OK) return s;
    s = check_buffers(h, "outputs", (const void* const*)outputs, KILN_NUM_OUTPUTS,
                      kiln_output_infos, batch);
    if (s != KILN_OK) return s;
    uint64_t need;
    if (!arena_bytes(batch, &need) || need > SIZE_MAX - ALIGN)
        return fail(h, KILN_ERR_INVALID_ARGUMENT, "batch %" PRId64 " is too large: its "
                    "workspace size overflows", batch);
    void* owned = NULL;
    char* arena = NULL;
    if (need > 0 && workspace) {
        uintptr_t p = (uintptr_t)workspace, a = (p + (ALIGN - 1)) & ~(uintptr_t)(ALIGN - 1);
        if (workspace_bytes < a - p || workspace_bytes - (a - p) < need)
            return fail(h, KILN_ERR_WORKSPACE, "workspace of %zu bytes is too small for batch "
                        "%" PRId64 ": it needs %llu bytes from a %u-byte aligned address (%s_workspace_size(%" PRId64 ") = %zu)",
                        workspace_bytes, batch, (unsigned long long)need, ALIGN,
                        KILN_STR(KILN_NAME), batch, API(workspace_size)(batch));
        arena = (char*)a;
    } else if (need > 0) {
        if (posix_memalign(&owned, ALIGN, (size_t)need) != 0)
            return fail(h, KILN_ERR_OUT_OF_MEMORY, "cannot allocate a workspace of %llu bytes "
                        "for batch %" PRId64, (unsigned long long)need, batch);
        arena = (char*)owned;
    }
    /* the symbol values (the batch size, if the model has one), then the pool */
    int64_t dims[2] = {batch, 0};
    dims[KILN_HAS_BATCH] = (int64_t)(uintptr_t)h->pool;
    KILN_ENTRY((char**)(uintptr_t)inputs, (char**)(uintptr_t)outputs, h->params, arena, dims);
    free(owned);
    return KILN_OK;
}
