/* Rebuilding a tar from its tar-split for drivebay.archive._tarapply (the format is in split_doc, _tarapply.c).
 *
 * Raw records are copied from the split; each file's bytes are read from the applied layer straight into the
 * caller's buffer. A file is reached from the root fd by the apply's own walk (walk_to), one directory at a
 * time with O_NOFOLLOW, and opened with O_NOFOLLOW: a layer changed after the load so that a directory on
 * the way is a symlink gives an error naming the file, never bytes from outside the layer. The walk keeps
 * the chain of directory fds, and a tar lists a directory's files together, so most files need one open.
 *
 * Nothing here touches Python: the caller releases the GIL around rebuild_fill. Errors are the applier's
 * (kind, message), without the layer's name, which the caller adds.
 */

#include "tarapply.h"

/* A file's path in a split longer than this is corruption, as is an extension header that long in a tar. */
#define MAX_SPLIT_NAME MAX_EXTENSION

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static int split_truncated(Rebuild *r) { return fail(&r->a, KIND_INVALID, "its tar-split is truncated"); }

/* Makes `n` (at most CHUNK) bytes of the split readable at pos: 1, 0 if the split ends first, -1 if a read
 * fails. */
static int split_ensure(Rebuild *r, size_t n)
{
    if (r->len - r->pos >= n)
        return 1;
    memmove(r->buf, r->buf + r->pos, r->len - r->pos);
    r->len -= r->pos;
    r->pos = 0;
    while (r->len < n) {
        /* pread: the caller's file object keeps its own offset on the same open file. */
        ssize_t got = pread(r->split_fd, r->buf + r->len, CHUNK - r->len, r->split_off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            char text[256];
            return fail(&r->a, KIND_IO, "cannot read its tar-split (%s)", strerror_r(errno, text, sizeof text));
        }
        if (got == 0)
            return 0;
        r->len += (size_t)got;
        r->split_off += got;
    }
    return 1;
}

/* Drops the error the apply's code recorded, so that the rebuild can record its own. */
static void forget_error(Applier *a)
{
    free(a->err_msg);
    a->err_msg = NULL;
    a->err_kind = KIND_NONE;
}

static int fail_unreadable(Rebuild *r, int err)
{
    char text[256];
    return fail(&r->a, KIND_CHANGED, "cannot read file '%s' of the layer (%s)", r->name.data,
                strerror_r(err, text, sizeof text));
}

/* The walk to the file's directory failed with `rc`. Its message speaks of writing a member: this one says
 * which file cannot be read, and which directory on its way is wrong. */
static int fail_walk(Rebuild *r, int rc)
{
    Applier *a = &r->a;
    int kind = a->err_kind, err = rc == MISSING ? ENOENT : a->err_errno;
    if (kind == KIND_NOMEM)
        return -1;
    forget_error(a);
    /* The stack holds the directories before the one that failed. */
    int len = (int)path_prefix_len(&a->parts, a->stack.n + 1);
    if (kind == KIND_UNSAFE)
        return fail(a, KIND_CHANGED, "cannot read file '%s' of the layer (its directory '%.*s' is a symlink now)",
                    r->name.data, len, a->parts.s.data);
    if (kind == KIND_INVALID)
        return fail(a, KIND_CHANGED, "cannot read file '%s' of the layer ('%.*s' is not a directory now)",
                    r->name.data, len, a->parts.s.data);
    return fail_unreadable(r, err);
}

/* Opens the regular file r->name below the root, never through a symlink, for its r->file_left bytes. */
static int open_file(Rebuild *r)
{
    Applier *a = &r->a;
    if (split_name(a, r->name.data, "file", &a->parts) < 0 || !a->parts.n) {
        if (a->err_kind == KIND_NOMEM)
            return -1;
        forget_error(a);
        return fail(a, KIND_INVALID, "its tar-split names the file '%s', which is not below the layer root",
                    r->name.data);
    }
    int parent = walk_to(a, &a->parts, a->parts.n - 1, 0, r->name.data);
    if (parent < 0)
        return fail_walk(r, parent);
    /* O_NONBLOCK: a fifo put in the file's place must fail the rebuild, not hang it in open. */
    int fd = openat(parent, path_component(&a->parts, a->parts.n - 1), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail_unreadable(r, errno);
    struct stat st;
    int err = fstat(fd, &st) < 0 ? errno : 0;
    if (err || !S_ISREG(st.st_mode)) {
        close(fd);
        if (err)
            return fail_unreadable(r, err);
        return fail(a, KIND_CHANGED, "cannot read file '%s' of the layer (it is not a regular file now)", r->name.data);
    }
    r->file_fd = fd;
    return 0;
}

/* Reads the path of a file record into r->name. */
static int read_name(Rebuild *r, uint32_t len)
{
    if (len > MAX_SPLIT_NAME)
        return fail(&r->a, KIND_INVALID, "its tar-split names a file with a %u-byte path", len);
    r->name.len = 0;
    if (!bytes_reserve(&r->name, len))
        return fail_nomem(&r->a);
    while (len) {
        int rc = split_ensure(r, 1);
        if (rc <= 0)
            return rc < 0 ? -1 : split_truncated(r);
        size_t take = r->len - r->pos < len ? r->len - r->pos : len;
        bytes_append(&r->name, r->buf + r->pos, take); /* cannot fail: reserved */
        r->pos += take;
        len -= (uint32_t)take;
    }
    if (strlen(r->name.data) != r->name.len)
        return fail(&r->a, KIND_INVALID, "its tar-split names a file whose path holds a NUL");
    return 0;
}

/* Reads the next record: the start of raw bytes or of a file (which is opened), or the end. */
static int next_record(Rebuild *r)
{
    int rc = split_ensure(r, 1);
    if (rc <= 0)
        return rc < 0 ? -1 : split_truncated(r);
    unsigned char kind = r->buf[r->pos];
    size_t head = kind == 'R' ? 5 : kind == 'F' ? 13 : kind == 'E' ? 9 : 0;
    if (!head)
        return fail(&r->a, KIND_INVALID, "its tar-split has an unknown record type 0x%02x", kind);
    if ((rc = split_ensure(r, head)) <= 0)
        return rc < 0 ? -1 : split_truncated(r);
    const unsigned char *p = r->buf + r->pos + 1;
    r->pos += head;
    if (kind == 'R') {
        r->raw_left = get_u32(p);
    } else if (kind == 'E') {
        r->size = get_u64(p);
        r->ended = 1;
    } else {
        r->file_left = get_u64(p);
        if (read_name(r, get_u32(p + 8)) < 0 || open_file(r) < 0)
            return -1;
        if (!r->file_left) { /* never written by split, but an empty file is simply read */
            close(r->file_fd);
            r->file_fd = -1;
        }
    }
    return 0;
}

/* Reads up to `n` (> 0) bytes of the current file into out: their count, or 0 after an error. */
static size_t read_file(Rebuild *r, unsigned char *out, size_t n)
{
    if (n > r->file_left)
        n = (size_t)r->file_left;
    ssize_t got;
    while ((got = read(r->file_fd, out, n)) < 0 && errno == EINTR)
        ;
    if (got < 0) {
        char text[256];
        fail(&r->a, KIND_IO, "cannot read file '%s' of the layer (%s)", r->name.data,
             strerror_r(errno, text, sizeof text));
        return 0;
    }
    if (got == 0) {
        fail(&r->a, KIND_CHANGED, "file '%s' is shorter than when the layer was loaded", r->name.data);
        return 0;
    }
    r->file_left -= (uint64_t)got;
    if (!r->file_left) {
        close(r->file_fd);
        r->file_fd = -1;
    }
    return (size_t)got;
}

/* Fills out (room bytes) with the next bytes of the tar: their count, short only at the end or on an error
 * (a->err_kind). */
size_t rebuild_fill(Rebuild *r, unsigned char *out, size_t room)
{
    size_t filled = 0;
    while (filled < room && !r->ended && !r->a.err_kind) {
        if (r->raw_left) {
            int rc = split_ensure(r, 1);
            if (rc <= 0) {
                if (rc == 0)
                    split_truncated(r);
                break;
            }
            size_t n = r->len - r->pos;
            if (n > room - filled)
                n = room - filled;
            if (n > r->raw_left)
                n = (size_t)r->raw_left;
            memcpy(out + filled, r->buf + r->pos, n);
            r->pos += n;
            r->raw_left -= n;
            filled += n;
        } else if (r->file_fd >= 0) {
            filled += read_file(r, out + filled, room - filled);
        } else {
            next_record(r);
        }
    }
    /* The next record is read as soon as one is done, so that a caller that reads exactly the tar's size
     * (or nothing, for an empty tar) meets the end record, or learns that the split is truncated. */
    if (!r->a.err_kind && !r->ended && !r->raw_left && r->file_fd < 0)
        next_record(r);
    return filled;
}

/* Sets up a rebuild from the split at `offset` of split_fd (just after its magic), with the files below
 * root_fd; both fds are duplicated. -1 with errno set if that fails. */
int rebuild_open(Rebuild *r, int split_fd, off_t offset, int root_fd)
{
    memset(r, 0, sizeof *r);
    r->split_fd = r->a.root_fd = r->file_fd = -1;
    r->split_off = offset;
    r->a.root = "the layer"; /* named by no message a rebuild keeps, see fail_walk */
    if (!(r->buf = malloc(CHUNK))) {
        errno = ENOMEM;
        return -1;
    }
    if ((r->split_fd = fcntl(split_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
        (r->a.root_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return -1;
    return 0;
}

/* Closes every fd of the rebuild and frees its memory; it may be called again. */
void rebuild_close(Rebuild *r)
{
    applier_free(&r->a); /* the directory stack, the root fd, the error */
    memset(&r->a, 0, sizeof r->a);
    r->a.root_fd = -1;
    if (r->file_fd >= 0)
        close(r->file_fd);
    if (r->split_fd >= 0)
        close(r->split_fd);
    r->file_fd = r->split_fd = -1;
    free(r->buf);
    free(r->name.data);
    r->buf = NULL;
    r->name = (Bytes){0};
}
