/* drivebay.archive._tarapply: apply an uncompressed layer tar to a directory, without writing outside it.
 *
 * The whole apply is in C, because per-member work in Python (or even libarchive's generic per-entry
 * machinery) cost more CPU than GNU tar's whole run. This file holds the module and its entry points:
 * apply, split (a tar-split, see tarsplit.py) and SplitReader (the tar rebuilt from a tar-split, for the
 * same reason: in Python it took three times as long as GNU tar's whole run); tarapply.h says which
 * tarapply_*.c file does the rest. apply.py and tarsplit.py wrap them and turn the reported errors into
 * drivebay's exceptions; their docstrings are the contract.
 *
 * Safety: every member's parent is reached from the root fd one component at a time with
 * openat(O_NOFOLLOW | O_DIRECTORY), so a symlink among the parents stops the apply instead of being
 * followed. The chain of directory fds of the last member's parent is kept (a stack): tars list a
 * directory's members together, so most members need no open at all, and none needs a path walk.
 * Members are created relative to their parent's fd with O_EXCL | O_NOFOLLOW (or mknodat, symlinkat,
 * linkat, which never follow the last component either); a name in the way is removed first. A rebuild
 * reaches each file it reads by the same walk and opens it with O_NOFOLLOW, so it never reads through a
 * symlink either.
 *
 * Threads: the GIL is released for the whole apply and taken back only to call the stream's readinto,
 * which fills one reused 1 MiB buffer. Nothing is global: two applies may run at once in two threads.
 * A SplitReader releases it for each readinto, and refuses a second thread while one reads.
 * The umask is read from /proc (never set) and the working directory is never changed.
 *
 * Errors: a problem with the tar or the disk is reported as (kind, message) and apply.py raises the
 * matching drivebay exception; an exception raised by the stream propagates as it is.
 */
#include "tarapply.h"

/* ---- the apply ------------------------------------------------------------------------------------------ */

/* The umask, read without setting it (setting it would race with other threads); -1 if unknown. */
static int read_umask(void)
{
    char text[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    ssize_t got;
    while (len < sizeof text - 1 && (got = read(fd, text + len, sizeof text - 1 - len)) > 0)
        len += (size_t)got;
    close(fd);
    text[len] = '\0';
    const char *line = strstr(text, "\nUmask:");
    if (!line)
        return -1;
    return (int)strtol(line + strlen("\nUmask:"), NULL, 8);
}

static void apply_all(Applier *a)
{
    a->root_fd = open(a->root, DIR_FLAGS);
    if (a->root_fd < 0) {
        char text[256];
        fail(a, KIND_IO, "cannot open the layer root %s (%s)", a->root, strerror_r(errno, text, sizeof text));
        return;
    }
    struct stat st;
    if (fstat(a->root_fd, &st) < 0) {
        fail_io(a, ".", errno);
        return;
    }
    a->root_sgid = (st.st_mode & S_ISGID) != 0;
    a->umask = read_umask();
    int rc;
    while ((rc = read_header(a)) > 0) {
        if (apply_member(a) < 0)
            return;
        /* Data not written (a whiteout's, a skipped member's) is skipped, and so is the padding. */
        if (skip_bytes(a, a->data_left + padding((uint64_t)a->m.size), "member") < 0)
            return;
    }
    if (rc < 0 || finish_dirs(a) < 0)
        return;
    drain(a);
}

void applier_free(Applier *a)
{
    stack_pop_to(a, 0);
    if (a->root_fd >= 0)
        close(a->root_fd);
    path_free(&a->stack);
    path_free(&a->parts);
    path_free(&a->target);
    free(a->fds);
    free(a->sgid);
    free(a->m.name.data);
    free(a->m.link.data);
    free(a->m.xattr_data.data);
    free(a->m.xattrs);
    free(a->scratch.data);
    free(a->ext.data);
    strset_free(&a->written);
    strset_free(&a->dir_paths);
    free(a->dir_meta);
    free(a->err_msg);
}

/* Sets up reading `stream` through its readinto (or read) into a's buffer; -1 with an exception set. */
static int open_stream(Applier *a, PyObject *stream)
{
    if (!(a->readinto = PyObject_GetAttrString(stream, "readinto"))) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        if (!(a->read = PyObject_GetAttrString(stream, "read")))
            return -1;
    }
    /* A bytearray, so that a view the stream keeps after readinto never outlives the memory. */
    if (!(a->array = PyByteArray_FromStringAndSize(NULL, CHUNK)) || !(a->view = PyMemoryView_FromObject(a->array)))
        return -1;
    a->buf = (unsigned char *)PyByteArray_AS_STRING(a->array);
    return 0;
}

/* Whether the run ended in a Python exception, which is then set: the stream's own, or out of memory. */
static int raised(const Applier *a)
{
    if (a->py_error)
        return 1;
    if (a->err_kind == KIND_NOMEM) {
        PyErr_NoMemory();
        return 1;
    }
    return 0;
}

/* The message of the error that stopped the run ("" if none), for the (kind, message) a caller maps. */
static PyObject *error_message(const Applier *a)
{
    if (!a->err_kind)
        return PyUnicode_FromString("");
    return PyUnicode_DecodeUTF8(a->err_msg, (Py_ssize_t)strlen(a->err_msg), "surrogateescape");
}

static void close_stream(Applier *a)
{
    Py_XDECREF(a->readinto);
    Py_XDECREF(a->read);
    Py_XDECREF(a->view);
    Py_XDECREF(a->array);
}

PyDoc_STRVAR(apply_doc,
             "apply(stream, root, whiteouts, drop_xattr_prefixes, opaque_xattr) -> (size, kind, message)\n\n"
             "Apply the uncompressed layer tar read from ``stream`` to the directory ``root`` (bytes).\n"
             "``whiteouts`` is DELETE, OVERLAY or AUFS; xattrs starting with one of ``drop_xattr_prefixes``\n"
             "are not applied; ``opaque_xattr`` marks an opaque directory in OVERLAY. Returns the bytes of\n"
             "regular files written, and (kind, message) of the error that stopped the apply: kind 0 for\n"
             "none, else UNSAFE, INVALID or IO. An exception raised by the stream propagates.");

static PyObject *tarapply_apply(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *stream, *root_bytes, *prefixes, *opaque;
    int whiteouts;
    if (!PyArg_ParseTuple(args, "OO&iO!U:apply", &stream, PyUnicode_FSConverter, &root_bytes, &whiteouts,
                          &PyTuple_Type, &prefixes, &opaque))
        return NULL;
    Applier a;
    memset(&a, 0, sizeof a);
    a.root_fd = -1;
    a.root = PyBytes_AS_STRING(root_bytes);
    a.whiteouts = whiteouts;
    a.euid = geteuid();
    a.egid = getegid();
    a.chown = a.euid == 0; /* like GNU tar, only root restores owners; anyone else keeps their own */
    PyObject *result = NULL;
    if (whiteouts < WH_DELETE || whiteouts > WH_AUFS) {
        PyErr_Format(PyExc_ValueError, "whiteouts must be DELETE, OVERLAY or AUFS, not %d", whiteouts);
        goto done;
    }
    if (PyTuple_GET_SIZE(prefixes) > MAX_DROP_PREFIXES) {
        PyErr_SetString(PyExc_ValueError, "too many xattr prefixes to drop");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
        Py_ssize_t len;
        PyObject *item = PyTuple_GET_ITEM(prefixes, i);
        /* The UTF-8 form is cached in the str, which the argument tuple keeps alive. */
        const char *prefix = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &len) : NULL;
        if (!prefix) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "xattr prefixes must be str");
            goto done;
        }
        a.drop[a.ndrop] = prefix;
        a.drop_len[a.ndrop++] = (size_t)len;
    }
    if (!(a.opaque_xattr = PyUnicode_AsUTF8(opaque)))
        goto done;
    if (open_stream(&a, stream) < 0)
        goto done;

    a.saved = PyEval_SaveThread();
    Py_ssize_t first = reader_fill(&a);
    /* An empty stream is an empty layer: some writers omit even the end blocks. */
    if (first > 0)
        apply_all(&a);
    PyEval_RestoreThread(a.saved);
    if (!raised(&a))
        result = Py_BuildValue("(LiN)", a.size, a.err_kind, error_message(&a));
done:
    applier_free(&a);
    close_stream(&a);
    Py_DECREF(root_bytes);
    return result;
}

PyDoc_STRVAR(split_doc,
             "split(stream, fd) -> (size, exact, kind, message)\n\n"
             "Read the uncompressed layer tar from ``stream`` to its end and write its tar-split to the file\n"
             "descriptor ``fd``: the magic ``DBSPLIT1``, then records ``R`` (u32 length, bytes kept as they\n"
             "are: headers, padding, data that is not a regular file's), ``F`` (u64 size, u32 length, the\n"
             "path below the layer root of a regular file whose bytes are left out) and ``E`` (u64 size of\n"
             "the whole tar); numbers are little-endian. Returns the tar's size; whether each ``F`` file is\n"
             "exactly what the applied layer holds (false when the tar itself may remove or replace one of\n"
             "them: a path named twice, a whiteout or opaque directory over it, a non-directory above it);\n"
             "and (kind, message) of an error as for apply, kind 0 for none. After a malformed tar the\n"
             "stream is still read to its end. An exception raised by the stream propagates.");

static PyObject *tarapply_split(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *stream;
    int fd;
    if (!PyArg_ParseTuple(args, "Oi:split", &stream, &fd))
        return NULL;
    Applier a;
    Splitter sp;
    memset(&a, 0, sizeof a);
    memset(&sp, 0, sizeof sp);
    a.root_fd = -1;
    a.root = "the tar-split"; /* named by messages only; nothing is written below a root */
    a.split = &sp;
    sp.fd = fd;
    sp.raw_at = NO_RECORD;
    sp.exact = 1;
    PyObject *result = NULL;
    if (open_stream(&a, stream) < 0)
        goto done;
    if (!bytes_append(&sp.out, SPLIT_MAGIC, strlen(SPLIT_MAGIC))) {
        PyErr_NoMemory();
        goto done;
    }
    a.saved = PyEval_SaveThread();
    Py_ssize_t first = reader_fill(&a);
    if (first > 0)
        split_all(&a);
    else if (first == 0)
        split_finish(&a);
    PyEval_RestoreThread(a.saved);
    if (!raised(&a))
        result = Py_BuildValue("(KOiN)", (unsigned long long)sp.total, sp.exact && !a.err_kind ? Py_True : Py_False,
                               a.err_kind, error_message(&a));
done:
    applier_free(&a);
    close_stream(&a);
    free(sp.out.data);
    free(sp.victims.data);
    free(sp.nondirs.data);
    free(sp.files.data);
    strset_free(&sp.names);
    strset_free(&sp.file_dirs);
    strset_free(&sp.opaque);
    return result;
}

/* ---- the tar rebuilt from a tar-split -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Rebuild r;
    int open;
    int busy; /* a readinto runs without the GIL: another thread must not read or close meanwhile */
} SplitReader;

static PyObject *split_reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    int split_fd, root_fd;
    long long offset;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "SplitReader takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "iLi:SplitReader", &split_fd, &offset, &root_fd))
        return NULL;
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "the tar-split offset must not be negative");
        return NULL;
    }
    SplitReader *self = (SplitReader *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->open = 1;
    if (rebuild_open(&self->r, split_fd, (off_t)offset, root_fd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Whether the reader may be used now; else an exception is set. */
static int split_reader_usable(const SplitReader *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the tar-split reader is being read by another thread");
        return 0;
    }
    if (!self->open) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed tar-split reader");
        return 0;
    }
    return 1;
}

static PyObject *split_reader_readinto(SplitReader *self, PyObject *arg)
{
    Py_buffer view;
    if (!split_reader_usable(self) || !PyArg_Parse(arg, "w*:readinto", &view))
        return NULL;
    size_t filled = 0;
    /* After an error nothing more is read: every later call reports it again. */
    if (!self->r.a.err_kind) {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        filled = rebuild_fill(&self->r, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    PyBuffer_Release(&view);
    if (raised(&self->r.a))
        return NULL;
    return Py_BuildValue("(niN)", (Py_ssize_t)filled, self->r.a.err_kind, error_message(&self->r.a));
}

static PyObject *split_reader_close(SplitReader *self, PyObject *unused)
{
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the tar-split reader is being read by another thread");
        return NULL;
    }
    rebuild_close(&self->r);
    self->open = 0;
    Py_RETURN_NONE;
}

static PyObject *split_reader_size(SplitReader *self, void *closure)
{
    (void)closure;
    if (!self->r.ended)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(self->r.size);
}

static void split_reader_dealloc(SplitReader *self)
{
    PyTypeObject *type = Py_TYPE(self);
    rebuild_close(&self->r);
    type->tp_free(self);
    Py_DECREF(type);
}

PyDoc_STRVAR(split_reader_doc,
             "SplitReader(split_fd, offset, root_fd)\n\n"
             "The tar of the tar-split read from ``split_fd`` at ``offset`` (just after its magic), with each\n"
             "``F`` file's bytes read from the directory ``root_fd``: every directory on a file's path is opened\n"
             "from there without following a symlink, and so is the file. Both fds are duplicated; the\n"
             "caller's stay its own (the split's offset is never moved).");

PyDoc_STRVAR(split_reader_readinto_doc,
             "readinto(buffer) -> (count, kind, message)\n\n"
             "Fill ``buffer`` with the next bytes of the tar, reading large chunks without the GIL. ``count``\n"
             "is short only at the end of the tar or on an error: (kind, message) as for apply, kind 0 for\n"
             "none, else CHANGED (a file is missing, shorter, not a regular file, or behind a symlink or\n"
             "non-directory), INVALID (the split is malformed or truncated) or IO. The message names the file\n"
             "but not the layer. After an error every call reports it again.");

PyDoc_STRVAR(split_reader_close_doc, "close()\n\nClose the reader's fds; it may be called again.");

static PyMethodDef split_reader_methods[] = {
    {"readinto", (PyCFunction)split_reader_readinto, METH_O, split_reader_readinto_doc},
    {"close", (PyCFunction)split_reader_close, METH_NOARGS, split_reader_close_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef split_reader_getset[] = {
    {"size", (getter)split_reader_size, NULL, "The tar's size from the end record, or None before it is read.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot split_reader_slots[] = {
    {Py_tp_doc, (void *)split_reader_doc},
    {Py_tp_new, split_reader_new},
    {Py_tp_dealloc, split_reader_dealloc},
    {Py_tp_methods, split_reader_methods},
    {Py_tp_getset, split_reader_getset},
    {0, NULL},
};

static PyType_Spec split_reader_spec = {
    .name = "drivebay.archive._tarapply.SplitReader",
    .basicsize = sizeof(SplitReader),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = split_reader_slots,
};

static PyMethodDef methods[] = {
    {"apply", tarapply_apply, METH_VARARGS, apply_doc},
    {"split", tarapply_split, METH_VARARGS, split_doc},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "DELETE", WH_DELETE) < 0 ||
        PyModule_AddIntConstant(module, "OVERLAY", WH_OVERLAY) < 0 ||
        PyModule_AddIntConstant(module, "AUFS", WH_AUFS) < 0 ||
        PyModule_AddIntConstant(module, "UNSAFE", KIND_UNSAFE) < 0 ||
        PyModule_AddIntConstant(module, "INVALID", KIND_INVALID) < 0 ||
        PyModule_AddIntConstant(module, "IO", KIND_IO) < 0 ||
        PyModule_AddIntConstant(module, "CHANGED", KIND_CHANGED) < 0)
        return -1;
    PyObject *reader = PyType_FromModuleAndSpec(module, &split_reader_spec, NULL);
    if (!reader)
        return -1;
    int rc = PyModule_AddType(module, (PyTypeObject *)reader);
    Py_DECREF(reader);
    return rc;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "drivebay.archive._tarapply",
    .m_doc = "Layer tar apply in C; use drivebay.archive.apply_layer_tar.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__tarapply(void) { return PyModuleDef_Init(&module_def); }
