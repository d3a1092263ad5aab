/* drivebay.archive._tarapply: apply an uncompressed layer tar to a directory, without writing outside it.
 *
 * The whole apply is here, in C, because per-member work in Python (or even libarchive's generic per-entry
 * machinery) cost more CPU than GNU tar's whole run. apply.py wraps it and turns the reported errors into
 * drivebay's exceptions; its docstring is the contract.
 *
 * Safety: every member's parent is reached from the root fd one component at a time with
 * openat(O_NOFOLLOW | O_DIRECTORY), so a symlink among the parents stops the apply instead of being
 * followed. The chain of directory fds of the last member's parent is kept (a stack): tars list a
 * directory's members together, so most members need no open at all, and none needs a path walk.
 * Members are created relative to their parent's fd with O_EXCL | O_NOFOLLOW (or mknodat, symlinkat,
 * linkat, which never follow the last component either); a name in the way is removed first.
 *
 * Threads: the GIL is released for the whole apply and taken back only to call the stream's readinto,
 * which fills one reused 1 MiB buffer. Nothing is global: two applies may run at once in two threads.
 * The umask is read from /proc (never set) and the working directory is never changed.
 *
 * Errors: a problem with the tar or the disk is reported as (kind, message) and apply.py raises the
 * matching drivebay exception; an exception raised by the stream propagates as it is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "growbuf.h"

enum { KIND_NONE, KIND_UNSAFE, KIND_INVALID, KIND_IO, KIND_NOMEM };
enum { WH_DELETE, WH_OVERLAY, WH_AUFS };

#define CHUNK (1 << 20)
#define BLOCK 512
/* A PAX header or GNU long name larger than this is corruption (xattr values are at most 64 KiB). */
#define MAX_EXTENSION (16 << 20)
#define MAX_DROP_PREFIXES 16
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define FILE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)
#define WHITEOUT_PREFIX ".wh."
#define AUFS_META_PREFIX ".wh..wh."
#define OPAQUE_MARKER ".wh..wh..opq"

/* A normalized relative path: components joined by '/' in `s` (for messages and lookups) and by NUL in
 * `z` (so that each component is a C string for the *at calls); ends[i] is where component i ends. */
typedef struct {
    Bytes s, z;
    size_t *ends;
    size_t n, cap;
} Path;

static size_t path_start(const Path *p, size_t i) { return i ? p->ends[i - 1] + 1 : 0; }

static const char *path_component(const Path *p, size_t i) { return p->z.data + path_start(p, i); }

static void path_clear(Path *p)
{
    p->n = p->s.len = p->z.len = 0;
    if (p->s.data)
        p->s.data[0] = p->z.data[0] = '\0';
}

static int path_push(Path *p, const char *comp, size_t len)
{
    if (!GROW(p->ends, p->cap, p->n + 1, 16))
        return -1;
    if (p->n && (!bytes_append(&p->s, "/", 1) || !bytes_append(&p->z, "", 1)))
        return -1;
    if (!bytes_append(&p->s, comp, len) || !bytes_append(&p->z, comp, len))
        return -1;
    p->ends[p->n++] = p->s.len;
    return 0;
}

static void path_truncate(Path *p, size_t n)
{
    p->n = n;
    p->s.len = p->z.len = n ? p->ends[n - 1] : 0;
    if (p->s.data)
        p->s.data[p->s.len] = p->z.data[p->z.len] = '\0';
}

/* Length of the '/'-joined string of the first n components. */
static size_t path_prefix_len(const Path *p, size_t n) { return n ? p->ends[n - 1] : 0; }

static void path_free(Path *p)
{
    free(p->s.data);
    free(p->z.data);
    free(p->ends);
}

/* ---- a set of strings (open addressing) ------------------------------------------------------------ */

typedef struct {
    size_t off, len;
    uint64_t hash;
} StrEntry;

typedef struct {
    uint32_t index; /* entry index + 1; 0 is empty */
    uint32_t tag;   /* the hash's high half: most probes end here, without reading the entry */
} Slot;

typedef struct {
    Bytes arena;
    StrEntry *entries;
    size_t count, cap;
    Slot *slots;
    size_t nslots; /* a power of two */
} StrSet;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static long strset_lookup(const StrSet *set, const char *s, size_t n, uint64_t h)
{
    if (!set->nslots)
        return -1;
    for (size_t i = h & (set->nslots - 1);; i = (i + 1) & (set->nslots - 1)) {
        Slot slot = set->slots[i];
        if (!slot.index)
            return -1;
        if (slot.tag != (uint32_t)(h >> 32))
            continue;
        const StrEntry *e = &set->entries[slot.index - 1];
        if (e->len == n && memcmp(set->arena.data + e->off, s, n) == 0)
            return (long)slot.index - 1;
    }
}

static long strset_find(const StrSet *set, const char *s, size_t n) { return strset_lookup(set, s, n, fnv1a(s, n)); }

static void strset_place(StrSet *set, size_t index)
{
    uint64_t h = set->entries[index].hash;
    for (size_t i = h & (set->nslots - 1);; i = (i + 1) & (set->nslots - 1)) {
        if (!set->slots[i].index) {
            set->slots[i] = (Slot){(uint32_t)(index + 1), (uint32_t)(h >> 32)};
            return;
        }
    }
}

/* The index of `s`, added if new; -1 when out of memory. */
static long strset_add(StrSet *set, const char *s, size_t n)
{
    uint64_t h = fnv1a(s, n);
    long found = strset_lookup(set, s, n, h);
    if (found >= 0)
        return found;
    if ((set->count + 1) * 2 > set->nslots) {
        size_t nslots = set->nslots ? set->nslots * 2 : 1024;
        Slot *slots = calloc(nslots, sizeof *slots);
        if (!slots)
            return -1;
        free(set->slots);
        set->slots = slots;
        set->nslots = nslots;
        for (size_t i = 0; i < set->count; i++)
            strset_place(set, i);
    }
    if (!GROW(set->entries, set->cap, set->count + 1, 256))
        return -1;
    size_t off = set->arena.len;
    if (!bytes_append(&set->arena, s, n) || !bytes_append(&set->arena, "", 1))
        return -1;
    set->entries[set->count] = (StrEntry){off, n, h};
    strset_place(set, set->count);
    return (long)set->count++;
}

static const char *strset_string(const StrSet *set, size_t index) { return set->arena.data + set->entries[index].off; }

static void strset_free(StrSet *set)
{
    free(set->arena.data);
    free(set->entries);
    free(set->slots);
}

/* ---- state of one apply ------------------------------------------------------------------------------ */

typedef struct {
    unsigned mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
    int live; /* 0 once the directory was removed again */
} DirMeta;

typedef struct {
    size_t key, key_len, value, value_len; /* offsets into the member's xattr buffer */
} Xattr;

typedef struct {
    char type; /* '0' regular, '1'..'6' as in tar */
    Bytes name, link;
    unsigned mode;
    int64_t uid, gid, size;
    struct timespec mtime;
    unsigned devmajor, devminor;
    /* Set by PAX records or GNU long names, which come before the member's own header. */
    int pax_path, pax_link, long_name, long_link, pax_size, pax_uid, pax_gid, pax_mtime;
    int extended; /* an extension header was read for this member */
    int sparse;   /* GNU.sparse PAX records: the data is a sparse map and runs, not the file's bytes */
    Bytes xattr_data;
    Xattr *xattrs;
    size_t nxattrs, xattr_cap;
} Member;

/* A tar-split being made (see split_doc): the records written so far, and what decides whether the
 * files' bytes can be read back from the layer unchanged. */
typedef struct {
    int fd;
    Bytes out;          /* records not yet written to fd */
    size_t raw_at;    /* offset in out of the open raw record's length field; NO_RECORD if none */
    uint64_t total;   /* bytes of the stream consumed */
    StrSet names;     /* every member's path */
    Bytes nondirs;      /* members that are not directories, NUL-separated */
    Bytes files;        /* regular files whose bytes are read back from the layer, NUL-separated */
    StrSet file_dirs; /* every directory above one of `files` */
    StrSet opaque;    /* directories with an opaque marker */
    Bytes victims;      /* paths whiteouts delete, NUL-separated */
    int exact;        /* 0 once the tar may remove or replace one of `files` itself */
    int err;          /* errno of a failed write to fd */
} Splitter;

#define SPLIT_MAGIC "DBSPLIT1"
#define NO_RECORD SIZE_MAX
#define RAW_RECORD_MAX (64u << 20)
#define SPLIT_FLUSH (1u << 20)

typedef struct {
    /* The stream and its buffer: bytes [pos, len) of buf are read and not yet used. */
    PyObject *readinto, *read, *array, *view;
    unsigned char *buf;
    size_t len, pos;
    PyThreadState *saved; /* the released GIL */
    int py_error;         /* the stream raised; its exception is set */

    const char *root;
    int root_fd, root_sgid;
    int whiteouts, chown, umask;
    uid_t euid;
    gid_t egid;
    const char *drop[MAX_DROP_PREFIXES];
    size_t drop_len[MAX_DROP_PREFIXES], ndrop;
    const char *opaque_xattr;

    /* The chain of directory fds from the root to the last directory used. */
    Path stack;
    int *fds;
    unsigned char *sgid;
    size_t fds_cap, sgid_cap;

    Member m;
    Path parts, target;
    Bytes scratch, ext;
    StrSet written;   /* paths this tar wrote (for opaque directories in DELETE) */
    StrSet dir_paths; /* directories whose metadata is set at the end; DirMeta by the same index */
    DirMeta *dir_meta;
    size_t dir_meta_cap;
    long long size;
    uint64_t data_left; /* of the current member */

    int err_kind;
    char *err_msg;

    Splitter *split; /* set when making a tar-split instead of applying */
    int in_file;     /* the bytes being read are a file's, which a tar-split leaves out */
} Applier;

static int fail(Applier *a, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first error; always returns -1. */
static int fail(Applier *a, int kind, const char *fmt, ...)
{
    if (a->err_kind)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&a->err_msg, fmt, ap) < 0) {
        a->err_msg = NULL;
        kind = KIND_NOMEM;
    }
    va_end(ap);
    a->err_kind = kind;
    return -1;
}

static int fail_nomem(Applier *a) { return fail(a, KIND_NOMEM, "out of memory"); }

static int fail_io(Applier *a, const char *entry, int err)
{
    char text[256];
    return fail(a, KIND_IO, "cannot write layer tar entry '%s' into %s (%s)", entry, a->root,
                strerror_r(err, text, sizeof text));
}

static int fail_truncated(Applier *a, const char *where)
{
    return fail(a, KIND_INVALID, "the layer tar ends in the middle of a %s; the stream is truncated", where);
}

/* ---- tar-split records ---------------------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Writes the finished records to the split's fd; -1 (with sp->err) if the write fails. */
static int split_flush(Splitter *sp)
{
    size_t done = 0;
    while (done < sp->out.len) {
        ssize_t n = write(sp->fd, sp->out.data + done, sp->out.len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            sp->err = errno;
            return -1;
        }
        done += (size_t)n;
    }
    sp->out.len = 0;
    sp->raw_at = NO_RECORD;
    return 0;
}

/* Adds bytes of the stream that the tar-split keeps (headers, padding, data that is not a file's). */
static int split_raw(Applier *a, const unsigned char *p, size_t n)
{
    Splitter *sp = a->split;
    sp->total += n;
    while (n) {
        if (sp->raw_at == NO_RECORD) {
            if (!bytes_reserve(&sp->out, 5))
                return fail_nomem(a);
            sp->out.data[sp->out.len] = 'R';
            sp->raw_at = sp->out.len + 1;
            put_u32((unsigned char *)sp->out.data + sp->raw_at, 0);
            sp->out.len += 5;
        }
        unsigned char *field = (unsigned char *)sp->out.data + sp->raw_at;
        uint32_t have = (uint32_t)field[0] | (uint32_t)field[1] << 8 | (uint32_t)field[2] << 16 |
                        (uint32_t)field[3] << 24;
        size_t take = n < RAW_RECORD_MAX - have ? n : RAW_RECORD_MAX - have;
        if (!bytes_append(&sp->out, p, take))
            return fail_nomem(a);
        put_u32((unsigned char *)sp->out.data + sp->raw_at, have + (uint32_t)take);
        if (have + take == RAW_RECORD_MAX)
            sp->raw_at = NO_RECORD;
        p += take;
        n -= take;
    }
    if (sp->out.len >= SPLIT_FLUSH && split_flush(sp) < 0)
        return fail(a, KIND_IO, "cannot write the layer's tar-split (%s)", strerror(sp->err));
    return 0;
}

/* ---- reading the stream -------------------------------------------------------------------------------- */

/* Reads more of the stream after the buffer's `len` bytes: the count read, 0 at its end, -1 if it raised. */
static Py_ssize_t reader_fill(Applier *a)
{
    PyEval_RestoreThread(a->saved);
    size_t room = CHUNK - a->len;
    Py_ssize_t n = -1;
    PyObject *result = NULL;
    if (a->readinto) {
        PyObject *slice = PySequence_GetSlice(a->view, (Py_ssize_t)a->len, CHUNK);
        if (slice) {
            result = PyObject_CallOneArg(a->readinto, slice);
            Py_DECREF(slice);
        }
        if (result == Py_None) {
            n = 0; /* a non-blocking stream with nothing to read: the end, as for io.RawIOBase.read */
        } else if (result) {
            n = PyLong_AsSsize_t(result);
            if (n == -1 && PyErr_Occurred())
                n = -1;
            else if (n < 0 || (size_t)n > room) {
                PyErr_Format(PyExc_ValueError, "the layer stream's readinto returned %zd for %zu bytes", n, room);
                n = -1;
            }
        }
    } else {
        result = PyObject_CallFunction(a->read, "n", (Py_ssize_t)room);
        Py_buffer view;
        if (result && PyObject_GetBuffer(result, &view, PyBUF_SIMPLE) == 0) {
            if ((size_t)view.len > room)
                PyErr_Format(PyExc_ValueError, "the layer stream's read returned %zd bytes for %zu", view.len, room);
            else {
                memcpy(a->buf + a->len, view.buf, (size_t)view.len);
                n = view.len;
            }
            PyBuffer_Release(&view);
        }
    }
    Py_XDECREF(result);
    a->saved = PyEval_SaveThread();
    if (n < 0) {
        a->py_error = 1;
        return -1;
    }
    a->len += (size_t)n;
    return n;
}

/* Makes `n` (at most BLOCK) bytes readable at pos: 1, 0 if the stream ends first, -1 if it raised. */
static int reader_ensure(Applier *a, size_t n)
{
    if (a->len - a->pos >= n)
        return 1;
    memmove(a->buf, a->buf + a->pos, a->len - a->pos);
    a->len -= a->pos;
    a->pos = 0;
    while (a->len < n) {
        Py_ssize_t got = reader_fill(a);
        if (got <= 0)
            return (int)got;
    }
    return 1;
}

/* Points *p at up to `want` next bytes of the stream: their count, 0 at its end, -1 if it raised. */
static Py_ssize_t next_chunk(Applier *a, uint64_t want, const unsigned char **p)
{
    if (a->pos == a->len) {
        a->pos = a->len = 0;
        Py_ssize_t got = reader_fill(a);
        if (got <= 0)
            return got;
    }
    size_t avail = a->len - a->pos;
    if (avail > want)
        avail = (size_t)want;
    *p = a->buf + a->pos;
    a->pos += avail;
    if (a->split) {
        if (a->in_file)
            a->split->total += avail;
        else if (split_raw(a, *p, avail) < 0)
            return -1;
    }
    return (Py_ssize_t)avail;
}

/* Skips `n` bytes; `where` names what a truncation cuts ("header", "member"). */
static int skip_bytes(Applier *a, uint64_t n, const char *where)
{
    while (n) {
        const unsigned char *p;
        Py_ssize_t got = next_chunk(a, n, &p);
        if (got < 0)
            return -1;
        if (got == 0)
            return fail_truncated(a, where);
        n -= (uint64_t)got;
    }
    return 0;
}

static uint64_t padding(uint64_t size) { return (BLOCK - size % BLOCK) % BLOCK; }

/* Reads an extension header's data (and skips its padding) into a->ext, NUL-terminated. */
static int read_extension(Applier *a, int64_t size)
{
    if (size > MAX_EXTENSION)
        return fail(a, KIND_INVALID,
                    "a layer tar has an extended header of %lld bytes; the stream is corrupt", (long long)size);
    a->ext.len = 0;
    if (!bytes_reserve(&a->ext, (size_t)size))
        return fail_nomem(a);
    uint64_t left = (uint64_t)size;
    while (left) {
        const unsigned char *p;
        Py_ssize_t got = next_chunk(a, left, &p);
        if (got < 0)
            return -1;
        if (got == 0)
            return fail_truncated(a, "header");
        memcpy(a->ext.data + a->ext.len, p, (size_t)got);
        a->ext.len += (size_t)got;
        left -= (uint64_t)got;
    }
    a->ext.data[a->ext.len] = '\0';
    return skip_bytes(a, padding((uint64_t)size), "header");
}

/* Drains the stream, as moby does, so that callers hashing it see every byte. */
static int drain(Applier *a)
{
    if (a->split && split_raw(a, a->buf + a->pos, a->len - a->pos) < 0)
        return -1;
    for (;;) {
        a->pos = a->len = 0;
        Py_ssize_t got = reader_fill(a);
        if (got <= 0)
            return (int)got;
        if (a->split && split_raw(a, a->buf, (size_t)got) < 0)
            return -1;
    }
}

/* ---- parsing headers -------------------------------------------------------------------------------- */

static const char *show_field(const unsigned char *f, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && f[i] && o + 5 < size; i++)
        o += (size_t)snprintf(out + o, size - o, (f[i] >= 32 && f[i] < 127 && f[i] != '\\') ? "%c" : "\\x%02x", f[i]);
    out[o] = '\0';
    return out;
}

/* A numeric header field: octal digits (spaces around, NUL-ended) or GNU base-256. 0 if it is not a number. */
static int parse_number(const unsigned char *f, size_t n, int64_t *out)
{
    if (f[0] & 0x80) {
        /* Base-256, big-endian two's complement below the marker bit: it must fit 64 bits. */
        int negative = (f[0] & 0x40) != 0;
        uint64_t v = negative ? ~(uint64_t)0 : 0;
        unsigned char fill = negative ? 0xff : 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char byte = i == 0 ? (unsigned char)(negative ? f[0] | 0x80 : f[0] & 0x7f) : f[i];
            if (i < n - 8) {
                if (byte != fill)
                    return 0;
                continue;
            }
            v = (v << 8) | byte;
        }
        int64_t value = (int64_t)v;
        if ((value < 0) != negative)
            return 0;
        *out = value;
        return 1;
    }
    size_t i = 0, end = 0;
    while (end < n && f[end])
        end++;
    while (i < end && f[i] == ' ')
        i++;
    while (end > i && f[end - 1] == ' ')
        end--;
    uint64_t v = 0;
    for (; i < end; i++) {
        if (f[i] < '0' || f[i] > '7' || v > (UINT64_C(1) << 60))
            return 0;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    if (v > INT64_MAX)
        return 0;
    *out = (int64_t)v;
    return 1;
}

static int header_number(Applier *a, const unsigned char *block, size_t off, size_t n, const char *what,
                         int64_t *out)
{
    if (parse_number(block + off, n, out))
        return 0;
    char shown[64];
    return fail(a, KIND_INVALID, "a layer tar header has a bad %s field '%s'; the stream is corrupt", what,
                show_field(block + off, n, shown, sizeof shown));
}

static int checksum_ok(const unsigned char *block)
{
    int64_t stored;
    if (!parse_number(block + 148, 8, &stored))
        return 0;
    /* The checksum is the byte sum with its own field read as eight spaces; some old writers summed
     * signed chars. */
    int64_t unsigned_sum = 8 * ' ', signed_sum = 8 * ' ';
    for (size_t i = 0; i < BLOCK; i++) {
        if (i >= 148 && i < 156)
            continue;
        unsigned_sum += block[i];
        signed_sum += (signed char)block[i];
    }
    return stored == unsigned_sum || stored == signed_sum;
}

static int parse_decimal(const char *s, size_t n, int64_t *out)
{
    if (!n)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (uint64_t)INT64_MAX / 10)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > INT64_MAX)
        return 0;
    *out = (int64_t)v;
    return 1;
}

/* A PAX time, "[-]SECONDS[.FRACTION]", as a normalized timespec. */
static int parse_pax_time(const char *s, size_t n, struct timespec *out)
{
    int negative = n && s[0] == '-';
    if (negative) {
        s++;
        n--;
    }
    size_t dot = 0;
    while (dot < n && s[dot] != '.')
        dot++;
    int64_t whole = 0;
    if (dot && !parse_decimal(s, dot, &whole))
        return 0;
    long nsec = 0, scale = 100000000;
    for (size_t i = dot + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        nsec += (s[i] - '0') * scale;
        scale /= 10;
    }
    if (negative) {
        whole = -whole;
        if (nsec) {
            whole -= 1;
            nsec = 1000000000 - nsec;
        }
    }
    out->tv_sec = (time_t)whole;
    out->tv_nsec = nsec;
    return 1;
}

/* The value of a name-like PAX record ends at its first NUL, as in libarchive and bsdtar. */
static size_t c_length(const char *s, size_t n)
{
    const char *nul = memchr(s, '\0', n);
    return nul ? (size_t)(nul - s) : n;
}

static int pax_record(Applier *a, const char *key, size_t key_len, const char *value, size_t value_len)
{
    Member *m = &a->m;
#define KEY_IS(k) (key_len == sizeof(k) - 1 && memcmp(key, k, key_len) == 0)
    int64_t number;
    if (KEY_IS("path")) {
        m->pax_path = 1;
        return !bytes_set(&m->name, value, c_length(value, value_len)) ? fail_nomem(a) : 0;
    }
    if (KEY_IS("linkpath")) {
        m->pax_link = 1;
        return !bytes_set(&m->link, value, c_length(value, value_len)) ? fail_nomem(a) : 0;
    }
    if (KEY_IS("size") || KEY_IS("uid") || KEY_IS("gid")) {
        if (!parse_decimal(value, value_len, &number))
            return fail(a, KIND_INVALID, "a layer tar has a bad PAX %.*s '%.*s'; the stream is corrupt", (int)key_len,
                        key, (int)c_length(value, value_len), value);
        if (key[0] == 's')
            m->size = number, m->pax_size = 1;
        else if (key[0] == 'u')
            m->uid = number, m->pax_uid = 1;
        else
            m->gid = number, m->pax_gid = 1;
        return 0;
    }
    if (KEY_IS("mtime")) {
        if (!parse_pax_time(value, value_len, &m->mtime))
            return fail(a, KIND_INVALID, "a layer tar has a bad PAX mtime '%.*s'; the stream is corrupt",
                        (int)c_length(value, value_len), value);
        m->pax_mtime = 1;
        return 0;
    }
#undef KEY_IS
    static const char sparse_prefix[] = "GNU.sparse.";
    if (key_len > sizeof sparse_prefix - 1 && memcmp(key, sparse_prefix, sizeof sparse_prefix - 1) == 0)
        m->sparse = 1;
    static const char xattr_prefix[] = "SCHILY.xattr.";
    size_t plen = sizeof xattr_prefix - 1;
    if (key_len > plen && memcmp(key, xattr_prefix, plen) == 0) {
        if (!GROW(m->xattrs, m->xattr_cap, m->nxattrs + 1, 8))
            return fail_nomem(a);
        Xattr *x = &m->xattrs[m->nxattrs];
        x->key_len = c_length(key + plen, key_len - plen);
        x->key = m->xattr_data.len;
        if (!bytes_append(&m->xattr_data, key + plen, x->key_len) || !bytes_append(&m->xattr_data, "", 1))
            return fail_nomem(a);
        x->value = m->xattr_data.len;
        x->value_len = value_len;
        if (!bytes_append(&m->xattr_data, value, value_len))
            return fail_nomem(a);
        m->nxattrs++;
    }
    return 0; /* other keys (atime, uname, GNU.sparse...) carry nothing a layer applies */
}

/* Parses "LENGTH KEY=VALUE\n" records from a->ext. */
static int parse_pax(Applier *a)
{
    const char *data = a->ext.data;
    size_t len = a->ext.len, pos = 0;
    while (pos < len) {
        const char *space = memchr(data + pos, ' ', len - pos);
        int64_t length;
        if (!space || !parse_decimal(data + pos, (size_t)(space - data) - pos, &length))
            return fail(a, KIND_INVALID, "a layer tar has a malformed PAX header; the stream is corrupt");
        size_t body = (size_t)(space - data) + 1;
        if (length <= 0 || (uint64_t)length > len - pos || pos + (size_t)length <= body ||
            data[pos + (size_t)length - 1] != '\n')
            return fail(a, KIND_INVALID, "a layer tar has a malformed PAX record; the stream is corrupt");
        size_t end = pos + (size_t)length - 1;
        const char *eq = memchr(data + body, '=', end - body);
        if (!eq)
            return fail(a, KIND_INVALID, "a layer tar has a malformed PAX record; the stream is corrupt");
        size_t key_len = (size_t)(eq - data) - body;
        if (pax_record(a, data + body, key_len, eq + 1, end - (size_t)(eq - data) - 1) < 0)
            return -1;
        pos += (size_t)length;
    }
    return 0;
}

static void member_reset(Member *m)
{
    m->pax_path = m->pax_link = m->long_name = m->long_link = 0;
    m->pax_size = m->pax_uid = m->pax_gid = m->pax_mtime = m->extended = m->sparse = 0;
    m->nxattrs = 0;
    m->xattr_data.len = 0;
}

/* Fills a->m from a member's own header block (after any PAX headers and GNU long names). */
static int decode_member(Applier *a, const unsigned char *block, int64_t size)
{
    Member *m = &a->m;
    if (!m->pax_path && !m->long_name) {
        m->name.len = 0;
        if (memcmp(block + 257, "ustar\0" "00", 8) == 0 && block[345]) {
            if (!bytes_append(&m->name, block + 345, strnlen((const char *)block + 345, 155)) ||
                !bytes_append(&m->name, "/", 1))
                return fail_nomem(a);
        }
        if (!bytes_append(&m->name, block, strnlen((const char *)block, 100)))
            return fail_nomem(a);
    }
    if (!m->pax_link && !m->long_link && !bytes_set(&m->link, block + 157, strnlen((const char *)block + 157, 100)))
        return fail_nomem(a);
    char type = (char)block[156];
    if (type == '\0' || type == '7')
        type = m->name.len && m->name.data[m->name.len - 1] == '/' ? '5' : '0';
    else if (type < '0' || type > '6') {
        char shown[8];
        return fail(a, KIND_INVALID, "layer tar member '%s' has unsupported type b'%s'; rebuild the layer", m->name.data,
                    show_field(block + 156, 1, shown, sizeof shown));
    }
    m->type = type;
    int64_t mode, number;
    if (header_number(a, block, 100, 8, "mode", &mode) < 0)
        return -1;
    m->mode = (unsigned)(mode & 07777);
    if (!m->pax_uid && header_number(a, block, 108, 8, "uid", &m->uid) < 0)
        return -1;
    if (!m->pax_gid && header_number(a, block, 116, 8, "gid", &m->gid) < 0)
        return -1;
    if (!m->pax_mtime) {
        if (header_number(a, block, 136, 12, "mtime", &number) < 0)
            return -1;
        m->mtime.tv_sec = (time_t)number;
        m->mtime.tv_nsec = 0;
    }
    /* Only regular files carry data; POSIX says to ignore the size field of the other types. */
    if (type != '0')
        m->size = 0;
    else if (!m->pax_size)
        m->size = size;
    a->data_left = (uint64_t)m->size;
    if (m->uid < 0 || m->uid >= UINT32_MAX || m->gid < 0 || m->gid >= UINT32_MAX)
        return fail(a, KIND_INVALID, "layer tar member '%s' has an out-of-range owner %lld:%lld; rebuild the layer",
                    m->name.data, (long long)m->uid, (long long)m->gid);
    m->devmajor = m->devminor = 0;
    if (type == '3' || type == '4') {
        int64_t major, minor;
        if (header_number(a, block, 329, 8, "devmajor", &major) < 0 ||
            header_number(a, block, 337, 8, "devminor", &minor) < 0)
            return -1;
        m->devmajor = (unsigned)major;
        m->devminor = (unsigned)minor;
    }
    return 0;
}

/* Reads headers up to the next member: 1 with a->m filled, 0 at the end of the archive, -1 on error. */
static int read_header(Applier *a)
{
    static const unsigned char zero[BLOCK];
    Member *m = &a->m;
    member_reset(m);
    for (;;) {
        int rc = reader_ensure(a, BLOCK);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            /* Some writers omit the two zero blocks: a clean end between members is the end. */
            if (a->len == a->pos && !m->extended)
                return 0;
            return fail_truncated(a, "header");
        }
        const unsigned char *block = a->buf + a->pos;
        a->pos += BLOCK;
        if (a->split && split_raw(a, block, BLOCK) < 0)
            return -1;
        if (block[0] == 0 && memcmp(block, zero, BLOCK) == 0)
            return 0;
        if (!checksum_ok(block))
            return fail(a, KIND_INVALID, "a layer tar header has a bad checksum; the stream is not a tar or is corrupt");
        int64_t size;
        if (header_number(a, block, 124, 12, "size", &size) < 0)
            return -1;
        if (size < 0)
            return fail(a, KIND_INVALID, "a layer tar header has a negative size; the stream is corrupt");
        switch (block[156]) {
        case 'x':
            if (read_extension(a, size) < 0 || parse_pax(a) < 0)
                return -1;
            m->extended = 1;
            break;
        case 'g': /* global defaults (git archive's comment, for one) carry nothing a layer applies */
            if (skip_bytes(a, (uint64_t)size + padding((uint64_t)size), "header") < 0)
                return -1;
            break;
        case 'L':
        case 'K': {
            int is_name = block[156] == 'L';
            /* Copied out first: reading the extension may move the buffer under `block`. */
            if (read_extension(a, size) < 0)
                return -1;
            /* A PAX path wins over a GNU long name, whichever comes first. */
            if (!(is_name ? m->pax_path : m->pax_link)) {
                if (!bytes_set(is_name ? &m->name : &m->link, a->ext.data, strlen(a->ext.data)))
                    return fail_nomem(a);
                *(is_name ? &m->long_name : &m->long_link) = 1;
            }
            m->extended = 1;
            break;
        }
        default:
            return decode_member(a, block, size) < 0 ? -1 : 1;
        }
    }
}

/* ---- names -------------------------------------------------------------------------------------------- */

/* The components of a member name into `out`; refuses absolute names and '..'. './', empty and '.'
 * components are dropped, so './' is the root itself (no components). */
static int split_name(Applier *a, const char *name, const char *what, Path *out)
{
    if (!bytes_reserve(&out->s, 0) || !bytes_reserve(&out->z, 0))
        return fail_nomem(a);
    path_clear(out);
    if (name[0] == '/')
        return fail(a, KIND_UNSAFE, "layer tar %s '%s' is an absolute path; refusing to write outside the layer",
                    what, name);
    const char *p = name;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return fail(a, KIND_UNSAFE, "layer tar %s '%s' contains '..'; refusing to write outside the layer", what,
                        name);
        if (len && !(len == 1 && p[0] == '.') && path_push(out, p, len) < 0)
            return fail_nomem(a);
        p += len + (slash != NULL);
    }
    return 0;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* ---- the directory stack -------------------------------------------------------------------------------- */

static int stack_top_fd(const Applier *a) { return a->stack.n ? a->fds[a->stack.n - 1] : a->root_fd; }

static int stack_top_sgid(const Applier *a) { return a->stack.n ? a->sgid[a->stack.n - 1] : a->root_sgid; }

static void stack_pop_to(Applier *a, size_t depth)
{
    for (size_t i = depth; i < a->stack.n; i++)
        close(a->fds[i]);
    if (depth < a->stack.n)
        path_truncate(&a->stack, depth);
}

static int stack_push(Applier *a, const char *name, int fd, int sgid)
{
    if (!GROW(a->fds, a->fds_cap, a->stack.n + 1, 16) || !GROW(a->sgid, a->sgid_cap, a->stack.n + 1, 16))
        return fail_nomem(a);
    a->fds[a->stack.n] = fd;
    a->sgid[a->stack.n] = (unsigned char)sgid;
    return path_push(&a->stack, name, strlen(name)) < 0 ? fail_nomem(a) : 0;
}

/* How many leading components of p (of its first n) the stack shares. */
static size_t common_depth(const Path *stack, const Path *p, size_t n)
{
    size_t k = 0, limit = stack->n < n ? stack->n : n;
    while (k < limit && stack->ends[k] == p->ends[k] &&
           memcmp(stack->s.data + path_start(stack, k), p->s.data + path_start(p, k), p->ends[k] - path_start(p, k)) == 0)
        k++;
    return k;
}

#define MISSING (-2)

/* Opens directory component i of p in `parent` without following a symlink; makes it (0755) if missing
 * and `create`, else returns MISSING. *sgid tells whether it has the setgid bit (new files take its group). */
static int open_dir(Applier *a, int parent, int parent_sgid, const Path *p, size_t i, int create, const char *entry,
                    int *sgid)
{
    const char *name = path_component(p, i);
    int fd = openat(parent, name, DIR_FLAGS);
    if (fd >= 0) {
        struct stat st;
        *sgid = 0;
        if (a->chown) {
            if (fstat(fd, &st) < 0) {
                int err = errno;
                close(fd);
                return fail_io(a, entry, err);
            }
            *sgid = (st.st_mode & S_ISGID) != 0;
        }
        return fd;
    }
    int err = errno;
    if (err == ENOENT) {
        if (!create)
            return MISSING;
        if (mkdirat(parent, name, 0755) < 0)
            return fail_io(a, entry, errno);
        fd = openat(parent, name, DIR_FLAGS);
        if (fd < 0)
            return fail_io(a, entry, errno);
        *sgid = parent_sgid; /* Linux gives a new directory its parent's setgid bit */
        return fd;
    }
    if (err == ELOOP || err == ENOTDIR) {
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return fail_io(a, entry, errno);
        int len = (int)path_prefix_len(p, i + 1);
        if (S_ISLNK(st.st_mode))
            return fail(a, KIND_UNSAFE,
                        "layer tar entry '%s' has a parent '%.*s' that is a symlink; refusing to write through it",
                        entry, len, p->s.data);
        return fail(a, KIND_INVALID,
                    "layer tar entry '%s' has a parent '%.*s' that is not a directory; "
                    "the layer does not fit its parent layer",
                    entry, len, p->s.data);
    }
    return fail_io(a, entry, err);
}

/* The fd of the directory made of the first n components of p; the stack becomes that chain. Missing
 * directories are made when `create`; otherwise a missing one gives MISSING. */
static int walk_to(Applier *a, const Path *p, size_t n, int create, const char *entry)
{
    stack_pop_to(a, common_depth(&a->stack, p, n));
    for (size_t i = a->stack.n; i < n; i++) {
        int sgid = 0;
        int fd = open_dir(a, stack_top_fd(a), stack_top_sgid(a), p, i, create, entry, &sgid);
        if (fd < 0)
            return fd;
        if (stack_push(a, path_component(p, i), fd, sgid) < 0) {
            close(fd);
            return -1;
        }
    }
    return stack_top_fd(a);
}

/* Like walk_to without create, leaving the stack alone: *owned tells whether the caller closes the fd. */
static int open_path_dir(Applier *a, const Path *p, size_t n, const char *entry, int *owned)
{
    size_t k = common_depth(&a->stack, p, n);
    int fd = k ? a->fds[k - 1] : a->root_fd;
    *owned = 0;
    for (size_t i = k; i < n; i++) {
        int sgid;
        int next = open_dir(a, fd, 0, p, i, 0, entry, &sgid);
        if (*owned)
            close(fd);
        if (next < 0)
            return next;
        fd = next;
        *owned = 1;
    }
    return fd;
}

/* ---- removing what is in the way ---------------------------------------------------------------------- */

/* rm -rf of directory `name` in `parent`, never following a symlink. */
static int remove_tree(Applier *a, int parent, const char *name, const char *entry)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = openat(parent, name, DIR_FLAGS);
        if (fd < 0)
            return fail_io(a, entry, errno);
        DIR *dir = fdopendir(fd);
        if (!dir) {
            int err = errno;
            close(fd);
            return fail_io(a, entry, err);
        }
        struct dirent *e;
        errno = 0;
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
                continue;
            int is_dir = e->d_type == DT_DIR;
            if (e->d_type == DT_UNKNOWN) {
                struct stat st;
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                    int err = errno;
                    closedir(dir);
                    return fail_io(a, entry, err);
                }
                is_dir = S_ISDIR(st.st_mode);
            }
            if (is_dir ? remove_tree(a, fd, e->d_name, entry) < 0 : unlinkat(fd, e->d_name, 0) < 0) {
                int err = errno;
                closedir(dir);
                return is_dir ? -1 : fail_io(a, entry, err);
            }
            errno = 0;
        }
        int err = errno;
        closedir(dir);
        if (err)
            return fail_io(a, entry, err);
        if (unlinkat(parent, name, AT_REMOVEDIR) == 0)
            return 0;
        /* A directory listing that changes while it is read may skip names: list it again. */
        if (errno != ENOTEMPTY)
            return fail_io(a, entry, errno);
    }
    return fail_io(a, entry, ENOTEMPTY);
}

/* Drops the pending metadata of directory `path` and everything below it, after it was removed. */
static void forget_dirs_under(Applier *a, const char *path, size_t len)
{
    for (size_t i = 0; i < a->dir_paths.count; i++) {
        const StrEntry *e = &a->dir_paths.entries[i];
        const char *s = a->dir_paths.arena.data + e->off;
        if (a->dir_meta[i].live && e->len >= len && memcmp(s, path, len) == 0 &&
            (e->len == len || (len && s[len] == '/')))
            a->dir_meta[i].live = 0;
    }
}

/* Removes `name` in `parent` (recursively if a directory); `path` is its path below the root. */
static int clear_path(Applier *a, int parent, const char *name, const struct stat *st, const char *path,
                      size_t path_len, const char *entry)
{
    if (S_ISDIR(st->st_mode)) {
        if (remove_tree(a, parent, name, entry) < 0)
            return -1;
        forget_dirs_under(a, path, path_len);
        return 0;
    }
    return unlinkat(parent, name, 0) < 0 ? fail_io(a, entry, errno) : 0;
}

/* Removes whatever the current member's name holds, so that it can be created again. */
static int clear_member_path(Applier *a, int parent, const char *base)
{
    struct stat st;
    if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fail_io(a, a->m.name.data, errno);
    return clear_path(a, parent, base, &st, a->parts.s.data, a->parts.s.len, a->m.name.data);
}

/* ---- metadata ------------------------------------------------------------------------------------------ */

static int is_dropped_xattr(const Applier *a, const char *key, size_t len)
{
    /* A tar must not plant the bookkeeping of a driver (an overlay redirect or opaque flag) in a layer. */
    for (size_t i = 0; i < a->ndrop; i++)
        if (len >= a->drop_len[i] && memcmp(key, a->drop[i], a->drop_len[i]) == 0)
            return 1;
    return 0;
}

/* Sets the member's xattrs on `fd`, or on `parent`/`name` (without following a symlink) when fd < 0. */
static int set_xattrs(Applier *a, int fd, int parent, const char *name)
{
    const Member *m = &a->m;
    for (size_t i = 0; i < m->nxattrs; i++) {
        const Xattr *x = &m->xattrs[i];
        const char *key = m->xattr_data.data + x->key;
        if (is_dropped_xattr(a, key, x->key_len))
            continue;
        const void *value = m->xattr_data.data + x->value;
        int rc;
        if (fd >= 0) {
            rc = fsetxattr(fd, key, value, x->value_len, 0);
        } else {
            /* There is no lsetxattrat: this magic link names the entry relative to its parent's fd. */
            a->scratch.len = 0;
            if (!bytes_reserve(&a->scratch, strlen(name) + 32))
                return fail_nomem(a);
            snprintf(a->scratch.data, a->scratch.cap, "/proc/self/fd/%d/%s", parent, name);
            rc = lsetxattr(a->scratch.data, key, value, x->value_len, 0);
        }
        if (rc < 0)
            return fail_io(a, m->name.data, errno);
    }
    return 0;
}

/* Whether a new inode in a directory needs fchown to get the member's owner: it already has the
 * process's fsuid and, unless the directory is setgid, its fsgid. */
static int needs_chown(const Applier *a, int parent_sgid)
{
    return a->chown && ((uid_t)a->m.uid != a->euid || (gid_t)a->m.gid != a->egid || parent_sgid);
}

/* Owner, mode (if `chmod`), xattrs and times of a member that has no fd: symlinks, devices, whiteouts. */
static int set_path_meta(Applier *a, int parent, const char *name, int chmod)
{
    const Member *m = &a->m;
    if (needs_chown(a, stack_top_sgid(a)) &&
        fchownat(parent, name, (uid_t)m->uid, (gid_t)m->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return fail_io(a, m->name.data, errno);
    if (chmod && fchmodat(parent, name, m->mode, 0) < 0)
        return fail_io(a, m->name.data, errno);
    if (set_xattrs(a, -1, parent, name) < 0)
        return -1;
    struct timespec times[2] = {m->mtime, m->mtime};
    if (utimensat(parent, name, times, AT_SYMLINK_NOFOLLOW) < 0)
        return fail_io(a, m->name.data, errno);
    return 0;
}

/* Remembers the directory's owner, mode and times for the end: writing its children changes its
 * mtime, and a read-only mode would stop a non-root apply. */
static int record_dir(Applier *a)
{
    long index = strset_add(&a->dir_paths, a->parts.s.data, a->parts.s.len);
    if (index < 0)
        return fail_nomem(a);
    if (!GROW(a->dir_meta, a->dir_meta_cap, (size_t)index + 1, 256))
        return fail_nomem(a);
    const Member *m = &a->m;
    a->dir_meta[index] = (DirMeta){m->mode, (uid_t)m->uid, (gid_t)m->gid, m->mtime, 1};
    return 0;
}

static int finish_dirs(Applier *a)
{
    for (size_t i = a->dir_paths.count; i-- > 0;) {
        const DirMeta *d = &a->dir_meta[i];
        if (!d->live)
            continue;
        /* Children first (the reverse of tar order): a parent's mode may forbid reaching them. */
        const char *path = strset_string(&a->dir_paths, i);
        if (split_name(a, path, "entry", &a->parts) < 0)
            return -1;
        int fd = walk_to(a, &a->parts, a->parts.n, 0, path);
        if (fd == MISSING)
            return fail_io(a, path, ENOENT);
        if (fd < 0)
            return -1;
        if ((a->chown && fchown(fd, d->uid, d->gid) < 0) || fchmod(fd, d->mode) < 0)
            return fail_io(a, path, errno);
        struct timespec times[2] = {d->mtime, d->mtime};
        if (futimens(fd, times) < 0)
            return fail_io(a, path, errno);
    }
    return 0;
}

/* ---- members ------------------------------------------------------------------------------------------ */

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t done = write(fd, p, n);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += done;
        n -= (size_t)done;
    }
    return 0;
}

static int make_regular(Applier *a, int parent, const char *base)
{
    Member *m = &a->m;
    /* Created with its final permissions (writable through this fd even if read-only), so that most
     * files need no fchmod. */
    unsigned perm = m->mode & 0777;
    int fd = openat(parent, base, FILE_FLAGS, perm);
    if (fd < 0 && errno == EEXIST) {
        if (clear_member_path(a, parent, base) < 0)
            return -1;
        fd = openat(parent, base, FILE_FLAGS, perm);
    }
    if (fd < 0)
        return fail_io(a, m->name.data, errno);
    int err = 0;
    while (a->data_left) {
        const unsigned char *p;
        Py_ssize_t got = next_chunk(a, a->data_left, &p);
        if (got <= 0) {
            close(fd);
            return got < 0 ? -1 : fail_truncated(a, "member");
        }
        if (write_all(fd, p, (size_t)got) < 0) {
            err = errno;
            goto failed;
        }
        a->data_left -= (uint64_t)got;
    }
    a->size += m->size;
    if (needs_chown(a, stack_top_sgid(a)) && fchown(fd, (uid_t)m->uid, (gid_t)m->gid) < 0)
        goto io_failed;
    /* Needed for special bits, bits the umask took, and after fchown cleared setuid/setgid. */
    if ((a->umask < 0 || m->mode != (perm & ~(unsigned)a->umask)) && fchmod(fd, m->mode) < 0)
        goto io_failed;
    if (set_xattrs(a, fd, -1, NULL) < 0) {
        close(fd);
        return -1;
    }
    struct timespec times[2] = {m->mtime, m->mtime};
    if (futimens(fd, times) < 0)
        goto io_failed;
    if (close(fd) < 0 && errno != EINTR)
        return fail_io(a, m->name.data, errno);
    return 0;
io_failed:
    err = errno;
failed:
    close(fd);
    return fail_io(a, m->name.data, err);
}

static int make_directory(Applier *a, int parent, const char *base)
{
    int sgid = stack_top_sgid(a);
    if (mkdirat(parent, base, 0700) < 0) {
        if (errno != EEXIST)
            return fail_io(a, a->m.name.data, errno);
        struct stat st;
        if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return fail_io(a, a->m.name.data, errno);
        if (S_ISDIR(st.st_mode)) {
            sgid = (st.st_mode & S_ISGID) != 0; /* an existing directory is kept */
        } else {
            if (clear_path(a, parent, base, &st, a->parts.s.data, a->parts.s.len, a->m.name.data) < 0)
                return -1;
            if (mkdirat(parent, base, 0700) < 0)
                return fail_io(a, a->m.name.data, errno);
        }
    }
    int fd = openat(parent, base, DIR_FLAGS);
    if (fd < 0)
        return fail_io(a, a->m.name.data, errno);
    /* The stack is the member's parent chain: the next members are likely its children. */
    if (stack_push(a, base, fd, sgid) < 0) {
        close(fd);
        return -1;
    }
    if (set_xattrs(a, fd, -1, NULL) < 0)
        return -1;
    return record_dir(a);
}

static int make_hardlink(Applier *a, int parent, const char *base)
{
    Member *m = &a->m;
    if (split_name(a, m->link.data, "hardlink target", &a->target) < 0)
        return -1;
    if (!a->target.n)
        return fail(a, KIND_UNSAFE, "layer tar hardlink '%s' points to the layer root; refusing it", m->name.data);
    if (a->target.s.len == a->parts.s.len && memcmp(a->target.s.data, a->parts.s.data, a->parts.s.len) == 0)
        return 0; /* a link to itself: nothing to do */
    int owned;
    int target_fd = open_path_dir(a, &a->target, a->target.n - 1, m->name.data, &owned);
    if (target_fd == MISSING)
        return fail(a, KIND_INVALID, "layer tar hardlink '%s' points to '%s', which does not exist", m->name.data,
                    m->link.data);
    if (target_fd < 0)
        return -1;
    const char *target = path_component(&a->target, a->target.n - 1);
    int rc = linkat(target_fd, target, parent, base, 0);
    if (rc < 0 && errno == EEXIST) {
        if (clear_member_path(a, parent, base) < 0) {
            if (owned)
                close(target_fd);
            return -1;
        }
        rc = linkat(target_fd, target, parent, base, 0);
    }
    int err = errno;
    if (owned)
        close(target_fd);
    if (rc == 0)
        return 0;
    if (err == ENOENT)
        return fail(a, KIND_INVALID, "layer tar hardlink '%s' points to '%s', which does not exist", m->name.data,
                    m->link.data);
    return fail_io(a, m->name.data, err);
}

static int make_symlink_or_node(Applier *a, int parent, const char *base)
{
    Member *m = &a->m;
    mode_t kind = m->type == '3' ? S_IFCHR : m->type == '4' ? S_IFBLK : S_IFIFO;
    for (int attempt = 0;; attempt++) {
        int rc = m->type == '2' ? symlinkat(m->link.data, parent, base)
                                : mknodat(parent, base, kind | 0600, makedev(m->devmajor, m->devminor));
        if (rc == 0)
            break;
        if (errno != EEXIST || attempt)
            return fail_io(a, m->name.data, errno);
        if (clear_member_path(a, parent, base) < 0)
            return -1;
    }
    return set_path_meta(a, parent, base, m->type != '2');
}

/* Deletes the children of directory `fd` (path: the first n components of a->parts) that this tar
 * did not write: a DELETE-format opaque directory. */
static int delete_unwritten_children(Applier *a, int fd, size_t n)
{
    /* A new open file description: reading the stack's fd would move its offset for later readers. */
    int list_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (list_fd < 0)
        return fail_io(a, a->m.name.data, errno);
    DIR *dir = fdopendir(list_fd);
    if (!dir) {
        int err = errno;
        close(list_fd);
        return fail_io(a, a->m.name.data, err);
    }
    /* Names first, removals after: a directory is not changed while it is being listed. */
    Bytes names = {0};
    struct dirent *e;
    errno = 0;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (!bytes_append(&names, e->d_name, strlen(e->d_name) + 1)) {
            closedir(dir);
            free(names.data);
            return fail_nomem(a);
        }
        errno = 0;
    }
    int err = errno;
    closedir(dir);
    if (err) {
        free(names.data);
        return fail_io(a, a->m.name.data, err);
    }
    int rc = 0;
    size_t dir_len = path_prefix_len(&a->parts, n);
    for (size_t off = 0; off < names.len && rc == 0; off += strlen(names.data + off) + 1) {
        const char *child = names.data + off;
        Bytes *path = &a->scratch;
        path->len = 0;
        if (!bytes_append(path, a->parts.s.data, dir_len) || (dir_len && !bytes_append(path, "/", 1)) ||
            !bytes_append(path, child, strlen(child))) {
            rc = fail_nomem(a);
            break;
        }
        if (strset_find(&a->written, path->data, path->len) >= 0)
            continue;
        struct stat st;
        if (fstatat(fd, child, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = errno == ENOENT ? 0 : fail_io(a, a->m.name.data, errno);
        else
            rc = clear_path(a, fd, child, &st, path->data, path->len, a->m.name.data);
    }
    free(names.data);
    return rc;
}

static int whiteout(Applier *a, const char *base)
{
    Member *m = &a->m;
    size_t n = a->parts.n;
    if (strcmp(base, OPAQUE_MARKER) == 0) {
        int fd = walk_to(a, &a->parts, n - 1, 1, m->name.data);
        if (fd < 0)
            return -1;
        if (a->whiteouts == WH_OVERLAY)
            return fsetxattr(fd, a->opaque_xattr, "y", 1, 0) < 0 ? fail_io(a, m->name.data, errno) : 0;
        return delete_unwritten_children(a, fd, n - 1);
    }
    if (starts_with(base, AUFS_META_PREFIX))
        return 0; /* aufs bookkeeping, not content */
    const char *victim = base + strlen(WHITEOUT_PREFIX);
    if (!victim[0] || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
        /* '.wh..' would delete the directory holding it, '.wh...' its parent. */
        return fail(a, KIND_UNSAFE, "layer tar whiteout '%s' names no entry; refusing to delete outside it", m->name.data);
    int parent = walk_to(a, &a->parts, n - 1, 1, m->name.data);
    if (parent < 0)
        return -1;
    struct stat st;
    if (fstatat(parent, victim, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        Bytes *path = &a->scratch;
        size_t dir_len = path_prefix_len(&a->parts, n - 1);
        path->len = 0;
        if (!bytes_append(path, a->parts.s.data, dir_len) || (dir_len && !bytes_append(path, "/", 1)) ||
            !bytes_append(path, victim, strlen(victim)))
            return fail_nomem(a);
        if (clear_path(a, parent, victim, &st, path->data, path->len, m->name.data) < 0)
            return -1;
    } else if (errno != ENOENT) {
        return fail_io(a, m->name.data, errno);
    }
    if (a->whiteouts != WH_OVERLAY)
        return 0;
    if (mknodat(parent, victim, S_IFCHR | 0600, makedev(0, 0)) < 0)
        return fail_io(a, m->name.data, errno);
    /* The writer takes a whiteout's mtime from the device node, so keep the tar's: a layer made from a
     * diff then diffs to the same bytes (the same diff ID). Its xattrs are not content: none are set. */
    m->nxattrs = 0;
    return set_path_meta(a, parent, victim, 0);
}

static int apply_member(Applier *a)
{
    Member *m = &a->m;
    if (split_name(a, m->name.data, "entry", &a->parts) < 0)
        return -1;
    size_t n = a->parts.n;
    if (!n) {
        if (m->type != '5')
            return fail(a, KIND_INVALID, "layer tar entry '%s' names the layer root but is not a directory",
                        m->name.data);
        if (set_xattrs(a, a->root_fd, -1, NULL) < 0)
            return -1;
        return record_dir(a);
    }
    const char *base = path_component(&a->parts, n - 1);
    if (starts_with(base, WHITEOUT_PREFIX) && a->whiteouts != WH_AUFS)
        return whiteout(a, base);
    if (starts_with(base, AUFS_META_PREFIX) && strcmp(base, OPAQUE_MARKER) != 0)
        return 0; /* aufs bookkeeping, not content */
    int parent = walk_to(a, &a->parts, n - 1, 1, m->name.data);
    if (parent < 0)
        return -1;
    if (a->whiteouts == WH_DELETE && strset_add(&a->written, a->parts.s.data, a->parts.s.len) < 0)
        return fail_nomem(a);
    switch (m->type) {
    case '0':
        return make_regular(a, parent, base);
    case '1':
        return make_hardlink(a, parent, base);
    case '5':
        return make_directory(a, parent, base);
    default:
        return make_symlink_or_node(a, parent, base);
    }
}

/* ---- making a tar-split ------------------------------------------------------------------------------------ */

/* Adds `path` (len bytes) to `set`; -1 when out of memory. */
static int set_add(Applier *a, StrSet *set, const char *path, size_t len)
{
    return strset_add(set, path, len) < 0 ? fail_nomem(a) : 0;
}

static int in_set(const StrSet *set, const char *path, size_t len) { return strset_find(set, path, len) >= 0; }

/* Records the current member (its header is read): a file whose bytes are left out of the split and read
 * back from the layer, or anything else, whose bytes the split keeps. */
static int split_member(Applier *a)
{
    Splitter *sp = a->split;
    Member *m = &a->m;
    if (split_name(a, m->name.data, "entry", &a->parts) < 0) {
        /* The apply refuses this tar anyway; the split only has to stay correct. */
        free(a->err_msg);
        a->err_msg = NULL;
        a->err_kind = KIND_NONE;
        sp->exact = 0;
        return 0;
    }
    const Path *p = &a->parts;
    size_t n = p->n, count = sp->names.count;
    if (set_add(a, &sp->names, p->s.data, p->s.len) < 0)
        return -1;
    if (sp->names.count == count)
        sp->exact = 0; /* a path named twice: the later member replaces the earlier */
    if (!n)
        return 0;
    const char *base = path_component(p, n - 1);
    size_t dir_len = path_prefix_len(p, n - 1);
    if (starts_with(base, WHITEOUT_PREFIX)) {
        if (strcmp(base, OPAQUE_MARKER) == 0)
            return set_add(a, &sp->opaque, p->s.data, dir_len);
        if (starts_with(base, AUFS_META_PREFIX))
            return 0;
        const char *victim = base + strlen(WHITEOUT_PREFIX);
        if (!bytes_append(&sp->victims, p->s.data, dir_len) || (dir_len && !bytes_append(&sp->victims, "/", 1)) ||
            !bytes_append(&sp->victims, victim, strlen(victim) + 1))
            return fail_nomem(a);
        return 0;
    }
    /* Lists, not sets: checked once at the end, against the (few) directories above files. */
    if (m->type != '5' && !bytes_append(&sp->nondirs, p->s.data, p->s.len + 1))
        return fail_nomem(a);
    if (m->type != '0' || m->size <= 0 || m->sparse)
        return 0;
    if (!bytes_append(&sp->files, p->s.data, p->s.len + 1))
        return fail_nomem(a);
    /* Directories above it, nearest first, until one is known (then so are those above it). */
    for (size_t i = n - 1; i > 0; i--) {
        size_t len = path_prefix_len(p, i);
        if (in_set(&sp->file_dirs, p->s.data, len))
            break;
        if (set_add(a, &sp->file_dirs, p->s.data, len) < 0)
            return -1;
    }
    unsigned char head[13];
    head[0] = 'F';
    put_u64(head + 1, (uint64_t)m->size);
    put_u32(head + 9, (uint32_t)p->s.len);
    sp->raw_at = NO_RECORD;
    if (!bytes_append(&sp->out, head, sizeof head) || !bytes_append(&sp->out, p->s.data, p->s.len))
        return fail_nomem(a);
    a->in_file = 1;
    int rc = skip_bytes(a, a->data_left, "member");
    a->in_file = 0;
    a->data_left = 0;
    return rc;
}

/* Whether the opaque directories leave every kept file: an opaque directory removes what lies below it
 * unless this tar wrote it, so a file is safe only if its path below each opaque directory above it starts
 * with a member of the tar. */
static int opaque_spares_files(const Splitter *sp)
{
    for (size_t off = 0; off < sp->files.len; off += strlen(sp->files.data + off) + 1) {
        const char *path = sp->files.data + off;
        size_t len = strlen(path);
        for (size_t cut = 0; cut < len; cut++) {
            if (path[cut] != '/')
                continue;
            if (!in_set(&sp->opaque, path, cut))
                continue;
            const char *next = memchr(path + cut + 1, '/', len - cut - 1);
            size_t child = next ? (size_t)(next - path) : len;
            if (!in_set(&sp->names, path, child))
                return 0;
        }
        if (in_set(&sp->opaque, "", 0)) {
            const char *first = memchr(path, '/', len);
            if (!in_set(&sp->names, path, first ? (size_t)(first - path) : len))
                return 0;
        }
    }
    return 1;
}

/* After the last member: can every kept file be read back as the tar wrote it? Then the end record. */
static int split_finish(Applier *a)
{
    Splitter *sp = a->split;
    if (sp->victims.len) {
        StrSet files = {0};
        for (size_t off = 0; off < sp->files.len; off += strlen(sp->files.data + off) + 1)
            if (set_add(a, &files, sp->files.data + off, strlen(sp->files.data + off)) < 0) {
                strset_free(&files);
                return -1;
            }
        for (size_t off = 0; off < sp->victims.len && sp->exact; off += strlen(sp->victims.data + off) + 1) {
            const char *victim = sp->victims.data + off;
            size_t len = strlen(victim);
            if (in_set(&files, victim, len) || in_set(&sp->file_dirs, victim, len))
                sp->exact = 0;
        }
        strset_free(&files);
    }
    for (size_t off = 0; off < sp->nondirs.len && sp->exact; off += strlen(sp->nondirs.data + off) + 1)
        if (in_set(&sp->file_dirs, sp->nondirs.data + off, strlen(sp->nondirs.data + off)))
            sp->exact = 0;
    if (sp->exact && sp->opaque.count && !opaque_spares_files(sp))
        sp->exact = 0;
    unsigned char end[9];
    end[0] = 'E';
    put_u64(end + 1, sp->total);
    if (!bytes_append(&sp->out, end, sizeof end))
        return fail_nomem(a);
    if (split_flush(sp) < 0)
        return fail(a, KIND_IO, "cannot write the layer's tar-split (%s)", strerror(sp->err));
    return 0;
}

static void split_all(Applier *a)
{
    int rc;
    while ((rc = read_header(a)) > 0)
        if (split_member(a) < 0 || skip_bytes(a, a->data_left + padding((uint64_t)a->m.size), "member") < 0) {
            rc = -1;
            break;
        }
    if (rc == 0 && drain(a) == 0) {
        split_finish(a);
        return;
    }
    if (a->py_error || a->err_kind == KIND_NOMEM || a->split->err)
        return;
    /* A malformed tar: still read to the end, so that the caller's hash covers the whole stream and can
     * tell a corrupt blob (digest) from a bad tar. */
    a->split = NULL;
    drain(a);
}

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

static void applier_free(Applier *a)
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
    if (a.py_error)
        goto done;
    if (a.err_kind == KIND_NOMEM) {
        PyErr_NoMemory();
        goto done;
    }
    if (a.err_kind)
        result = Py_BuildValue("(LiN)", a.size, a.err_kind,
                               PyUnicode_DecodeUTF8(a.err_msg, (Py_ssize_t)strlen(a.err_msg), "surrogateescape"));
    else
        result = Py_BuildValue("(Lis)", a.size, 0, "");
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
    if (a.py_error)
        goto done;
    if (a.err_kind == KIND_NOMEM) {
        PyErr_NoMemory();
        goto done;
    }
    if (a.err_kind)
        result = Py_BuildValue("(KOiN)", (unsigned long long)sp.total, Py_False, a.err_kind,
                               PyUnicode_DecodeUTF8(a.err_msg, (Py_ssize_t)strlen(a.err_msg), "surrogateescape"));
    else
        result = Py_BuildValue("(KOis)", (unsigned long long)sp.total, sp.exact ? Py_True : Py_False, 0, "");
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
        PyModule_AddIntConstant(module, "IO", KIND_IO) < 0)
        return -1;
    return 0;
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
