/* The inner loop of multi-index hashing (moderate/signals/mih.py), compiled when a C compiler is at
 * hand (an optional extension: without one the same search runs in numpy).
 *
 * numpy spends its time there on index arithmetic over every probed bucket entry (a repeat, an
 * arange, two gathers and a popcount of ~175k entries for radius 52 at 10M codes); here each
 * entry is read once. What remains is memory latency: one random read of a bucket's start per
 * probe and one of its entries, so loads are issued ahead of use (software prefetch) and overlap.
 *
 * Plain buffer protocol, no numpy headers: any C-contiguous buffer of the stated item size. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AHEAD 32 /* probes or candidates in flight; more buys nothing measurable */

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#define POPCOUNT64(x) __builtin_popcountll(x)
#else
#define PREFETCH(p) ((void)0)
static int POPCOUNT64(uint64_t x) {
    int n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}
#endif

typedef struct {
    int64_t *data;
    Py_ssize_t len, cap;
} Grow;

static int grow_push(Grow *g, int64_t value) {
    if (g->len == g->cap) {
        Py_ssize_t cap = g->cap ? g->cap * 2 : 256;
        int64_t *data = realloc(g->data, (size_t)cap * sizeof(int64_t));
        if (!data) return -1;
        g->data = data, g->cap = cap;
    }
    g->data[g->len++] = value;
    return 0;
}

typedef struct {
    const uint32_t *offsets, *following, *nexts;
    const int32_t *positions;
    const uint64_t *words, *query;
    const int64_t *probes, *rows, *allowed;
    Py_ssize_t n, n_offsets, n_flat, n_codes;
    int max_distance;
    long long budget;
} Search;

enum { DONE, OVER_BUDGET, NO_MEMORY, DAMAGED };

/* x86-64 before 2008 lacks POPCNT, so the loop is compiled twice and the loader picks one (an
 * ifunc); without the instruction every popcount is a libgcc call and the search ~2x slower. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define TARGETS __attribute__((target_clones("popcnt", "default")))
#else
#define TARGETS
#endif

static int verify(const Search *s, int32_t code, Grow *found, Grow *distances) {
    const uint64_t *w = &s->words[(size_t)code * 4], *q = s->query;
    int64_t d = POPCOUNT64(w[0] ^ q[0]) + POPCOUNT64(w[1] ^ q[1]) + POPCOUNT64(w[2] ^ q[2]) + POPCOUNT64(w[3] ^ q[3]);
    return d > s->max_distance || (grow_push(found, code) == 0 && grow_push(distances, d) == 0);
}

TARGETS static int run(const Search *s, Grow *found, Grow *distances) {
    Py_ssize_t n = s->n;
    int64_t *start = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    uint32_t *length = malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    Grow near = {0};
    int status = start && length ? DONE : NO_MEMORY;
    long long entries = n;
    /* 1: bucket bounds, each probe's offsets read AHEAD probes early. Every input is read once into
     * a local, checked, then used: the GIL is released, so a caller's thread could change them. */
    for (Py_ssize_t i = 0; i < n && status == DONE; i++) {
        if (i + AHEAD < n) {
            int64_t ahead = s->probes[i + AHEAD];
            if (ahead >= 0 && ahead < s->n_offsets) PREFETCH(&s->offsets[ahead]);
        }
        int64_t probe = s->probes[i], row = s->rows[i];
        if (probe < 0 || probe >= s->n_offsets - 1 || row < 0 || row > s->n_flat) {
            status = DAMAGED;
            break;
        }
        uint32_t a = s->offsets[probe], b = s->offsets[probe + 1];
        start[i] = row + a, length[i] = b - a;  /* row + a: both under 2^32 + n_flat, no overflow */
        if (b < a || start[i] + length[i] > s->n_flat) status = DAMAGED;
        entries += length[i];
    }
    if (status == DONE && entries > s->budget) status = OVER_BUDGET;
    /* 2: the pigeonring prune on each entry's next substring; a survivor's code is read ahead and
     * its full distance taken AHEAD survivors later. */
    for (Py_ssize_t i = 0; i < n && status == DONE; i++) {
        if (i + AHEAD < n) PREFETCH(&s->following[start[i + AHEAD]]);
        for (int64_t k = start[i]; k < start[i] + length[i] && status == DONE; k++) {
            if (POPCOUNT64(s->following[k] ^ s->nexts[i]) > s->allowed[i]) continue;
            int32_t code = s->positions[k];
            if (code < 0 || code >= s->n_codes) status = DAMAGED;
            else if (PREFETCH(&s->words[(size_t)code * 4]), grow_push(&near, code) < 0) status = NO_MEMORY;
            else if (near.len > AHEAD && !verify(s, (int32_t)near.data[near.len - 1 - AHEAD], found, distances))
                status = NO_MEMORY;
        }
    }
    for (Py_ssize_t c = near.len > AHEAD ? near.len - AHEAD : 0; c < near.len && status == DONE; c++)
        if (!verify(s, (int32_t)near.data[c], found, distances)) status = NO_MEMORY;
    free(start), free(length), free(near.data);
    return status;
}

/* A C-contiguous buffer of whole, aligned `itemsize`-byte items (read as the documented type). */
static int get(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len % itemsize || (uintptr_t)view->buf % (uintptr_t)itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of aligned %zd-byte items", name,
                     view->len, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(search_doc,
             "search(offsets, positions, following, words, query, probes, rows, nexts, allowed, max_distance, budget)\n"
             "-> (positions: bytes of int64, distances: bytes of int64), or None when the probes plus their\n"
             "bucket entries exceed budget (a scan is cheaper then)\n\n"
             "Codes within max_distance bits of query found in the probed buckets: probe i reads bucket\n"
             "offsets[probes[i]]..offsets[probes[i] + 1] (uint32) of its table, which starts at rows[i] (int64)\n"
             "in the flattened positions (int32) and following (uint32); an entry is kept when its next\n"
             "substring is within allowed[i] (int64) bits of nexts[i] (uint32), then when its code, words\n"
             "(uint64, 4 per code), is within max_distance bits of query (4 uint64). In probe order; a code\n"
             "found through several tables comes once per table. ValueError for buffers of the wrong size or\n"
             "alignment; IndexError for a probe, a bucket or a position outside the tables or codes.");

static PyObject *search(PyObject *self, PyObject *args) {
    (void)self;
    static const Py_ssize_t sizes[9] = {4, 4, 4, 8, 8, 8, 8, 4, 8};
    static const char *names[9] = {"offsets", "positions", "following", "words", "query",
                                   "probes", "rows", "nexts", "allowed"};
    PyObject *objs[9];
    Py_buffer views[9];
    Search s;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOiL", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &objs[7], &objs[8], &s.max_distance, &s.budget))
        return NULL;
    int got = 0;
    for (; got < 9; got++)
        if (get(objs[got], &views[got], sizes[got], names[got]) < 0) goto release;
    s.offsets = views[0].buf, s.positions = views[1].buf, s.following = views[2].buf, s.words = views[3].buf;
    s.query = views[4].buf, s.probes = views[5].buf, s.rows = views[6].buf, s.nexts = views[7].buf;
    s.allowed = views[8].buf;
    s.n = views[5].len / 8, s.n_offsets = views[0].len / 4, s.n_flat = views[1].len / 4, s.n_codes = views[3].len / 32;
    if (views[4].len != 32 || views[2].len != views[1].len || views[6].len != views[5].len ||
        views[7].len / 4 != s.n || views[8].len / 8 != s.n) {
        PyErr_SetString(PyExc_ValueError, "search: query must be 32 bytes and probes, rows, nexts, allowed agree");
        goto release;
    }
    Grow found = {0}, distances = {0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run(&s, &found, &distances);
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (status == NO_MEMORY)
        PyErr_NoMemory();
    else if (status == DAMAGED)
        PyErr_SetString(PyExc_IndexError,
                        "search: a probe, bucket or position points outside the tables or codes (a damaged index)");
    else if (status == OVER_BUDGET)
        result = Py_NewRef(Py_None);
    else /* "" rather than NULL when nothing is found: y# turns NULL into None */
        result = Py_BuildValue("(y#y#)", found.len ? (const char *)found.data : "",
                               found.len * (Py_ssize_t)sizeof(int64_t), distances.len ? (const char *)distances.data : "",
                               distances.len * (Py_ssize_t)sizeof(int64_t));
    free(found.data), free(distances.data);
    for (int v = 0; v < 9; v++) PyBuffer_Release(&views[v]);
    return result;
release:
    for (int v = 0; v < got; v++) PyBuffer_Release(&views[v]);
    return NULL;
}

static PyMethodDef methods[] = {{"search", search, METH_VARARGS, search_doc}, {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mih", "Multi-index hashing's inner loop in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__mih(void) { return PyModule_Create(&module); }
