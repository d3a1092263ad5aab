/* Writing a layer into its directory for drivebay.archive._tarapply: the directory stack, removing what is in
 * the way, metadata, members and whiteouts. Every path is reached from the root fd without following a
 * symlink (see _tarapply.c). */

#include "tarapply.h"

/* ---- the directory stack -------------------------------------------------------------------------------- */

void stack_pop_to(Applier *a, size_t depth)
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
 * directories are made when `create`; otherwise a missing one gives MISSING. On an error, the stack holds
 * the components before the one that failed (a rebuild names it). */
int walk_to(Applier *a, const Path *p, size_t n, int create, const char *entry)
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

int finish_dirs(Applier *a)
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

int apply_member(Applier *a)
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
