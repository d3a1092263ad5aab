/* drivebay.fs._btrfssearch: the btrfs searches behind the btrfs graph driver's native diff, in C.
 *
 * A diff after 1,000 scattered changes reads every item of every tree leaf written since the snapshot
 * (~80,000 items for drivebay bench's data); parsing them in Python cost more than the rest of the search.
 * Here each item costs a header read, and only the inode items that matter become Python objects.
 * drivebay/fs/btrfs.py wraps both functions and turns OSError into BtrfsError naming the path.
 *
 * Threads: the GIL is released around the long ioctls; buffers are per call, so calls may run at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>

/* Results per tree search call: the kernel fills as many items as fit, so a bigger buffer means fewer calls. */
#define SEARCH_BUFFER (256 * 1024)
/* One inode item and its header, with room to spare: what a single-key lookup returns. */
#define LOOKUP_BUFFER 512
/* The kernel fills at most this many bytes of BTRFS_IOC_INO_PATHS's buffer, whatever it is given. */
#define INO_PATHS_BUFFER 4096

typedef struct btrfs_ioctl_search_args_v2 SearchArgs;

static SearchArgs *search_args_new(size_t buffer)
{
    SearchArgs *args = PyMem_Calloc(1, sizeof(SearchArgs) + buffer);
    if (args == NULL)
        PyErr_NoMemory();
    return args;
}

/* The first key after (objectid, type, offset); 0 when there is none. */
static int key_after(struct btrfs_ioctl_search_key *key, uint64_t objectid, uint32_t type, uint64_t offset)
{
    if (offset < UINT64_MAX) {
        offset++;
    } else if (type < 255) {
        type++;
        offset = 0;
    } else if (objectid < UINT64_MAX) {
        objectid++;
        type = 0;
        offset = 0;
    } else {
        return 0;
    }
    key->min_objectid = objectid;
    key->min_type = type;
    key->min_offset = offset;
    return 1;
}

static int inode_item_at(const SearchArgs *args, size_t pos, size_t len, struct btrfs_inode_item *item)
{
    if (len < sizeof(*item))
        return 0;
    memcpy(item, (const char *)args->buf + pos, sizeof(*item));
    return 1;
}

static int time_after(const struct btrfs_timespec *a, const struct btrfs_timespec *b)
{
    uint64_t a_sec = le64toh(a->sec), b_sec = le64toh(b->sec);
    return a_sec > b_sec || (a_sec == b_sec && le32toh(a->nsec) > le32toh(b->nsec));
}

/* Whether two items of one inode say the same but for when it was last written and read (transid, atime).
 * Anything a diff compares (mode, owner, size, mtime, links, rdev) or that marks a change (ctime, the
 * change counter `sequence`, which xattr and directory entry changes bump) is in the compared bytes. */
static int same_but_atime(const struct btrfs_inode_item *a, const struct btrfs_inode_item *b)
{
    const char *pa = (const char *)a, *pb = (const char *)b;
    const size_t transid = offsetof(struct btrfs_inode_item, transid);
    const size_t after_transid = transid + sizeof(a->transid);
    const size_t atime = offsetof(struct btrfs_inode_item, atime);
    const size_t after_atime = atime + sizeof(a->atime);
    return memcmp(pa, pb, transid) == 0 && memcmp(pa + after_transid, pb + after_transid, atime - after_transid) == 0
           && memcmp(pa + after_atime, pb + after_atime, sizeof(*a) - after_atime) == 0;
}

/* The inode item of `inode` in the subvolume of `fd`: 1 found, 0 absent, -1 with errno set. */
static int lookup_inode_item(int fd, SearchArgs *args, uint64_t inode, struct btrfs_inode_item *item)
{
    struct btrfs_ioctl_search_key *key = &args->key;
    memset(key, 0, sizeof(*key));
    key->min_objectid = key->max_objectid = inode;
    key->min_type = key->max_type = BTRFS_INODE_ITEM_KEY;
    key->max_transid = UINT64_MAX;
    key->nr_items = 1;
    args->buf_size = LOOKUP_BUFFER;
    if (ioctl(fd, BTRFS_IOC_TREE_SEARCH_V2, args) < 0)
        return -1;
    if (key->nr_items == 0)
        return 0;
    struct btrfs_ioctl_search_header header;
    memcpy(&header, args->buf, sizeof(header));
    return header.objectid == inode && header.type == BTRFS_INODE_ITEM_KEY
           && inode_item_at(args, sizeof(header), header.len, item);
}

/* Whether the origin holds `inode` as it is now, but for its atime: the item was written only because the
 * inode was read. Looked up only when the atime is newer than the ctime: after a change and no read since,
 * it is not, and the lookup would be wasted. -1 with errno set on failure. */
static int only_read(int origin_fd, SearchArgs *lookup, uint64_t inode, const struct btrfs_inode_item *item)
{
    if (!time_after(&item->atime, &item->ctime))
        return 0;
    struct btrfs_inode_item before;
    int found = lookup_inode_item(origin_fd, lookup, inode, &before);
    if (found <= 0)
        return found;
    return same_but_atime(item, &before);
}

static int append_inode(PyObject *list, uint64_t inode)
{
    PyObject *number = PyLong_FromUnsignedLongLong(inode);
    if (number == NULL)
        return -1;
    int rc = PyList_Append(list, number);
    Py_DECREF(number);
    return rc;
}

/* Scan one buffer of search results; appends to `found`. Returns 0, or -1 with an exception set. */
static int scan_results(const SearchArgs *args, uint64_t since, int origin_fd, SearchArgs *lookup, PyObject *found,
                        struct btrfs_ioctl_search_header *last)
{
    size_t pos = 0;
    for (uint32_t i = 0; i < args->key.nr_items; i++) {
        memcpy(last, (const char *)args->buf + pos, sizeof(*last));
        pos += sizeof(*last);
        struct btrfs_inode_item item;
        if (last->type == BTRFS_INODE_ITEM_KEY && inode_item_at(args, pos, last->len, &item)
            && le64toh(item.transid) > since) {
            int skip = origin_fd >= 0 ? only_read(origin_fd, lookup, last->objectid, &item) : 0;
            if (skip < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            if (!skip && append_inode(found, last->objectid) < 0)
                return -1;
        }
        pos += last->len;
    }
    return 0;
}

static PyObject *changed_inodes(PyObject *Py_UNUSED(module), PyObject *py_args)
{
    int fd, origin_fd;
    unsigned long long since;
    if (!PyArg_ParseTuple(py_args, "iKi:changed_inodes", &fd, &since, &origin_fd))
        return NULL;
    if (since == UINT64_MAX)
        return PyList_New(0);
    SearchArgs *args = search_args_new(SEARCH_BUFFER);
    SearchArgs *lookup = args != NULL ? search_args_new(LOOKUP_BUFFER) : NULL;
    PyObject *found = lookup != NULL ? PyList_New(0) : NULL;
    if (found == NULL)
        goto fail;
    struct btrfs_ioctl_search_key *key = &args->key;
    key->min_objectid = BTRFS_FIRST_FREE_OBJECTID;
    key->min_type = BTRFS_INODE_ITEM_KEY;
    key->max_objectid = UINT64_MAX;
    key->max_type = 255;
    key->max_offset = UINT64_MAX;
    /* The kernel skips every node and leaf not written since: the cost follows the change. */
    key->min_transid = since + 1;
    key->max_transid = UINT64_MAX;
    for (;;) {
        key->nr_items = UINT32_MAX;
        args->buf_size = SEARCH_BUFFER;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = ioctl(fd, BTRFS_IOC_TREE_SEARCH_V2, args);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        if (key->nr_items == 0)
            break;
        struct btrfs_ioctl_search_header last;
        if (scan_results(args, since, origin_fd, lookup, found, &last) < 0)
            goto fail;
        if (!key_after(key, last.objectid, last.type, last.offset))
            break;
    }
    PyMem_Free(lookup);
    PyMem_Free(args);
    return found;
fail:
    Py_XDECREF(found);
    PyMem_Free(lookup);
    PyMem_Free(args);
    return NULL;
}

/* The paths of one inode from a filled BTRFS_IOC_INO_PATHS buffer; None when names did not fit. */
static PyObject *paths_in(const struct btrfs_data_container *names)
{
    if (names->elem_missed != 0 || names->bytes_missing != 0)
        Py_RETURN_NONE;
    PyObject *paths = PyList_New(names->elem_cnt);
    if (paths == NULL)
        return NULL;
    const char *base = (const char *)names->val;
    for (uint32_t i = 0; i < names->elem_cnt; i++) {
        uint64_t offset;
        memcpy(&offset, base + i * sizeof(uint64_t), sizeof(offset));
        const char *path = base + offset;
        size_t room = INO_PATHS_BUFFER - offsetof(struct btrfs_data_container, val) - offset;
        PyObject *text = PyUnicode_DecodeFSDefaultAndSize(path, (Py_ssize_t)strnlen(path, room));
        if (text == NULL) {
            Py_DECREF(paths);
            return NULL;
        }
        PyList_SET_ITEM(paths, i, text);
    }
    return paths;
}

/* OSError(errno, "<strerror> (inode N)"), so the caller can say which inode failed. */
static void set_inode_error(int error, uint64_t inode)
{
    PyObject *value = Py_BuildValue("(iN)", error, PyUnicode_FromFormat("%s (inode %llu)", strerror(error),
                                                                        (unsigned long long)inode));
    if (value != NULL) {
        PyErr_SetObject(PyExc_OSError, value);
        Py_DECREF(value);
    }
}

static PyObject *inode_paths(PyObject *Py_UNUSED(module), PyObject *py_args)
{
    int fd;
    PyObject *sequence;
    if (!PyArg_ParseTuple(py_args, "iO:inode_paths", &fd, &sequence))
        return NULL;
    PyObject *inodes = PySequence_Fast(sequence, "inode_paths: inodes must be a sequence");
    if (inodes == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(inodes);
    /* One extra byte past what the kernel may fill: a NUL, so every path read stops inside the buffer. */
    struct btrfs_data_container *names = PyMem_Calloc(1, INO_PATHS_BUFFER + 1);
    PyObject *result = names != NULL ? PyList_New(count) : NULL;
    if (result == NULL) {
        if (names == NULL)
            PyErr_NoMemory();
        goto fail;
    }
    struct btrfs_ioctl_ino_path_args args = {.size = INO_PATHS_BUFFER, .fspath = (uintptr_t)names};
    for (Py_ssize_t i = 0; i < count; i++) {
        args.inum = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(inodes, i));
        if (PyErr_Occurred())
            goto fail;
        if (ioctl(fd, BTRFS_IOC_INO_PATHS, &args) < 0) {
            set_inode_error(errno, args.inum);
            goto fail;
        }
        PyObject *paths = paths_in(names);
        if (paths == NULL)
            goto fail;
        PyList_SET_ITEM(result, i, paths);
    }
    Py_DECREF(inodes);
    PyMem_Free(names);
    return result;
fail:
    Py_XDECREF(result);
    Py_DECREF(inodes);
    PyMem_Free(names);
    return NULL;
}

static PyMethodDef methods[] = {
    {"changed_inodes", changed_inodes, METH_VARARGS,
     "changed_inodes(fd, since, origin_fd) -> list of inode numbers whose inode item was written after "
     "transaction `since` in the subvolume of `fd`; with origin_fd >= 0, those only read since "
     "(the origin holds the same item but for its atime) are left out."},
    {"inode_paths", inode_paths, METH_VARARGS,
     "inode_paths(fd, inodes) -> for each inode, its paths relative to the subvolume of `fd`, "
     "or None when they do not fit the kernel's 4 KiB."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "drivebay.fs._btrfssearch",
    .m_doc = "btrfs generation search and inode path resolution for native diffs; use drivebay.fs.btrfs.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__btrfssearch(void) { return PyModuleDef_Init(&module_def); }
