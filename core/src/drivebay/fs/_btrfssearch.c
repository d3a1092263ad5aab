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
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

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

/* ---- the generation search ---------------------------------------------------------------------- */

/* What every scan of written items shares: which inode items count as written. */
typedef struct {
    uint64_t since;
    int origin_fd;
    SearchArgs *lookup;
} Written;

/* 1 if the item is an inode item written after `since` and not only read (copied to `item`), 0 if not,
 * -1 with an exception set. */
static int written_inode(Written *w, const struct btrfs_ioctl_search_header *header, const char *data,
                         struct btrfs_inode_item *item)
{
    if (header->type != BTRFS_INODE_ITEM_KEY || header->len < sizeof(*item))
        return 0;
    memcpy(item, data, sizeof(*item));
    if (le64toh(item->transid) <= w->since)
        return 0;
    int skip = w->origin_fd >= 0 ? only_read(w->origin_fd, w->lookup, header->objectid, item) : 0;
    if (skip < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return !skip;
}

typedef int (*ItemFn)(void *state, const struct btrfs_ioctl_search_header *header, const char *data);

/* Call `fn` for every item from the first inode on in the leaves of `fd`'s subvolume written after
 * transaction `since` (all items of such a leaf, changed or not). 0, or -1 with an exception set. */
static int search_written(int fd, uint64_t since, ItemFn fn, void *state)
{
    if (since == UINT64_MAX)
        return 0;
    SearchArgs *args = search_args_new(SEARCH_BUFFER);
    if (args == NULL)
        return -1;
    struct btrfs_ioctl_search_key *key = &args->key;
    key->min_objectid = BTRFS_FIRST_FREE_OBJECTID;
    key->min_type = BTRFS_INODE_ITEM_KEY;
    key->max_objectid = UINT64_MAX;
    key->max_type = 255;
    key->max_offset = UINT64_MAX;
    /* The kernel skips every node and leaf not written since: the cost follows the change. */
    key->min_transid = since + 1;
    key->max_transid = UINT64_MAX;
    int result = 0;
    for (;;) {
        key->nr_items = UINT32_MAX;
        args->buf_size = SEARCH_BUFFER;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = ioctl(fd, BTRFS_IOC_TREE_SEARCH_V2, args);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            result = -1;
            break;
        }
        if (key->nr_items == 0)
            break;
        struct btrfs_ioctl_search_header header;
        const char *pos = (const char *)args->buf;
        for (uint32_t i = 0; i < key->nr_items; i++) {
            memcpy(&header, pos, sizeof(header));
            pos += sizeof(header);
            if (fn(state, &header, pos) < 0) {
                PyMem_Free(args);
                return -1;
            }
            pos += header.len;
        }
        if (!key_after(key, header.objectid, header.type, header.offset))
            break;
    }
    PyMem_Free(args);
    return result;
}

/* ---- changed_inodes ------------------------------------------------------------------------------- */

typedef struct {
    Written written;
    PyObject *found;
} InodeScan;

static int collect_inode(void *state, const struct btrfs_ioctl_search_header *header, const char *data)
{
    InodeScan *scan = state;
    struct btrfs_inode_item item;
    int written = written_inode(&scan->written, header, data, &item);
    if (written <= 0)
        return written;
    PyObject *number = PyLong_FromUnsignedLongLong(header->objectid);
    if (number == NULL)
        return -1;
    int rc = PyList_Append(scan->found, number);
    Py_DECREF(number);
    return rc;
}

static PyObject *changed_inodes(PyObject *Py_UNUSED(module), PyObject *py_args)
{
    int fd;
    InodeScan scan = {.written.origin_fd = -1};
    unsigned long long since;
    if (!PyArg_ParseTuple(py_args, "iKi:changed_inodes", &fd, &since, &scan.written.origin_fd))
        return NULL;
    scan.written.since = since;
    scan.written.lookup = search_args_new(LOOKUP_BUFFER);
    scan.found = scan.written.lookup != NULL ? PyList_New(0) : NULL;
    if (scan.found != NULL && search_written(fd, since, collect_inode, &scan) < 0)
        Py_CLEAR(scan.found);
    PyMem_Free(scan.written.lookup);
    return scan.found;
}

/* ---- changed_paths: names from the inodes' own INODE_REF items, directories looked up once --------- */

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} Bytes;

static int bytes_add(Bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *p = PyMem_Realloc(b->p, cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

/* Directory inode -> its path (in `arena`), open addressing; inode 0 marks a free slot. */
typedef struct {
    uint64_t inode;
    size_t offset, len;
} DirSlot;

typedef struct {
    DirSlot *slots;
    size_t mask, used;
    Bytes arena;
} DirPaths;

static DirSlot *dir_slot(DirPaths *dirs, uint64_t inode)
{
    size_t i = (size_t)(inode * 0x9E3779B97F4A7C15ull) & dirs->mask;
    while (dirs->slots[i].inode != 0 && dirs->slots[i].inode != inode)
        i = (i + 1) & dirs->mask;
    return &dirs->slots[i];
}

static int dir_insert(DirPaths *dirs, uint64_t inode, const Bytes *path)
{
    if ((dirs->used + 1) * 2 > dirs->mask + 1) {
        DirPaths grown = {.mask = dirs->mask * 2 + 1, .used = dirs->used, .arena = dirs->arena};
        grown.slots = PyMem_Calloc(grown.mask + 1, sizeof(DirSlot));
        if (grown.slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i <= dirs->mask; i++)
            if (dirs->slots[i].inode != 0)
                *dir_slot(&grown, dirs->slots[i].inode) = dirs->slots[i];
        PyMem_Free(dirs->slots);
        *dirs = grown;
    }
    DirSlot *slot = dir_slot(dirs, inode);
    *slot = (DirSlot){.inode = inode, .offset = dirs->arena.len, .len = path->len};
    dirs->used++;
    return bytes_add(&dirs->arena, path->p, path->len);
}

typedef struct {
    Written written;
    int fd;
    SearchArgs *lookup; /* for the child's directories: the origin's lookups use written.lookup */
    DirPaths dirs;
    Bytes path;         /* scratch for one path */
    Bytes steps;        /* scratch for dir_path: Steps from a directory up */
    /* The inode whose names are being gathered (inode 0: none). */
    uint64_t inode;
    uint32_t expected, count;
    Bytes names;        /* (parent u64, length u16, name) each */
    PyObject *paths, *unresolved;
} PathScan;

/* One step up from a directory not known yet: the directory and its name in its parent. */
typedef struct {
    uint64_t dir;
    uint16_t length;
    char name[NAME_MAX];
} Step;

/* Its one name (a directory has no other) is its INODE_REF, keyed by its parent; returns the parent, 0 on error. */
static uint64_t dir_name(PathScan *scan, uint64_t dir, Step *step)
{
    struct btrfs_ioctl_search_key *key = &scan->lookup->key;
    memset(key, 0, sizeof(*key));
    key->min_objectid = key->max_objectid = dir;
    key->min_type = key->max_type = BTRFS_INODE_REF_KEY;
    key->max_offset = UINT64_MAX;
    key->max_transid = UINT64_MAX;
    key->nr_items = 1;
    scan->lookup->buf_size = LOOKUP_BUFFER;
    if (ioctl(scan->fd, BTRFS_IOC_TREE_SEARCH_V2, scan->lookup) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return 0;
    }
    struct btrfs_ioctl_search_header header;
    struct btrfs_inode_ref ref;
    memcpy(&header, scan->lookup->buf, sizeof(header));
    const char *data = (const char *)scan->lookup->buf + sizeof(header);
    if (key->nr_items == 0 || header.objectid != dir || header.type != BTRFS_INODE_REF_KEY
        || header.len < sizeof(ref)) {
        PyErr_Format(PyExc_OSError, "directory inode %llu has no name", (unsigned long long)dir);
        return 0;
    }
    memcpy(&ref, data, sizeof(ref));
    step->dir = dir;
    step->length = le16toh(ref.name_len);
    if (sizeof(ref) + step->length > header.len || step->length > NAME_MAX) {
        PyErr_Format(PyExc_OSError, "directory inode %llu has a bad name item", (unsigned long long)dir);
        return 0;
    }
    memcpy(step->name, data + sizeof(ref), step->length);
    return header.offset;
}

/* Put the path of directory `dir` in scan->path (replacing it). 0, or -1 with an exception set.
 * Walks up to the root or a directory already known (without recursion: trees may be deeper than any
 * stack), then makes and remembers the path of each directory met on the way down. */
static int dir_path(PathScan *scan, uint64_t dir)
{
    scan->path.len = 0;
    scan->steps.len = 0;
    while (dir != BTRFS_FIRST_FREE_OBJECTID) {
        const DirSlot *slot = dir_slot(&scan->dirs, dir);
        if (slot->inode == dir) {
            if (bytes_add(&scan->path, scan->dirs.arena.p + slot->offset, slot->len) < 0)
                return -1;
            break;
        }
        Step step;
        dir = dir_name(scan, dir, &step);
        if (dir == 0 || bytes_add(&scan->steps, &step, sizeof(step)) < 0)
            return -1;
    }
    for (size_t end = scan->steps.len; end > 0; end -= sizeof(Step)) {
        Step step;
        memcpy(&step, scan->steps.p + end - sizeof(Step), sizeof(step));
        if ((scan->path.len > 0 && bytes_add(&scan->path, "/", 1) < 0)
            || bytes_add(&scan->path, step.name, step.length) < 0 || dir_insert(&scan->dirs, step.dir, &scan->path) < 0)
            return -1;
    }
    return 0;
}

static int emit_path(PathScan *scan)
{
    PyObject *text = PyUnicode_DecodeFSDefaultAndSize(scan->path.p != NULL ? scan->path.p : "",
                                                      (Py_ssize_t)scan->path.len);
    if (text == NULL)
        return -1;
    int rc = PyList_Append(scan->paths, text);
    Py_DECREF(text);
    return rc;
}

/* The gathered inode is complete: its paths, or (names missing: in leaves not written) its number. */
static int finish_inode(PathScan *scan)
{
    uint64_t inode = scan->inode;
    if (inode == 0)
        return 0;
    scan->inode = 0;
    if (inode == BTRFS_FIRST_FREE_OBJECTID) { /* the root: its only ref is ".." to itself */
        scan->path.len = 0;
        return emit_path(scan);
    }
    if (scan->count != scan->expected) {
        PyObject *number = PyLong_FromUnsignedLongLong(inode);
        if (number == NULL)
            return -1;
        int rc = PyList_Append(scan->unresolved, number);
        Py_DECREF(number);
        return rc;
    }
    for (size_t pos = 0; pos < scan->names.len;) {
        uint64_t parent;
        uint16_t length;
        memcpy(&parent, scan->names.p + pos, sizeof(parent));
        memcpy(&length, scan->names.p + pos + sizeof(parent), sizeof(length));
        pos += sizeof(parent) + sizeof(length);
        if (dir_path(scan, parent) < 0)
            return -1;
        if ((parent != BTRFS_FIRST_FREE_OBJECTID && bytes_add(&scan->path, "/", 1) < 0)
            || bytes_add(&scan->path, scan->names.p + pos, length) < 0 || emit_path(scan) < 0)
            return -1;
        pos += length;
    }
    return 0;
}

static int add_name(PathScan *scan, uint64_t parent, const char *name, uint16_t length)
{
    scan->count++;
    return bytes_add(&scan->names, &parent, sizeof(parent)) < 0 || bytes_add(&scan->names, &length, sizeof(length)) < 0
                   || bytes_add(&scan->names, name, length) < 0
               ? -1
               : 0;
}

/* The names in one INODE_REF (parent in the key) or INODE_EXTREF (parent in each entry) item. */
static int add_names(PathScan *scan, const struct btrfs_ioctl_search_header *header, const char *data)
{
    for (size_t pos = 0; pos < header->len;) {
        uint64_t parent = header->offset;
        uint16_t length;
        if (header->type == BTRFS_INODE_REF_KEY) {
            struct btrfs_inode_ref ref;
            if (pos + sizeof(ref) > header->len)
                break;
            memcpy(&ref, data + pos, sizeof(ref));
            length = le16toh(ref.name_len);
            pos += sizeof(ref);
        } else {
            struct btrfs_inode_extref ref;
            if (pos + sizeof(ref) > header->len)
                break;
            memcpy(&ref, data + pos, sizeof(ref));
            parent = le64toh(ref.parent_objectid);
            length = le16toh(ref.name_len);
            pos += sizeof(ref);
        }
        if (pos + length > header->len)
            break;
        if (add_name(scan, parent, data + pos, length) < 0)
            return -1;
        pos += length;
    }
    return 0;
}

static int collect_names(void *state, const struct btrfs_ioctl_search_header *header, const char *data)
{
    PathScan *scan = state;
    if (header->objectid == scan->inode) {
        if (header->type == BTRFS_INODE_REF_KEY || header->type == BTRFS_INODE_EXTREF_KEY)
            return add_names(scan, header, data);
        return 0;
    }
    struct btrfs_inode_item item;
    int written = written_inode(&scan->written, header, data, &item);
    if (written <= 0)
        return written;
    if (finish_inode(scan) < 0)
        return -1;
    scan->inode = header->objectid;
    scan->count = 0;
    scan->names.len = 0;
    /* A directory has one name (btrfs keeps its link count at 1); a file one per link. */
    scan->expected = S_ISDIR(le32toh(item.mode)) ? 1 : le32toh(item.nlink);
    return 0;
}

static PyObject *changed_paths(PyObject *Py_UNUSED(module), PyObject *py_args)
{
    PathScan scan = {.written.origin_fd = -1};
    unsigned long long since;
    if (!PyArg_ParseTuple(py_args, "iKi:changed_paths", &scan.fd, &since, &scan.written.origin_fd))
        return NULL;
    scan.written.since = since;
    PyObject *result = NULL;
    scan.written.lookup = search_args_new(LOOKUP_BUFFER);
    scan.lookup = scan.written.lookup != NULL ? search_args_new(LOOKUP_BUFFER) : NULL;
    scan.dirs.mask = 1023;
    scan.dirs.slots = scan.lookup != NULL ? PyMem_Calloc(scan.dirs.mask + 1, sizeof(DirSlot)) : NULL;
    if (scan.dirs.slots == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    scan.paths = PyList_New(0);
    scan.unresolved = PyList_New(0);
    if (scan.paths == NULL || scan.unresolved == NULL || search_written(scan.fd, since, collect_names, &scan) < 0
        || finish_inode(&scan) < 0)
        goto done;
    result = PyTuple_Pack(2, scan.paths, scan.unresolved);
done:
    Py_XDECREF(scan.paths);
    Py_XDECREF(scan.unresolved);
    PyMem_Free(scan.dirs.slots);
    PyMem_Free(scan.dirs.arena.p);
    PyMem_Free(scan.path.p);
    PyMem_Free(scan.steps.p);
    PyMem_Free(scan.names.p);
    PyMem_Free(scan.lookup);
    PyMem_Free(scan.written.lookup);
    return result;
}

/* ---- inode_paths ---------------------------------------------------------------------------------- */

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
    {"changed_paths", changed_paths, METH_VARARGS,
     "changed_paths(fd, since, origin_fd) -> (paths, unresolved): the paths (relative, '' for the root) of "
     "changed_inodes(fd, since, origin_fd), from the name items in the leaves searched; `unresolved` lists "
     "the inodes whose names were not all there."},
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
