/* drivebay.archive._tarwrite: the layer tar writer's hot path (see writer.py for the contract).
 *
 * A TarWriter walks a tree (or is handed single paths), lstats, reads xattrs
 * and file data, and encodes USTAR headers with PAX records into one 1 MiB
 * buffer that is passed to the caller's out.write whenever it fills. The
 * encoding is byte for byte tarformat.encode_header's, so layer diff IDs stay
 * what the Python writer gave.
 *
 * The GIL is released for the whole walk and taken back only to call
 * out.write. Failures while it is released are recorded in the writer (kind
 * and message) and raised as WriteError once it is held again; writer.py turns
 * them into drivebay errors. Only the C library is used: no allocation through
 * Python while the GIL is released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "growbuf.h"

#define BLOCK 512
#define BUFFER_SIZE (1 << 20)
#define NAME_FIELD 100
#define MAX_OCTAL_7 07777777ULL
#define MAX_OCTAL_11 077777777777LL
/* Past this depth a directory's fd is closed while its subdirectories are
 * written (and reopened through ".." after), so deep trees cannot run out of fds. */
#define KEEP_OPEN_DEPTH 128

/* The names writer.py takes from whiteouts.py; the module exports them so a test checks they agree. */
#define WHITEOUT_PREFIX ".wh."
#define OPAQUE_MARKER ".wh..wh..opq"
#define AUFS_META_PREFIX ".wh..wh."
#define OVERLAY_OPAQUE_XATTR "trusted.overlay.opaque"
#define PAX_XATTR "SCHILY.xattr."

enum whiteouts { WHITEOUTS_DELETE, WHITEOUTS_OVERLAY, WHITEOUTS_AUFS };
enum failure { FAIL_NONE, FAIL_PYTHON, FAIL_NOMEM, FAIL_UNREADABLE, FAIL_INVALID };
static const char *const FAILURE_KINDS[] = {"", "", "", "unreadable", "invalid"};

static PyObject *WriteError;

/* The first name of an inode with several links, keyed by device and inode number. */
typedef struct {
    dev_t dev;
    ino_t ino;
    char *name; /* NULL: empty slot */
    size_t len;
} Link;

typedef struct {
    Link *slots;
    size_t cap; /* a power of two */
    size_t used;
} LinkTable;

/* One PAX record: offsets into a Records arena (which may move while records are added). */
typedef struct {
    size_t key, key_len, value, value_len;
} Record;

typedef struct {
    Bytes arena;
    Record *items;
    size_t count, cap;
} Records;

/* Everything a member's header holds, before encoding. */
typedef struct {
    const char *name;
    size_t name_len;
    char type;
    unsigned mode;
    unsigned long long uid, gid, size;
    long long sec;
    long nsec;
    const char *link;
    size_t link_len;
    unsigned long long devmajor, devminor;
} Member;

/* A directory's child, listed and lstat'ed before any member is written. */
typedef struct {
    size_t offset; /* into the directory's name pool, while it is being filled */
    const char *name;
    size_t len;
    struct stat st;
    bool whiteout; /* name carries the ".wh." prefix; no syscall uses it */
} Child;

typedef struct {
    PyObject_HEAD
    PyObject *write;  /* the caller's out.write */
    PyObject *buffer; /* bytearray: members are built and files read straight into it */
    PyObject *view;   /* memoryview of buffer, sliced for each write */
    char *buf;
    size_t pos;
    char **exclude; /* xattr name prefixes never written */
    size_t *exclude_len;
    size_t exclude_count;
    LinkTable links;
    Bytes path;   /* full path of the entry at hand: for by-path syscalls and messages */
    Bytes member; /* its member name (a directory's prefix while its children are written) */
    Bytes names;  /* scratch: an xattr name list */
    Bytes link;   /* scratch: a symlink target */
    Bytes pax;    /* scratch: PAX extended header data */
    Bytes dents;  /* scratch: getdents64 records */
    Records records;
    PyThreadState *released; /* non-NULL while the GIL is released */
    bool busy;               /* a method is running (out.write must not call back into the writer) */
    enum failure fail;
    Bytes message;
} TarWriter;

/* ---- failures ---- */

static int fail_nomem(TarWriter *w) {
    w->fail = FAIL_NOMEM;
    return -1;
}

static int fail_message(TarWriter *w, enum failure kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail_message(TarWriter *w, enum failure kind, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    w->message.len = 0;
    if (n < 0 || !bytes_reserve(&w->message, (size_t)n + 1))
        return fail_nomem(w);
    va_start(args, fmt);
    vsnprintf(w->message.data, (size_t)n + 1, fmt, args);
    va_end(args);
    w->message.len = (size_t)n;
    w->fail = kind;
    return -1;
}

static int fail_unreadable(TarWriter *w, int err) {
    char text[256];
    const char *reason = strerror_r(err, text, sizeof text);
    return fail_message(w, FAIL_UNREADABLE, "cannot read '%s' into the layer tar (%s)", w->path.data, reason);
}

/* Raise what the last failure recorded; the GIL must be held. */
static PyObject *raise_failure(TarWriter *w) {
    enum failure kind = w->fail;
    w->fail = FAIL_NONE;
    if (kind == FAIL_PYTHON)
        return NULL; /* out.write's own exception, already set */
    if (kind == FAIL_NOMEM)
        return PyErr_NoMemory();
    PyObject *message = PyUnicode_DecodeFSDefaultAndSize(w->message.data, (Py_ssize_t)w->message.len);
    if (!message)
        return NULL;
    PyObject *args = Py_BuildValue("(sN)", FAILURE_KINDS[kind], message);
    if (args) {
        PyErr_SetObject(WriteError, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* ---- output ---- */

static int flush(TarWriter *w) {
    if (!w->pos)
        return 0;
    PyThreadState *released = w->released;
    if (released) {
        w->released = NULL;
        PyEval_RestoreThread(released);
    }
    int rc = -1;
    PyObject *chunk = PySequence_GetSlice(w->view, 0, (Py_ssize_t)w->pos);
    if (chunk) {
        PyObject *result = PyObject_CallOneArg(w->write, chunk);
        Py_DECREF(chunk);
        if (result) {
            Py_DECREF(result);
            w->pos = 0;
            rc = 0;
        }
    }
    if (released)
        w->released = PyEval_SaveThread();
    if (rc < 0)
        w->fail = FAIL_PYTHON;
    return rc;
}

static int emit(TarWriter *w, const void *src, size_t n) {
    const char *p = src;
    while (n) {
        if (w->pos == BUFFER_SIZE && flush(w) < 0)
            return -1;
        size_t take = BUFFER_SIZE - w->pos < n ? BUFFER_SIZE - w->pos : n;
        memcpy(w->buf + w->pos, p, take);
        w->pos += take;
        p += take;
        n -= take;
    }
    return 0;
}

static int emit_zeros(TarWriter *w, size_t n) {
    static const char zeros[BLOCK];
    while (n) {
        size_t take = n < BLOCK ? n : BLOCK;
        if (emit(w, zeros, take) < 0)
            return -1;
        n -= take;
    }
    return 0;
}

/* ---- header encoding (tarformat.encode_header) ---- */

static void octal(char *dst, int digits, unsigned long long value) {
    for (int i = digits - 1; i >= 0; i--) {
        dst[i] = (char)('0' + (value & 7));
        value >>= 3;
    }
    dst[digits] = '\0';
}

/* One USTAR block; numbers too big for their fields must already be 0 (PAX carries them). */
static void ustar_block(char *block, const char *name, size_t name_len, unsigned mode, unsigned long long uid,
                        unsigned long long gid, unsigned long long size, unsigned long long mtime, char type,
                        const char *link, size_t link_len, unsigned long long devmajor, unsigned long long devminor) {
    memset(block, 0, BLOCK);
    memcpy(block, name, name_len);
    octal(block + 100, 7, mode);
    octal(block + 108, 7, uid);
    octal(block + 116, 7, gid);
    octal(block + 124, 11, size);
    octal(block + 136, 11, mtime);
    memset(block + 148, ' ', 8);
    block[156] = type;
    memcpy(block + 157, link, link_len);
    memcpy(block + 257, "ustar\0" "00", 8);
    octal(block + 329, 7, devmajor);
    octal(block + 337, 7, devminor);
    unsigned sum = 0;
    for (int i = 0; i < BLOCK; i++)
        sum += (unsigned char)block[i];
    octal(block + 148, 6, sum); /* then NUL (written by octal) and the space already there */
}

static void records_clear(Records *r) {
    r->arena.len = 0;
    r->count = 0;
}

static bool records_add(Records *r, const char *key_prefix, const char *key, size_t key_len, const char *value,
                        size_t value_len) {
    if (!GROW(r->items, r->cap, r->count + 1, 16))
        return false;
    Record *rec = &r->items[r->count];
    rec->key = r->arena.len;
    size_t prefix_len = strlen(key_prefix);
    if (!bytes_append(&r->arena, key_prefix, prefix_len) || !bytes_append(&r->arena, key, key_len))
        return false;
    rec->key_len = prefix_len + key_len;
    rec->value = r->arena.len;
    rec->value_len = value_len;
    if (!bytes_append(&r->arena, value, value_len))
        return false;
    r->count++;
    return true;
}

static int compare_bytes(const char *a, size_t a_len, const char *b, size_t b_len) {
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (c)
        return c;
    return a_len < b_len ? -1 : a_len > b_len;
}

static int compare_records(const void *a, const void *b, void *arena) {
    const Record *x = a, *y = b;
    const char *base = arena;
    int c = compare_bytes(base + x->key, x->key_len, base + y->key, y->key_len);
    return c ? c : compare_bytes(base + x->value, x->value_len, base + y->value, y->value_len);
}

static size_t decimal(char *dst, unsigned long long value) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* PAX's decimal seconds: "-1.5" for 1.5 s before the epoch, no trailing zeros in the fraction. */
static size_t pax_time(char *dst, long long sec, long nsec) {
    size_t n = 0;
    unsigned long long whole;
    if (sec < 0 && nsec) {
        dst[n++] = '-';
        whole = (unsigned long long)(-(sec + 1));
        nsec = 1000000000L - nsec;
    } else if (sec < 0) {
        dst[n++] = '-';
        whole = (unsigned long long)0 - (unsigned long long)sec;
    } else {
        whole = (unsigned long long)sec;
    }
    n += decimal(dst + n, whole);
    if (nsec) {
        char frac[9];
        for (int i = 8; i >= 0; i--) {
            frac[i] = (char)('0' + nsec % 10);
            nsec /= 10;
        }
        int digits = 9;
        while (frac[digits - 1] == '0')
            digits--;
        dst[n++] = '.';
        memcpy(dst + n, frac, (size_t)digits);
        n += (size_t)digits;
    }
    return n;
}

/* Encode and emit m's header block(s); w->records holds its xattr records already. */
static int emit_header(TarWriter *w, const Member *m) {
    Records *r = &w->records;
    char number[48];
    unsigned long long uid = m->uid, gid = m->gid, size = m->size;
    long long sec = m->sec;
    bool sec_fits = sec >= 0 && sec <= MAX_OCTAL_11;
    bool ok = true;
    if (m->nsec || !sec_fits) {
        ok = records_add(r, "mtime", "", 0, number, pax_time(number, m->sec, m->nsec));
        if (!sec_fits)
            sec = 0;
    }
    size_t name_len = m->name_len, link_len = m->link_len;
    if (ok && name_len > NAME_FIELD) {
        ok = records_add(r, "path", "", 0, m->name, name_len);
        name_len = NAME_FIELD;
    }
    if (ok && link_len > NAME_FIELD) {
        ok = records_add(r, "linkpath", "", 0, m->link, link_len);
        link_len = NAME_FIELD;
    }
    if (ok && uid > MAX_OCTAL_7) {
        ok = records_add(r, "uid", "", 0, number, decimal(number, uid));
        uid = 0;
    }
    if (ok && gid > MAX_OCTAL_7) {
        ok = records_add(r, "gid", "", 0, number, decimal(number, gid));
        gid = 0;
    }
    if (ok && size > (unsigned long long)MAX_OCTAL_11) {
        ok = records_add(r, "size", "", 0, number, decimal(number, size));
        size = 0;
    }
    if (!ok)
        return fail_nomem(w);
    if (m->devmajor > MAX_OCTAL_7 || m->devminor > MAX_OCTAL_7)
        return fail_message(w, FAIL_INVALID, "'%.*s': device number %llu:%llu does not fit a tar header",
                            (int)m->name_len, m->name, m->devmajor, m->devminor);
    char block[BLOCK];
    if (r->count) {
        qsort_r(r->items, r->count, sizeof *r->items, compare_records, r->arena.data);
        Bytes *pax = &w->pax;
        pax->len = 0;
        for (size_t i = 0; i < r->count; i++) {
            const Record *rec = &r->items[i];
            size_t body = rec->key_len + rec->value_len + 3; /* " ", "=" and "\n" */
            size_t length = body + 1;
            while (decimal(number, length) + body != length)
                length++;
            size_t digits = decimal(number, length);
            if (!bytes_reserve(pax, length + 1))
                return fail_nomem(w);
            char *p = pax->data + pax->len;
            memcpy(p, number, digits);
            p[digits] = ' ';
            memcpy(p + digits + 1, r->arena.data + rec->key, rec->key_len);
            p[digits + 1 + rec->key_len] = '=';
            memcpy(p + digits + 2 + rec->key_len, r->arena.data + rec->value, rec->value_len);
            p[length - 1] = '\n';
            pax->len += length;
        }
        ustar_block(block, "PaxHeaders.0/@PaxHeader", 23, 0644, 0, 0, pax->len, 0, 'x', "", 0, 0, 0);
        if (emit(w, block, BLOCK) < 0 || emit(w, pax->data, pax->len) < 0 ||
            emit_zeros(w, -pax->len % BLOCK) < 0)
            return -1;
    }
    ustar_block(block, m->name, name_len, m->mode & 07777, uid, gid, size, (unsigned long long)sec, m->type, m->link,
                link_len, m->devmajor, m->devminor);
    return emit(w, block, BLOCK);
}

/* ---- reading inodes ---- */

static bool excluded(TarWriter *w, const char *name, size_t len) {
    for (size_t i = 0; i < w->exclude_count; i++)
        if (len >= w->exclude_len[i] && !memcmp(name, w->exclude[i], w->exclude_len[i]))
            return true;
    return false;
}

/* The xattrs of fd (or, when fd < 0, of w->path, not followed) into w->records, minus exclusions. */
static int read_xattrs(TarWriter *w, int fd) {
    Bytes *names = &w->names;
    if (!names->cap && !bytes_reserve(names, 4096))
        return fail_nomem(w);
    ssize_t got;
    for (;;) {
        got = fd >= 0 ? flistxattr(fd, names->data, names->cap) : llistxattr(w->path.data, names->data, names->cap);
        if (got >= 0)
            break;
        if (errno != ERANGE)
            return fail_unreadable(w, errno);
        ssize_t need = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(w->path.data, NULL, 0);
        if (need < 0)
            return fail_unreadable(w, errno);
        names->len = 0;
        if (!bytes_reserve(names, (size_t)need + 1))
            return fail_nomem(w);
    }
    Records *r = &w->records;
    for (const char *name = names->data; name < names->data + got; name += strlen(name) + 1) {
        size_t name_len = strlen(name);
        if (excluded(w, name, name_len))
            continue;
        /* The value goes straight into the arena, after its key. */
        if (!records_add(r, PAX_XATTR, name, name_len, "", 0))
            return fail_nomem(w);
        Record *rec = &r->items[r->count - 1];
        for (;;) {
            Bytes *arena = &r->arena;
            /* fgetxattr with size 0 only asks for the length: always offer some room. */
            if (!bytes_reserve(arena, 257))
                return fail_nomem(w);
            size_t room = arena->cap - arena->len - 1;
            ssize_t n = fd >= 0 ? fgetxattr(fd, name, arena->data + arena->len, room)
                                : lgetxattr(w->path.data, name, arena->data + arena->len, room);
            if (n >= 0) {
                rec->value_len = (size_t)n;
                arena->len += (size_t)n;
                break;
            }
            if (errno != ERANGE)
                return fail_unreadable(w, errno);
            n = fd >= 0 ? fgetxattr(fd, name, NULL, 0) : lgetxattr(w->path.data, name, NULL, 0);
            if (n < 0)
                return fail_unreadable(w, errno);
            if (!bytes_reserve(arena, (size_t)n + 1))
                return fail_nomem(w);
        }
    }
    return 0;
}

static int read_link(TarWriter *w, int dirfd, const char *name) {
    Bytes *link = &w->link;
    link->len = 0;
    if (!link->cap && !bytes_reserve(link, 4096))
        return fail_nomem(w);
    for (;;) {
        ssize_t n = readlinkat(dirfd, name, link->data, link->cap);
        if (n < 0)
            return fail_unreadable(w, errno);
        if ((size_t)n < link->cap) {
            link->len = (size_t)n;
            return 0;
        }
        /* The target filled the buffer: it may be cut short, so read it again into twice the room. */
        if (!bytes_reserve(link, link->cap * 2))
            return fail_nomem(w);
    }
}

static char tar_type(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return '0';
    case S_IFLNK: return '2';
    case S_IFCHR: return '3';
    case S_IFBLK: return '4';
    case S_IFDIR: return '5';
    case S_IFIFO: return '6';
    default: return 0; /* a socket: tar cannot hold one and Docker skips them */
    }
}

static void member_from_stat(Member *m, const Bytes *name, char type, const struct stat *st) {
    *m = (Member){
        .name = name->data,
        .name_len = name->len,
        .type = type,
        .mode = st->st_mode & 07777,
        .uid = st->st_uid,
        .gid = st->st_gid,
        .sec = st->st_mtim.tv_sec,
        .nsec = st->st_mtim.tv_nsec,
        .link = "",
    };
}

static uint64_t link_hash(dev_t dev, ino_t ino) { return ((uint64_t)ino * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)dev; }

/* The slot of (dev, ino): filled if the inode was seen, else empty and ready to be filled. */
static Link *links_slot(LinkTable *t, dev_t dev, ino_t ino) {
    size_t i = link_hash(dev, ino) & (t->cap - 1);
    while (t->slots[i].name && (t->slots[i].dev != dev || t->slots[i].ino != ino))
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

static bool links_grow(LinkTable *t) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    Link *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    LinkTable bigger = {slots, cap, t->used};
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].name)
            *links_slot(&bigger, t->slots[i].dev, t->slots[i].ino) = t->slots[i];
    free(t->slots);
    *t = bigger;
    return true;
}

/* The first name of st's inode if one was written already; else remembers w->member as its first name. */
static int first_link(TarWriter *w, const struct stat *st, const Link **first) {
    LinkTable *t = &w->links;
    if ((t->used + 1) * 2 > t->cap && !links_grow(t))
        return fail_nomem(w);
    Link *slot = links_slot(t, st->st_dev, st->st_ino);
    if (slot->name) {
        *first = slot;
        return 0;
    }
    char *name = malloc(w->member.len + 1);
    if (!name)
        return fail_nomem(w);
    memcpy(name, w->member.data, w->member.len + 1);
    *slot = (Link){st->st_dev, st->st_ino, name, w->member.len};
    t->used++;
    *first = NULL;
    return 0;
}

static int copy_file_data(TarWriter *w, int fd, unsigned long long size) {
    unsigned long long left = size;
    while (left) {
        if (w->pos == BUFFER_SIZE && flush(w) < 0)
            return -1;
        size_t room = BUFFER_SIZE - w->pos;
        ssize_t got = read(fd, w->buf + w->pos, left < room ? (size_t)left : room);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return fail_unreadable(w, errno);
        }
        if (!got)
            return fail_message(w, FAIL_UNREADABLE,
                                "'%s' shrank while being archived; stop writers to the layer and retry", w->path.data);
        w->pos += (size_t)got;
        left -= (size_t)got;
    }
    return emit_zeros(w, -size % BLOCK);
}

/* openat without giving the file a new atime where the kernel allows it (the owner, or CAP_FOWNER): with
 * relatime, a diff reading a layer would otherwise write an atime into every inode it reads, and on btrfs
 * the next native diff would have to commit those writes and look at them. */
static int open_noatime(int dirfd, const char *name, int flags) {
    int fd = openat(dirfd, name, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, name, flags);
    return fd;
}

static int add_regular(TarWriter *w, Member *m, int dirfd, const char *name, const struct stat *st) {
    int fd = open_noatime(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail_unreadable(w, errno);
    m->size = (unsigned long long)st->st_size;
    int rc = read_xattrs(w, fd);
    if (!rc)
        rc = emit_header(w, m);
    if (!rc)
        rc = copy_file_data(w, fd, m->size);
    close(fd);
    return rc;
}

/* The inode st, found as name in dirfd (w->path is its full path), as member w->member.
 * fd is the directory itself, open already, or -1. */
static int add_inode(TarWriter *w, int dirfd, const char *name, const struct stat *st, int fd) {
    char type = tar_type(st->st_mode);
    if (!type)
        return 0;
    Member m;
    member_from_stat(&m, &w->member, type, st);
    records_clear(&w->records);
    if (st->st_nlink > 1 && type != '5') {
        const Link *first;
        if (first_link(w, st, &first) < 0)
            return -1;
        if (first) {
            m.type = '1';
            m.link = first->name;
            m.link_len = first->len;
            return emit_header(w, &m);
        }
    }
    switch (type) {
    case '0':
        return add_regular(w, &m, dirfd, name, st);
    case '2':
        if (read_link(w, dirfd, name) < 0)
            return -1;
        m.link = w->link.data;
        m.link_len = w->link.len;
        break;
    case '3':
    case '4':
        m.devmajor = major(st->st_rdev);
        m.devminor = minor(st->st_rdev);
        break;
    case '5':
        /* The trailing '/' goes on the name only for the header; children get their own. */
        if (!bytes_append(&w->member, "/", 1))
            return fail_nomem(w);
        m.name = w->member.data;
        m.name_len = w->member.len;
        break;
    }
    int rc = read_xattrs(w, fd);
    if (!rc)
        rc = emit_header(w, &m);
    if (type == '5')
        bytes_truncate(&w->member, w->member.len - 1);
    return rc;
}

/* A whiteout member as Docker writes it: an empty 0600 file, owner and time from st if given. */
static int add_whiteout(TarWriter *w, const struct stat *st) {
    Member m = {.name = w->member.data, .name_len = w->member.len, .type = '0', .mode = 0600, .link = ""};
    if (st) {
        m.uid = st->st_uid;
        m.gid = st->st_gid;
        m.sec = st->st_mtim.tv_sec;
        m.nsec = st->st_mtim.tv_nsec;
    }
    records_clear(&w->records);
    return emit_header(w, &m);
}

/* ---- walking ---- */

static bool path_push(Bytes *path, const char *name, size_t len) {
    if (path->len && path->data[path->len - 1] != '/' && !bytes_append(path, "/", 1))
        return false;
    return bytes_append(path, name, len);
}

static bool is_aufs_meta(const char *name, size_t len) {
    size_t prefix = sizeof AUFS_META_PREFIX - 1;
    return len >= prefix && !memcmp(name, AUFS_META_PREFIX, prefix) && strcmp(name, OPAQUE_MARKER) != 0;
}

static int compare_children(const void *a, const void *b) {
    const Child *x = a, *y = b;
    return compare_bytes(x->name, x->len, y->name, y->len);
}

typedef struct {
    Child *items;
    size_t count, cap;
    Bytes pool;
    bool has_opaque_marker; /* aufs: the directory holds .wh..wh..opq */
} Listing;

static void listing_free(Listing *l) {
    free(l->items);
    free(l->pool.data);
}

/* List and lstat the children of the directory fd (w->path), minus those the format leaves out, sorted. */
static int list_dir(TarWriter *w, int fd, enum whiteouts fmt, Listing *l) {
    if (!w->dents.cap && !bytes_reserve(&w->dents, 64 * 1024))
        return fail_nomem(w);
    size_t dir_len = w->path.len;
    for (;;) {
        ssize_t got = getdents64(fd, w->dents.data, w->dents.cap);
        if (got < 0)
            return fail_unreadable(w, errno);
        if (!got)
            break;
        for (ssize_t off = 0; off < got;) {
            struct dirent64 *d = (struct dirent64 *)(w->dents.data + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            size_t len = strlen(name);
            if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
                continue;
            if (fmt == WHITEOUTS_AUFS && !strcmp(name, OPAQUE_MARKER)) {
                l->has_opaque_marker = true;
                continue;
            }
            if (fmt == WHITEOUTS_AUFS && is_aufs_meta(name, len))
                continue;
            if (!GROW(l->items, l->cap, l->count + 1, 64))
                return fail_nomem(w);
            Child *c = &l->items[l->count];
            if (fstatat(fd, name, &c->st, AT_SYMLINK_NOFOLLOW) < 0) {
                int err = errno;
                if (!path_push(&w->path, name, len))
                    return fail_nomem(w);
                fail_unreadable(w, err);
                bytes_truncate(&w->path, dir_len);
                return -1;
            }
            c->whiteout = fmt == WHITEOUTS_OVERLAY && S_ISCHR(c->st.st_mode) && c->st.st_rdev == 0;
            c->offset = l->pool.len;
            c->len = len + (c->whiteout ? sizeof WHITEOUT_PREFIX - 1 : 0);
            if ((c->whiteout && !bytes_append(&l->pool, WHITEOUT_PREFIX, sizeof WHITEOUT_PREFIX - 1)) ||
                !bytes_append(&l->pool, name, len + 1))
                return fail_nomem(w);
            l->count++;
        }
    }
    for (size_t i = 0; i < l->count; i++)
        l->items[i].name = l->pool.data + l->items[i].offset;
    if (l->count)
        qsort(l->items, l->count, sizeof *l->items, compare_children);
    return 0;
}

static int is_overlay_opaque(TarWriter *w, int fd, bool *opaque) {
    char value[2];
    ssize_t n = fgetxattr(fd, OVERLAY_OPAQUE_XATTR, value, sizeof value);
    if (n < 0 && errno != ENODATA && errno != ENOTSUP && errno != ERANGE)
        return fail_unreadable(w, errno);
    *opaque = n == 1 && value[0] == 'y';
    return 0;
}

/* The opaque marker member of the directory fd (w->path, member prefix w->member), if it is opaque. */
static int add_opaque_marker(TarWriter *w, int fd, enum whiteouts fmt, const Listing *l, const struct stat *dir_st) {
    size_t path_len = w->path.len, member_len = w->member.len;
    if (!bytes_append(&w->member, OPAQUE_MARKER, sizeof OPAQUE_MARKER - 1))
        return fail_nomem(w);
    int rc = 0;
    if (fmt == WHITEOUTS_AUFS && l->has_opaque_marker) {
        struct stat st;
        if (!path_push(&w->path, OPAQUE_MARKER, sizeof OPAQUE_MARKER - 1))
            rc = fail_nomem(w);
        else if (fstatat(fd, OPAQUE_MARKER, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = fail_unreadable(w, errno);
        else
            rc = add_inode(w, fd, OPAQUE_MARKER, &st, -1);
    } else if (fmt == WHITEOUTS_OVERLAY) {
        bool opaque = false;
        rc = is_overlay_opaque(w, fd, &opaque);
        if (!rc && opaque) {
            /* As Docker writes it: the directory's permission bits and owner, mtime 0. */
            Member m = {.name = w->member.data,
                        .name_len = w->member.len,
                        .type = '0',
                        .mode = dir_st->st_mode & 07777,
                        .uid = dir_st->st_uid,
                        .gid = dir_st->st_gid,
                        .link = ""};
            records_clear(&w->records);
            rc = emit_header(w, &m);
        }
    }
    bytes_truncate(&w->path, path_len);
    bytes_truncate(&w->member, member_len);
    return rc;
}

static int write_dir(TarWriter *w, int *fd, const struct stat *dir_st, enum whiteouts fmt, int depth);

static int write_subdir(TarWriter *w, int *fd, const Child *c, enum whiteouts fmt, int depth) {
    int sub = open_noatime(*fd, c->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return fail_unreadable(w, errno);
    int rc = add_inode(w, *fd, c->name, &c->st, sub);
    if (!rc && !bytes_append(&w->member, "/", 1))
        rc = fail_nomem(w);
    if (!rc && depth >= KEEP_OPEN_DEPTH) {
        close(*fd);
        *fd = -1;
    }
    if (!rc)
        rc = write_dir(w, &sub, &c->st, fmt, depth + 1);
    if (*fd < 0 && sub >= 0) {
        *fd = openat(sub, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (*fd < 0 && !rc)
            rc = fail_unreadable(w, errno);
    }
    if (sub >= 0)
        close(sub);
    return rc;
}

/* Members for the children of the directory *fd: its full path is w->path, its member prefix w->member. */
static int write_dir(TarWriter *w, int *fd, const struct stat *dir_st, enum whiteouts fmt, int depth) {
    Listing l = {0};
    int rc = list_dir(w, *fd, fmt, &l);
    if (!rc && fmt != WHITEOUTS_DELETE)
        rc = add_opaque_marker(w, *fd, fmt, &l, dir_st);
    size_t path_len = w->path.len, member_len = w->member.len;
    for (size_t i = 0; !rc && i < l.count; i++) {
        const Child *c = &l.items[i];
        if (!bytes_append(&w->member, c->name, c->len) || !path_push(&w->path, c->name, c->len)) {
            rc = fail_nomem(w);
            break;
        }
        if (c->whiteout)
            rc = add_whiteout(w, &c->st);
        else if (S_ISDIR(c->st.st_mode))
            rc = write_subdir(w, fd, c, fmt, depth);
        else
            rc = add_inode(w, *fd, c->name, &c->st, -1);
        bytes_truncate(&w->path, path_len);
        bytes_truncate(&w->member, member_len);
    }
    listing_free(&l);
    return rc;
}

/* ---- the Python type ---- */

static int TarWriter_init(TarWriter *w, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"write", "exclude_xattr_prefixes", NULL};
    PyObject *write, *exclude;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!:TarWriter", keywords, &write, &PyTuple_Type, &exclude))
        return -1;
    if (w->write) {
        PyErr_SetString(PyExc_TypeError, "TarWriter is initialised once");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(exclude);
    w->exclude = calloc((size_t)count + 1, sizeof *w->exclude);
    w->exclude_len = calloc((size_t)count + 1, sizeof *w->exclude_len);
    if (!w->exclude || !w->exclude_len) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        char *prefix;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(exclude, i), &prefix, &len) < 0)
            return -1;
        if (!(w->exclude[i] = malloc((size_t)len + 1))) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(w->exclude[i], prefix, (size_t)len + 1);
        w->exclude_len[i] = (size_t)len;
        w->exclude_count++;
    }
    if (!(w->buffer = PyByteArray_FromStringAndSize(NULL, BUFFER_SIZE)))
        return -1;
    if (!(w->view = PyMemoryView_FromObject(w->buffer)))
        return -1;
    w->buf = PyByteArray_AS_STRING(w->buffer);
    Py_INCREF(write);
    w->write = write;
    return 0;
}

static void TarWriter_dealloc(TarWriter *w) {
    Py_XDECREF(w->write);
    Py_XDECREF(w->view);
    Py_XDECREF(w->buffer);
    for (size_t i = 0; i < w->exclude_count; i++)
        free(w->exclude[i]);
    free(w->exclude);
    free(w->exclude_len);
    for (size_t i = 0; i < w->links.cap; i++)
        free(w->links.slots[i].name);
    free(w->links.slots);
    Bytes *scratch[] = {&w->path, &w->member, &w->names, &w->link, &w->pax, &w->dents, &w->message, &w->records.arena};
    for (size_t i = 0; i < sizeof scratch / sizeof *scratch; i++)
        free(scratch[i]->data);
    free(w->records.items);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static bool ready(TarWriter *w) {
    if (!w->write) {
        PyErr_SetString(PyExc_ValueError, "TarWriter.__init__ was not called");
        return false;
    }
    if (w->busy) {
        PyErr_SetString(PyExc_RuntimeError, "TarWriter is already writing (called again from out.write?)");
        return false;
    }
    return true;
}

/* Run body(w, arg), with the GIL released when release is set, and raise what it recorded. */
static PyObject *run(TarWriter *w, int (*body)(TarWriter *, const void *), const void *arg, bool release) {
    w->busy = true;
    if (release)
        w->released = PyEval_SaveThread();
    int rc = body(w, arg);
    if (release) {
        PyEval_RestoreThread(w->released);
        w->released = NULL;
    }
    w->busy = false;
    if (rc < 0)
        return raise_failure(w);
    Py_RETURN_NONE;
}

static int write_tree_body(TarWriter *w, const void *fmt) {
    struct stat st;
    if (lstat(w->path.data, &st) < 0)
        return fail_unreadable(w, errno);
    int fd = open_noatime(AT_FDCWD, w->path.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail_unreadable(w, errno);
    int rc = write_dir(w, &fd, &st, *(const enum whiteouts *)fmt, 0);
    if (fd >= 0)
        close(fd);
    return rc;
}

static PyObject *TarWriter_write_tree(TarWriter *w, PyObject *args) {
    const char *root, *name;
    Py_ssize_t root_len;
    if (!PyArg_ParseTuple(args, "y#s:write_tree", &root, &root_len, &name) || !ready(w))
        return NULL;
    enum whiteouts fmt;
    if (!strcmp(name, "delete"))
        fmt = WHITEOUTS_DELETE;
    else if (!strcmp(name, "overlay"))
        fmt = WHITEOUTS_OVERLAY;
    else if (!strcmp(name, "aufs"))
        fmt = WHITEOUTS_AUFS;
    else
        return PyErr_Format(PyExc_ValueError, "unknown whiteout format '%s': use delete, overlay or aufs", name);
    w->path.len = w->member.len = 0;
    if (!bytes_append(&w->path, root, (size_t)root_len) || !bytes_append(&w->member, "", 0))
        return PyErr_NoMemory();
    return run(w, write_tree_body, &fmt, true);
}

static int add_path_body(TarWriter *w, const void *root) {
    struct stat st;
    if (lstat(w->path.data, &st) < 0) {
        char text[256];
        const char *reason = strerror_r(errno, text, sizeof text);
        return fail_message(w, FAIL_UNREADABLE, "changed path '/%s' cannot be read in %s (%s)", w->member.data,
                            (const char *)root, reason);
    }
    return add_inode(w, AT_FDCWD, w->path.data, &st, -1);
}

static PyObject *TarWriter_add_path(TarWriter *w, PyObject *args) {
    const char *root, *member;
    Py_ssize_t root_len, member_len;
    if (!PyArg_ParseTuple(args, "y#y#:add_path", &root, &root_len, &member, &member_len) || !ready(w))
        return NULL;
    w->path.len = w->member.len = 0;
    if (!bytes_append(&w->path, root, (size_t)root_len) || !path_push(&w->path, member, (size_t)member_len) ||
        !bytes_append(&w->member, member, (size_t)member_len))
        return PyErr_NoMemory();
    return run(w, add_path_body, root, true);
}

static int add_whiteout_body(TarWriter *w, const void *unused) {
    (void)unused;
    return add_whiteout(w, NULL);
}

static PyObject *TarWriter_add_whiteout(TarWriter *w, PyObject *args) {
    const char *member;
    Py_ssize_t member_len;
    if (!PyArg_ParseTuple(args, "y#:add_whiteout", &member, &member_len) || !ready(w))
        return NULL;
    w->member.len = 0;
    if (!bytes_append(&w->member, member, (size_t)member_len))
        return PyErr_NoMemory();
    return run(w, add_whiteout_body, NULL, false);
}

static int finish_body(TarWriter *w, const void *unused) {
    (void)unused;
    return emit_zeros(w, 2 * BLOCK) < 0 ? -1 : flush(w);
}

static PyObject *TarWriter_finish(TarWriter *w, PyObject *Py_UNUSED(ignored)) {
    if (!ready(w))
        return NULL;
    return run(w, finish_body, NULL, false);
}

static PyMethodDef TarWriter_methods[] = {
    {"write_tree", (PyCFunction)TarWriter_write_tree, METH_VARARGS,
     "write_tree(root, whiteouts): members for everything below the directory root, in tree order."},
    {"add_path", (PyCFunction)TarWriter_add_path, METH_VARARGS,
     "add_path(root, member): the inode at root/member (not followed) as member."},
    {"add_whiteout", (PyCFunction)TarWriter_add_whiteout, METH_VARARGS,
     "add_whiteout(member): an empty 0600 file member with zero owner and time."},
    {"finish", (PyCFunction)TarWriter_finish, METH_NOARGS, "finish(): end the archive and write out the buffer."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TarWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "drivebay.archive._tarwrite.TarWriter",
    .tp_basicsize = sizeof(TarWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TarWriter(write, exclude_xattr_prefixes): layer tar members, written through write() in 1 MiB chunks.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TarWriter_init,
    .tp_dealloc = (destructor)TarWriter_dealloc,
    .tp_methods = TarWriter_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "drivebay.archive._tarwrite",
    .m_doc = "The layer tar writer's walk, reads and header encoding (used by drivebay.archive.writer).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__tarwrite(void) {
    if (PyType_Ready(&TarWriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    WriteError = PyErr_NewExceptionWithDoc("drivebay.archive._tarwrite.WriteError",
                                           "A member could not be written: args are (kind, message).", NULL, NULL);
    if (!WriteError || PyModule_AddObjectRef(m, "WriteError", WriteError) < 0 ||
        PyModule_AddObjectRef(m, "TarWriter", (PyObject *)&TarWriterType) < 0 ||
        PyModule_AddStringConstant(m, "WHITEOUT_PREFIX", WHITEOUT_PREFIX) < 0 ||
        PyModule_AddStringConstant(m, "OPAQUE_MARKER", OPAQUE_MARKER) < 0 ||
        PyModule_AddStringConstant(m, "AUFS_META_PREFIX", AUFS_META_PREFIX) < 0 ||
        PyModule_AddStringConstant(m, "OVERLAY_OPAQUE_XATTR", OVERLAY_OPAQUE_XATTR) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
