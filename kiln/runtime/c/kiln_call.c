/* kiln's call path: a CPython extension type that makes an Executable's call.
 *
 * A compiled model's entry point is one C function,
 *     entry(void **inputs, void **outputs, void **params, void *arena, int64_t *dims),
 * and the Python around it (checking the inputs, allocating the outputs, filling the
 * pointer tables, taking the executable's lock, and ctypes' own conversions) cost
 * ~4.4 us per call: a fifth of the bench MLP's latency at batch 1. An Entry does the
 * common case -- the inputs are contiguous arrays of the dtypes and shapes of the call
 * it was last set up for -- in C, and answers NotImplemented for anything else, which
 * the Executable then handles in Python (conversions, errors, a new batch size) and
 * runs through ``Entry.run``, which sets the Entry up for those shapes.
 *
 * Concurrency. The inputs are checked against the set-up shapes with the GIL held.
 * The kernel runs with the GIL released (other Python threads go on: data pipelines,
 * servers) and a mutex held, since the dims table and the arena are shared by every
 * call of the executable. ``run`` changes the set-up shapes with the GIL held and
 * bumps `gen`; it writes the dims and the arena under the mutex and records which
 * set-up they belong to (`applied`). A call that was checked against one set-up runs
 * only if the dims and arena under the mutex are still that set-up's; else it
 * answers NotImplemented and the Python side goes through ``run``. The arena array is
 * referenced by the Entry and released only after the mutex is dropped, so a kernel
 * never runs over freed memory. ``set_fn`` (the switch to the optimized tier) waits
 * for the kernel in flight.
 *
 * Build: cc -O2 -shared -fPIC -pthread -I<Python.h dir> -I<numpy include> kiln_call.c
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

typedef void (*entry_fn)(void **inputs, void **outputs, void **params, void *arena, int64_t *dims);

#define SMALL 32 /* pointer tables up to this many entries (inputs and outputs) live on the C stack */

typedef struct {
    PyObject_HEAD
    entry_fn fn;
    void **params;
    int64_t *dims;
    PyObject *keep;         /* what owns `params` and `dims` */
    int n_in, n_out, n_sym;
    PyArray_Descr **in_dt, **out_dt;
    int *in_nd, *out_nd;    /* ranks */
    npy_intp *in_shape, *out_shape; /* the set-up shapes, ranks concatenated */
    int set_up;
    int mu_ready;
    uint64_t gen;           /* the set-up's generation (GIL) */
    uint64_t applied;       /* whose dims and arena are written (mutex) */
    PyObject *arena_obj;    /* the arena array in use (mutex) */
    void *arena;
    pthread_mutex_t mu;
} Entry;

static void Entry_dealloc(Entry *self) {
    for (int i = 0; self->in_dt && i < self->n_in; i++) Py_XDECREF(self->in_dt[i]);
    for (int i = 0; self->out_dt && i < self->n_out; i++) Py_XDECREF(self->out_dt[i]);
    PyMem_Free(self->in_dt);
    PyMem_Free(self->out_dt);
    PyMem_Free(self->in_nd);
    PyMem_Free(self->out_nd);
    PyMem_Free(self->in_shape);
    PyMem_Free(self->out_shape);
    Py_XDECREF(self->arena_obj);
    Py_XDECREF(self->keep);
    if (self->mu_ready) pthread_mutex_destroy(&self->mu);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int total_rank(const int *nd, int n) {
    int r = 0;
    for (int i = 0; i < n; i++) r += nd[i];
    return r;
}

/* dtypes and ranks of one side: `dts` a sequence of numpy dtypes, `ranks` of ints */
static int read_side(PyObject *dts, PyObject *ranks, int *n, PyArray_Descr ***dt, int **nd,
                     npy_intp **shape, const char *what) {
    PyObject *d = PySequence_Fast(dts, "dtypes must be a sequence");
    PyObject *r = d ? PySequence_Fast(ranks, "ranks must be a sequence") : NULL;
    int ok = 0;
    if (!r) goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(d);
    if (PySequence_Fast_GET_SIZE(r) != count) {
        PyErr_Format(PyExc_ValueError, "%s: %zd dtypes but %zd ranks", what, count,
                     PySequence_Fast_GET_SIZE(r));
        goto done;
    }
    *n = (int)count;
    *dt = PyMem_Calloc(count + 1, sizeof(PyArray_Descr *));
    *nd = PyMem_Calloc(count + 1, sizeof(int));
    if (!*dt || !*nd) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyArray_Descr *descr = NULL;
        if (!PyArray_DescrConverter(PySequence_Fast_GET_ITEM(d, i), &descr)) goto done;
        (*dt)[i] = descr;
        long rank = PyLong_AsLong(PySequence_Fast_GET_ITEM(r, i));
        if (rank < 0 || rank > NPY_MAXDIMS) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "%s: rank %ld out of range", what, rank);
            goto done;
        }
        (*nd)[i] = (int)rank;
    }
    *shape = PyMem_Calloc(total_rank(*nd, *n) + 1, sizeof(npy_intp));
    if (!*shape) { PyErr_NoMemory(); goto done; }
    ok = 1;
done:
    Py_XDECREF(d);
    Py_XDECREF(r);
    return ok;
}

/* Entry(fn, params, dims, n_symbols, in_dtypes, in_ranks, out_dtypes, out_ranks, keep) */
static int Entry_init(Entry *self, PyObject *args, PyObject *kw) {
    unsigned long long fn, params, dims;
    int n_sym;
    PyObject *in_dts, *in_ranks, *out_dts, *out_ranks, *keep;
    if (!PyArg_ParseTuple(args, "KKKiOOOOO", &fn, &params, &dims, &n_sym, &in_dts, &in_ranks,
                          &out_dts, &out_ranks, &keep))
        return -1;
    if (!fn || !dims || n_sym < 0) {
        PyErr_SetString(PyExc_ValueError, "Entry: null entry point or dims table");
        return -1;
    }
    if (self->mu_ready) {
        PyErr_SetString(PyExc_RuntimeError, "Entry: already initialized");
        return -1;
    }
    pthread_mutex_init(&self->mu, NULL);
    self->mu_ready = 1;
    self->fn = (entry_fn)(uintptr_t)fn;
    self->params = (void **)(uintptr_t)params;
    self->dims = (int64_t *)(uintptr_t)dims;
    self->n_sym = n_sym;
    Py_INCREF(keep);
    self->keep = keep;
    if (!read_side(in_dts, in_ranks, &self->n_in, &self->in_dt, &self->in_nd, &self->in_shape, "inputs"))
        return -1;
    if (!read_side(out_dts, out_ranks, &self->n_out, &self->out_dt, &self->out_nd, &self->out_shape,
                   "outputs"))
        return -1;
    return 0;
}

/* the outputs of the set-up shapes, as the result: one array, or a tuple (NULL: error) */
static PyObject *new_outputs(Entry *self, void **out_ptrs) {
    PyObject *outs = NULL, *single = NULL;
    if (self->n_out != 1 && !(outs = PyTuple_New(self->n_out))) return NULL;
    const npy_intp *shape = self->out_shape;
    for (int i = 0; i < self->n_out; i++) {
        Py_INCREF(self->out_dt[i]);
        PyObject *a = PyArray_Empty(self->out_nd[i], (npy_intp *)shape, self->out_dt[i], 0);
        if (!a) {
            Py_XDECREF(outs);
            return NULL;
        }
        out_ptrs[i] = PyArray_DATA((PyArrayObject *)a);
        shape += self->out_nd[i];
        if (outs) PyTuple_SET_ITEM(outs, i, a);
        else single = a;
    }
    return outs ? outs : single;
}

/* a call's input and output pointer tables: on the C stack up to SMALL entries in all */
typedef struct {
    void *small[SMALL];
    void **in, **out;
} Tables;

static int tables_open(Tables *t, Py_ssize_t n_in, Py_ssize_t n_out) {
    void **all = n_in + n_out <= SMALL ? t->small : PyMem_Malloc((n_in + n_out + 1) * sizeof(void *));
    if (!all) {
        PyErr_NoMemory();
        return 0;
    }
    t->in = all;
    t->out = all + n_in;
    return 1;
}

static void tables_close(Tables *t) {
    if (t->in != t->small) PyMem_Free(t->in);
}

/* runs the kernel if the dims and arena are those of set-up `gen`; 1 if it ran */
static int call_locked(Entry *self, uint64_t gen, void **in_ptrs, void **out_ptrs) {
    int ran = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    if (self->applied == gen) {
        self->fn(in_ptrs, out_ptrs, self->params, self->arena, self->dims);
        ran = 1;
    }
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    return ran;
}

/* entry(*inputs): the outputs, or NotImplemented when the inputs are not contiguous
   arrays of the set-up dtypes and shapes (the caller takes the general path) */
static PyObject *Entry_call(Entry *self, PyObject *args, PyObject *kw) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (!self->set_up || n != self->n_in || (kw && PyDict_GET_SIZE(kw)))
        Py_RETURN_NOTIMPLEMENTED;
    Tables t;
    if (!tables_open(&t, n, self->n_out)) return NULL;
    void **in_ptrs = t.in, **out_ptrs = t.out;
    PyObject *result = NULL;
    const npy_intp *shape = self->in_shape;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyTuple_GET_ITEM(args, i);
        if (!PyArray_CheckExact(x)) goto not_mine;
        PyArrayObject *a = (PyArrayObject *)x;
        int nd = self->in_nd[i];
        if (PyArray_NDIM(a) != nd || !PyArray_IS_C_CONTIGUOUS(a)
                || memcmp(PyArray_DIMS(a), shape, nd * sizeof(npy_intp)))
            goto not_mine;
        PyArray_Descr *dt = PyArray_DESCR(a);
        if (dt != self->in_dt[i] && !PyArray_EquivTypes(dt, self->in_dt[i])) goto not_mine;
        in_ptrs[i] = PyArray_DATA(a);
        shape += nd;
    }
    uint64_t gen = self->gen;
    result = new_outputs(self, out_ptrs);
    if (result && !call_locked(self, gen, in_ptrs, out_ptrs)) {   /* set up anew meanwhile */
        Py_DECREF(result);
        goto not_mine;
    }
    goto done;
not_mine:
    result = Py_NewRef(Py_NotImplemented);
done:
    tables_close(&t);
    return result;
}

/* entry.run(inputs, out_shapes, dims, arena, arena_address): set up for these inputs'
   shapes (the caller checked them: contiguous arrays of the entry's dtypes and ranks),
   the flattened output shapes and the symbol values, then run; returns the outputs */
static PyObject *Entry_run(Entry *self, PyObject *args) {
    PyObject *inputs, *out_shapes, *dims, *arena;
    unsigned long long arena_addr;
    if (!PyArg_ParseTuple(args, "O!O!O!OK", &PyTuple_Type, &inputs, &PyTuple_Type, &out_shapes,
                          &PyTuple_Type, &dims, &arena, &arena_addr))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(inputs);
    int in_rank = total_rank(self->in_nd, self->n_in), out_rank = total_rank(self->out_nd, self->n_out);
    if (n != self->n_in || PyTuple_GET_SIZE(out_shapes) != out_rank
            || PyTuple_GET_SIZE(dims) != self->n_sym) {
        PyErr_Format(PyExc_ValueError, "Entry.run: expected %d inputs, %d output dims and %d "
                     "symbols, got %zd, %zd and %zd", self->n_in, out_rank, self->n_sym, n,
                     PyTuple_GET_SIZE(out_shapes), PyTuple_GET_SIZE(dims));
        return NULL;
    }
    npy_intp in_shape[in_rank + 1], out_shape[out_rank + 1];
    int64_t sym[self->n_sym + 1];
    int at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyTuple_GET_ITEM(inputs, i);
        if (!PyArray_Check(x) || PyArray_NDIM((PyArrayObject *)x) != self->in_nd[i]
                || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)x)
                || !PyArray_EquivTypes(PyArray_DESCR((PyArrayObject *)x), self->in_dt[i])) {
            PyErr_Format(PyExc_ValueError, "Entry.run: input %zd is not a contiguous array of "
                         "the entry's dtype and rank", i);
            return NULL;
        }
        memcpy(in_shape + at, PyArray_DIMS((PyArrayObject *)x), self->in_nd[i] * sizeof(npy_intp));
        at += self->in_nd[i];
    }
    for (int i = 0; i < out_rank; i++) {
        out_shape[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(out_shapes, i));
        if (out_shape[i] < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "Entry.run: negative output dim");
            return NULL;
        }
    }
    for (int i = 0; i < self->n_sym; i++) {
        sym[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(dims, i));
        if (sym[i] == -1 && PyErr_Occurred()) return NULL;
    }
    /* the new set-up (GIL held: calls check against it from here on) */
    memcpy(self->in_shape, in_shape, in_rank * sizeof(npy_intp));
    memcpy(self->out_shape, out_shape, out_rank * sizeof(npy_intp));
    self->set_up = 1;
    uint64_t gen = ++self->gen;

    Tables t;
    if (!tables_open(&t, n, self->n_out)) return NULL;
    void **in_ptrs = t.in, **out_ptrs = t.out;
    PyObject *result = NULL, *old_arena = NULL;
    for (Py_ssize_t i = 0; i < n; i++) in_ptrs[i] = PyArray_DATA((PyArrayObject *)PyTuple_GET_ITEM(inputs, i));
    if (!(result = new_outputs(self, out_ptrs))) goto done;
    Py_INCREF(arena);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    for (int i = 0; i < self->n_sym; i++) self->dims[i] = sym[i];
    old_arena = self->arena_obj;
    self->arena_obj = arena;
    self->arena = (void *)(uintptr_t)arena_addr;
    self->applied = gen;
    self->fn(in_ptrs, out_ptrs, self->params, self->arena, self->dims);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    Py_XDECREF(old_arena);
done:
    tables_close(&t);
    return result;
}

/* entry.set_fn(address): run this entry point from the next call on (after the call in
   flight, if any) */
static PyObject *Entry_set_fn(Entry *self, PyObject *arg) {
    unsigned long long fn = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    if (!fn) {
        PyErr_SetString(PyExc_ValueError, "Entry.set_fn: null entry point");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    self->fn = (entry_fn)(uintptr_t)fn;
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef Entry_methods[] = {
    {"run", (PyCFunction)Entry_run, METH_VARARGS,
     "run(inputs, out_shapes, dims, arena, arena_address): set up for these shapes and run"},
    {"set_fn", (PyCFunction)Entry_set_fn, METH_O, "set_fn(address): the entry point to call"},
    {NULL}};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kiln_call.Entry",
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled model's entry point, called with numpy arrays (see kiln/runtime/fastcall.py)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Entry_init,
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_call = (ternaryfunc)Entry_call,
    .tp_methods = Entry_methods,
};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "kiln_call",
                             "kiln's call path (kiln/runtime/fastcall.py)", -1, NULL};

PyMODINIT_FUNC PyInit_kiln_call(void) {
    import_array();
    if (PyType_Ready(&EntryType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&EntryType);
    if (PyModule_AddObject(m, "Entry", (PyObject *)&EntryType) < 0) {
        Py_DECREF(&EntryType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
