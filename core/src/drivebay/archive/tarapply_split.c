/* Making a tar-split for drivebay.archive._tarapply (the format is in split_doc, _tarapply.c). */

#include "tarapply.h"

/* ---- making a tar-split ------------------------------------------------------------------------------------ */

/* Adds `path` (len bytes) to `set`; -1 when out of memory. */
static int set_add(Applier *a, StrSet *set, const char *path, size_t len)
{
    return strset_add(set, path, len) < 0 ? fail_nomem(a) : 0;
}

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
int split_finish(Applier *a)
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

void split_all(Applier *a)
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
