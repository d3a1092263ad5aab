/* The internals of drivebay.archive._tarapply, shared by its source files (see _tarapply.c for the whole).
 *
 * _tarapply.c      the module: the apply's and the tar-split's entry points
 * tarapply_read.c  errors, the stream reader, tar headers (ustar, PAX, GNU), member names, tar-split records
 * tarapply_tree.c  the directory stack, removing what is in the way, metadata, creating members, whiteouts
 * tarapply_split.c making a tar-split: which members' bytes are left out, and whether the layer keeps them
 * tarapply_rebuild.c  rebuilding the tar from its tar-split and the applied layer's files
 * tarapply_strings.c  normalized paths and the string set
 */
#ifndef DRIVEBAY_ARCHIVE_TARAPPLY_H
#define DRIVEBAY_ARCHIVE_TARAPPLY_H

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

/* KIND_CHANGED: a rebuild found the layer no longer holding the bytes its tar-split names. */
enum { KIND_NONE, KIND_UNSAFE, KIND_INVALID, KIND_IO, KIND_NOMEM, KIND_CHANGED };
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
    int err_errno; /* of an IO error, for a caller that words its own message (a rebuild) */

    Splitter *split; /* set when making a tar-split instead of applying */
    int in_file;     /* the bytes being read are a file's, which a tar-split leaves out */
} Applier;

#define MISSING (-2) /* open_dir, walk_to: a directory that is not there (and was not to be made) */

/* A tar being rebuilt from its tar-split (see SplitReader in _tarapply.c). The applier is only the walk's:
 * the root fd, the directory stack and the error. */
typedef struct {
    Applier a;
    int split_fd;
    off_t split_off;    /* where the next read of the split starts */
    unsigned char *buf; /* bytes [pos, len) of the split are read and not yet used */
    size_t pos, len;
    uint64_t raw_left;  /* of the current raw record */
    int file_fd;        /* the current file's, or -1 */
    uint64_t file_left; /* of the current file */
    Bytes name;         /* the current file's path below the root */
    int ended;          /* the end record was read: `size` is the tar's */
    uint64_t size;
} Rebuild;

/* ---- functions shared between the source files ---------------------------------------------------------- */

int fail(Applier *a, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void path_clear(Path *p);
int path_push(Path *p, const char *comp, size_t len);
void path_truncate(Path *p, size_t n);
void path_free(Path *p);
uint64_t fnv1a(const char *s, size_t n);
long strset_lookup(const StrSet *set, const char *s, size_t n, uint64_t h);
long strset_add(StrSet *set, const char *s, size_t n);
void strset_free(StrSet *set);
int fail_io(Applier *a, const char *entry, int err);
int fail_truncated(Applier *a, const char *where);
void put_u32(unsigned char *p, uint32_t v);
void put_u64(unsigned char *p, uint64_t v);
int split_flush(Splitter *sp);
Py_ssize_t reader_fill(Applier *a);
Py_ssize_t next_chunk(Applier *a, uint64_t want, const unsigned char **p);
int skip_bytes(Applier *a, uint64_t n, const char *where);
int drain(Applier *a);
int read_header(Applier *a);
int split_name(Applier *a, const char *name, const char *what, Path *out);
void stack_pop_to(Applier *a, size_t depth);
int walk_to(Applier *a, const Path *p, size_t n, int create, const char *entry);
int finish_dirs(Applier *a);
int apply_member(Applier *a);
int split_finish(Applier *a);
void split_all(Applier *a);
void applier_free(Applier *a);
int rebuild_open(Rebuild *r, int split_fd, off_t offset, int root_fd);
size_t rebuild_fill(Rebuild *r, unsigned char *out, size_t room);
void rebuild_close(Rebuild *r);

static inline size_t path_start(const Path *p, size_t i) { return i ? p->ends[i - 1] + 1 : 0; }
static inline const char *path_component(const Path *p, size_t i) { return p->z.data + path_start(p, i); }
static inline size_t path_prefix_len(const Path *p, size_t n) { return n ? p->ends[n - 1] : 0; }
static inline long strset_find(const StrSet *set, const char *s, size_t n) { return strset_lookup(set, s, n, fnv1a(s, n)); }
static inline const char *strset_string(const StrSet *set, size_t index) { return set->arena.data + set->entries[index].off; }
static inline int fail_nomem(Applier *a) { return fail(a, KIND_NOMEM, "out of memory"); }
static inline uint64_t padding(uint64_t size) { return (BLOCK - size % BLOCK) % BLOCK; }
static inline int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }
static inline int stack_top_fd(const Applier *a) { return a->stack.n ? a->fds[a->stack.n - 1] : a->root_fd; }
static inline int stack_top_sgid(const Applier *a) { return a->stack.n ? a->sgid[a->stack.n - 1] : a->root_sgid; }
static inline int in_set(const StrSet *set, const char *path, size_t len) { return strset_find(set, path, len) >= 0; }

#endif
