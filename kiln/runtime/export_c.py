"""The C sources of an exported model: its public header, the generated metadata the
runtime shim (kiln/runtime/c/kiln_model.c) is compiled with, the assembly that
embeds the weights, and the example ``main.c``.

Everything here is text generated from one ``ModelABI`` record, so the header, the
shim's tables and the JSON sidecar can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.types import BATCH, DType, is_symbol

ABI_VERSION = 1
C_DTYPE = {DType.f32: "KILN_F32", DType.f64: "KILN_F64", DType.i32: "KILN_I32",
           DType.i64: "KILN_I64", DType.bool: "KILN_BOOL"}
C_TYPE = {DType.f32: "float", DType.f64: "double", DType.i32: "int32_t",
          DType.i64: "int64_t", DType.bool: "uint8_t"}


@dataclass
class Tensor:
    name: str
    dtype: DType
    shape: tuple            # ints, -1 for the batch dimension

    @staticmethod
    def of(name, type_) -> "Tensor":
        return Tensor(name, type_.dtype, tuple(-1 if is_symbol(d) else d for d in type_.shape))

    def json(self) -> dict:
        return {"name": self.name, "dtype": str(self.dtype), "shape": list(self.shape)}


@dataclass
class Param:
    name: str
    dtype: DType
    shape: tuple
    offset: int             # byte offset in the weights blob (64-aligned)
    nbytes: int


@dataclass
class ModelABI:
    name: str               # the C symbol prefix
    kiln_version: str
    target_cpu: str         # as asked ("host", "generic", ...)
    llvm_cpu: str           # what LLVM compiled for ("znver4", "x86-64", ...)
    inputs: list
    outputs: list
    params: list
    weights_bytes: int
    weights_sha256: str     # hex
    embedded: bool
    arena_coeffs: list      # arena bytes = sum(c * batch**k for k, c in enumerate(...))
    has_batch: bool
    source_graph: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def upper(self) -> str:
        return self.name.upper()

    @property
    def entry(self) -> str:
        return f"{self.name}__kiln_main"

    @property
    def weights_symbol(self) -> str:
        return f"{self.name}__kiln_weights"

    def runtime_symbol(self, base: str) -> str:
        """The prefixed name of a symbol of the thread pool (kiln_threads.c), so that
        several models' static archives link into one program."""
        return f"{self.name}__{base}"

    def workspace_expr(self, var: str = "batch") -> str:
        """The C expression of NAME_workspace_size (arena bytes + alignment slack)."""
        if not any(self.arena_coeffs):
            return "((size_t)0)"
        terms = []
        for k, c in enumerate(self.arena_coeffs):
            if c:
                terms.append("*".join([f"(size_t){c}"] + [f"(size_t)({var})"] * k))
        return "(" + " + ".join(terms) + " + (size_t)63)"

    def json(self) -> dict:
        return {"name": self.name, "abi_version": ABI_VERSION, "kiln_version": self.kiln_version,
                "target_cpu": self.target_cpu, "llvm_cpu": self.llvm_cpu,
                "inputs": [t.json() for t in self.inputs],
                "outputs": [t.json() for t in self.outputs],
                "weights": {"embedded": self.embedded, "bytes": self.weights_bytes,
                            "sha256": self.weights_sha256,
                            "params": [{"name": p.name, "dtype": str(p.dtype), "shape": list(p.shape),
                                        "offset": p.offset, "nbytes": p.nbytes} for p in self.params]},
                "workspace_bytes": {"coefficients_by_batch_power": list(self.arena_coeffs),
                                    "alignment": 64, "slack": 63 if any(self.arena_coeffs) else 0},
                "has_batch_dimension": self.has_batch, **self.extra}


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape(t: Tensor) -> str:
    return "[" + ", ".join("batch" if d < 0 else str(d) for d in t.shape) + "]"


# -- the public header ---------------------------------------------------------------------

_COMMON = """\
/* Types shared by every kiln-exported model (identical in each header, defined once). */
#ifndef KILN_MODEL_ABI_1
#define KILN_MODEL_ABI_1
#define KILN_MODEL_ABI_VERSION 1u

typedef enum {
  KILN_OK = 0,
  KILN_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, batch <= 0, misaligned buffer, failed handle */
  KILN_ERR_WORKSPACE = 2,        /* workspace smaller than NAME_workspace_size(batch) */
  KILN_ERR_OUT_OF_MEMORY = 3,
  KILN_ERR_WEIGHTS = 4,          /* weights file of the wrong size or SHA-256; no weights given */
  KILN_ERR_IO = 5                /* weights file cannot be opened or read */
} kiln_status;

typedef enum { KILN_F32 = 0, KILN_F64 = 1, KILN_I32 = 2, KILN_I64 = 3, KILN_BOOL = 4 } kiln_dtype;

typedef struct {
  const char* name;
  kiln_dtype dtype;
  int32_t ndim;
  const int64_t* shape;          /* ndim entries; -1 is the batch dimension */
} kiln_tensor_info;
#endif /* KILN_MODEL_ABI_1 */
"""


def public_header(m: ModelABI) -> str:
    n, N = m.name, m.upper
    ios = "\n".join(
        [f" *   input  {i}: {t.name:<20} {t.dtype}{_shape(t)}" for i, t in enumerate(m.inputs)]
        + [f" *   output {i}: {t.name:<20} {t.dtype}{_shape(t)}" for i, t in enumerate(m.outputs)])
    weights = ("embedded in the library (create with NULL)" if m.embedded else
               f"in {n}.weights, next to the library (create with its path)")
    return f"""\
/* {n}.h -- C API of the model '{n}', exported by kiln {m.kiln_version}; ABI version {ABI_VERSION}.
 *
 * Generated; do not edit. Link with lib{n}.so (or lib{n}.a -lm -lpthread). The library
 * needs only libc, libm and pthreads: no Python, numpy or LLVM at run time.
 *
 * Tensors (C-contiguous, row-major; "batch" is the batch size given to {n}_run):
{ios}
 * Weights: {m.weights_bytes} bytes, {weights}; SHA-256 {m.weights_sha256}.
 * Code compiled for CPU: {m.target_cpu} (LLVM cpu "{m.llvm_cpu}").
 *
 * Typical use (see main.c):
 *     {n}_handle* h;
 *     if ({n}_create(NULL, &h) != KILN_OK) {{ fprintf(stderr, "%s\\n", {n}_last_error(h)); {n}_destroy(h); }}
 *     size_t ws = {n}_workspace_size(batch);  void* w = malloc(ws);      (once, reused)
 *     const void* in[] = {{x}};  void* out[] = {{y}};
 *     kiln_status s = {n}_run(h, batch, in, out, w, ws);   (no allocation, no locking)
 *     {n}_destroy(h);
 *
 * Thread safety: a handle does not change after create (but for its error message).
 * Calls of {n}_run on one handle may run concurrently if each call has its own workspace
 * (or passes NULL); each handle has its own thread pool, which one call uses at a time
 * (a concurrent call on the same handle runs on its calling thread alone). Handles share
 * nothing; there is no global mutable state, so several models (each with its own
 * prefix) link into one program.
 */
#ifndef KILN_{n}_H
#define KILN_{n}_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {{
#endif

{_COMMON}
#define {N}_KILN_VERSION {_c_string(m.kiln_version)}
#define {N}_MODEL_NAME {_c_string(n)}
#define {N}_TARGET_CPU {_c_string(m.target_cpu)}
#define {N}_WEIGHTS_SHA256 {_c_string(m.weights_sha256)}
#define {N}_WEIGHTS_BYTES {m.weights_bytes}ull
#define {N}_WEIGHTS_EMBEDDED {int(m.embedded)}
#define {N}_NUM_INPUTS {len(m.inputs)}
#define {N}_NUM_OUTPUTS {len(m.outputs)}
#define {N}_HAS_BATCH_DIM {int(m.has_batch)}   /* 0: static shapes, batch must be 1 */
#define {N}_ALIGNMENT 64
/* = {n}_workspace_size(batch) for a valid batch (no overflow check) */
#define {N}_WORKSPACE_SIZE(batch) {m.workspace_expr()}

typedef struct {n}_handle {n}_handle;   /* opaque */

/* -- creating and running ---------------------------------------------------------------- */

/* Make a handle (with the default number of threads: see {n}_create_with_threads).
 * weights_path NULL: the embedded weights ({"present" if m.embedded else "absent: pass the file"}).
 * Otherwise the weights are read from that file, which must have exactly
 * {N}_WEIGHTS_BYTES bytes and SHA-256 {N}_WEIGHTS_SHA256 (else KILN_ERR_WEIGHTS).
 * Returns KILN_OK and sets *out. On failure *out is still set (unless out is NULL or
 * the handle itself could not be allocated) so {n}_last_error(*out) can tell why;
 * release it with {n}_destroy. */
kiln_status {n}_create(const char* weights_path, {n}_handle** out);

/* The same, with a thread count for this handle's own thread pool: 1 runs on the calling
 * thread only; 0 is the default: $KILN_NUM_THREADS if set, else the CPUs this process may
 * run on. Kernels split large loops across the pool; results do not depend on the count. */
kiln_status {n}_create_with_threads(const char* weights_path, int32_t num_threads,
                                    {n}_handle** out);

/* Threads of h's pool, the calling thread included (1: serial). */
int32_t {n}_num_threads(const {n}_handle* h);

/* Release a handle and what it owns. NULL is allowed. */
void {n}_destroy({n}_handle* h);

/* Run the model on `batch` samples (batch >= 1).
 * inputs[i] / outputs[j]: {N}_NUM_INPUTS / {N}_NUM_OUTPUTS pointers to C-contiguous buffers of
 *   {n}_input_nbytes(i, batch) / {n}_output_nbytes(j, batch) bytes, aligned to their element
 *   size; outputs must not overlap inputs or each other.
 * workspace: scratch memory for intermediates, at least {n}_workspace_size(batch) bytes (any
 *   alignment; the library aligns inside it), reused across calls: then run allocates
 *   nothing. NULL: the library allocates (and frees) a workspace in this call.
 *   Concurrent calls on one handle need distinct workspaces.
 * Returns KILN_OK, or an error code with a message in {n}_last_error(h); outputs are
 * unspecified after an error. Never aborts on bad arguments. */
kiln_status {n}_run({n}_handle* h, int64_t batch, const void* const* inputs,
                    void* const* outputs, void* workspace, size_t workspace_bytes);

/* The message of the most recent failed call on h ("" if none; a failing call replaces it,
 * a successful one leaves it). Valid until h is destroyed; if calls on h run concurrently,
 * which failure it describes is unspecified. h may be NULL (a fixed message). */
const char* {n}_last_error(const {n}_handle* h);

/* A short fixed description of a status code. */
const char* {n}_status_string(kiln_status s);

/* -- queries (no handle needed; constant for the library's lifetime) -------------------- */

/* Bytes of workspace run needs at this batch size (the memory plan's arena, plus 63 bytes so
 * that any pointer can be aligned to 64): {m.workspace_expr()}.
 * 0 if the model needs none, or if batch is invalid or the size overflows. */
size_t {n}_workspace_size(int64_t batch);

size_t {n}_num_inputs(void);
size_t {n}_num_outputs(void);
/* name, dtype and shape (-1 for the batch dimension); NULL if i is out of range */
const kiln_tensor_info* {n}_input_info(size_t i);
const kiln_tensor_info* {n}_output_info(size_t i);
/* bytes of input i / output i at this batch size; 0 if i or batch is invalid */
size_t {n}_input_nbytes(size_t i, int64_t batch);
size_t {n}_output_nbytes(size_t i, int64_t batch);

uint32_t    {n}_abi_version(void);      /* KILN_MODEL_ABI_VERSION */
const char* {n}_kiln_version(void);     /* {N}_KILN_VERSION */
const char* {n}_name(void);             /* {N}_MODEL_NAME */
const char* {n}_target_cpu(void);       /* {N}_TARGET_CPU */
const char* {n}_weights_sha256(void);   /* {N}_WEIGHTS_SHA256 (lowercase hex) */
size_t      {n}_weights_bytes(void);    /* {N}_WEIGHTS_BYTES */
int         {n}_weights_embedded(void); /* {N}_WEIGHTS_EMBEDDED */

#ifdef __cplusplus
}}
#endif
#endif /* KILN_{n}_H */
"""


# -- the shim's per-model tables -----------------------------------------------------------

def meta_header(m: ModelABI) -> str:
    lines = [f"/* generated by kiln {m.kiln_version} for model '{m.name}': tables for kiln_model.c */",
             f'#include "{m.name}.h"',
             f"#define KILN_NAME {m.name}",
             f"#define KILN_ENTRY {m.entry}",
             f"#define KILN_WEIGHTS_SYMBOL {m.weights_symbol}",
             f"#define KILN_POOL_CREATE {m.runtime_symbol('kiln_pool_create')}",
             f"#define KILN_POOL_DESTROY {m.runtime_symbol('kiln_pool_destroy')}",
             f"#define KILN_POOL_THREADS {m.runtime_symbol('kiln_pool_threads')}",
             f"#define KILN_WEIGHTS_EMBEDDED {int(m.embedded)}",
             f"#define KILN_WEIGHTS_BYTES {m.weights_bytes}ull",
             f"#define KILN_NUM_INPUTS {len(m.inputs)}u",
             f"#define KILN_NUM_OUTPUTS {len(m.outputs)}u",
             f"#define KILN_NUM_PARAMS {len(m.params)}u",
             f"#define KILN_HAS_BATCH {int(m.has_batch)}",
             f"#define KILN_ARENA_DEGREE {len(m.arena_coeffs) - 1}",
             f"#define KILN_VERSION_STRING {_c_string(m.kiln_version)}",
             f"#define KILN_TARGET_CPU_STRING {_c_string(m.target_cpu)}",
             "static const uint64_t kiln_arena_coeffs[] = {"
             + ", ".join(f"{c}ull" for c in m.arena_coeffs) + "};",
             "static const uint64_t kiln_param_offsets[] = {"
             + (", ".join(f"{p.offset}ull" for p in m.params) or "0") + "};",
             "static const unsigned char kiln_weights_sha256[32] = {"
             + ", ".join(f"0x{m.weights_sha256[i:i + 2]}" for i in range(0, 64, 2)) + "};",
             f"static const char kiln_weights_sha256_hex[] = {_c_string(m.weights_sha256)};"]
    for kind, ts in (("input", m.inputs), ("output", m.outputs)):
        for i, t in enumerate(ts):
            lines.append(f"static const int64_t kiln_{kind}{i}_shape[] = {{"
                         + (", ".join(str(d) for d in t.shape) or "0") + "};")
        infos = [f"{{{_c_string(t.name)}, {C_DTYPE[t.dtype]}, {len(t.shape)}, kiln_{kind}{i}_shape}}"
                 for i, t in enumerate(ts)] or ["{0, KILN_F32, 0, 0}"]
        lines.append(f"static const kiln_tensor_info kiln_{kind}_infos[] = {{\n    "
                     + ",\n    ".join(infos) + "};")
    return "\n".join(lines) + "\n"


def weights_asm(m: ModelABI, blob_path: str) -> str:
    """Assembly embedding the weights blob as a hidden, 64-byte aligned read-only symbol
    (``.incbin``: no size limit, no compile time spent on a giant initializer)."""
    s = m.weights_symbol
    return f"""\
/* the weights of '{m.name}' ({m.weights_bytes} bytes, SHA-256 {m.weights_sha256}) */
    .section .rodata.{s},"a",@progbits
    .balign 64
    .globl {s}
    .hidden {s}
    .type {s}, @object
{s}:
    .incbin "{blob_path}"
    .size {s}, . - {s}
    .section .note.GNU-stack,"",@progbits
"""


# -- the example program -------------------------------------------------------------------

def example_main(m: ModelABI, template: str) -> str:
    n = m.name
    build = f"cc -O2 -o {n}_main main.c -I. -L. -l{n}"
    weights_arg = "" if m.embedded else f" {n}.weights"
    text = (template.replace("@NAME@", n).replace("@UPPER@", m.upper)
            .replace("@BUILD@", build).replace("@WEIGHTS_ARG@", weights_arg)
            .replace("@KILN_VERSION@", m.kiln_version))
    tensors = "\n".join(f" *   input  {t.name}: {t.dtype}{_shape(t)}" for t in m.inputs)
    tensors += "\n" + "\n".join(f" *   output {t.name}: {t.dtype}{_shape(t)}" for t in m.outputs)
    return text.replace("@TENSORS@", tensors)
