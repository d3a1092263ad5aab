/* Reading a layer tar for drivebay.archive._tarapply: errors, the stream, headers, names, tar-split records.
 *
 * Every byte of the stream is consumed here (next_chunk, read_header, drain), which is where a tar-split
 * being made keeps the bytes that are not a file's. */

#include "tarapply.h"

/* Records the first error; always returns -1. */
int fail(Applier *a, int kind, const char *fmt, ...)
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

int fail_io(Applier *a, const char *entry, int err)
{
    char text[256];
    if (!a->err_kind)
        a->err_errno = err;
    return fail(a, KIND_IO, "cannot write layer tar entry '%s' into %s (%s)", entry, a->root,
                strerror_r(err, text, sizeof text));
}

int fail_truncated(Applier *a, const char *where)
{
    return fail(a, KIND_INVALID, "the layer tar ends in the middle of a %s; the stream is truncated", where);
}

/* ---- tar-split records ---------------------------------------------------------------------------------- */

void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Writes the finished records to the split's fd; -1 (with sp->err) if the write fails. */
int split_flush(Splitter *sp)
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
Py_ssize_t reader_fill(Applier *a)
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
Py_ssize_t next_chunk(Applier *a, uint64_t want, const unsigned char **p)
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
int skip_bytes(Applier *a, uint64_t n, const char *where)
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
int drain(Applier *a)
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
int read_header(Applier *a)
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
int split_name(Applier *a, const char *name, const char *what, Path *out)
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
