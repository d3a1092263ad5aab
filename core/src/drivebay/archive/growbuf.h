/* Growable byte strings and arrays, shared by the C modules of drivebay.archive (_tarapply, _tarwrite).
 *
 * Both grow by doubling, so appending n items costs O(n) copies in all. Allocation failure is reported
 * by returning false and leaves the buffer as it was; the callers turn it into their own out-of-memory
 * error. */
#ifndef DRIVEBAY_ARCHIVE_GROWBUF_H
#define DRIVEBAY_ARCHIVE_GROWBUF_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `need` items of `size` bytes in the array *items of capacity *cap, doubling from `first`. */
static inline bool grow_array(void **items, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap)
        return true;
    size_t next = *cap ? *cap * 2 : first;
    while (next < need)
        next *= 2;
    void *grown = realloc(*items, next * size);
    if (!grown)
        return false;
    *items = grown;
    *cap = next;
    return true;
}

/* GROW(array, cap, need, first): grow_array for a typed array pointer and its capacity. */
#define GROW(items, cap, need, first) grow_array((void **)&(items), &(cap), (need), sizeof *(items), (first))

/* A malloc'ed byte string, always NUL-terminated after `len` once it holds anything (paths go straight
 * to system calls from here). */
typedef struct {
    char *data;
    size_t len, cap;
} Bytes;

/* Room for `extra` more bytes and a NUL. */
static inline bool bytes_reserve(Bytes *b, size_t extra)
{
    void *data = b->data;
    if (!grow_array(&data, &b->cap, b->len + extra + 1, 1, 256))
        return false;
    b->data = data;
    return true;
}

static inline bool bytes_append(Bytes *b, const void *src, size_t n)
{
    if (!bytes_reserve(b, n))
        return false;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static inline bool bytes_set(Bytes *b, const void *src, size_t n)
{
    b->len = 0;
    return bytes_append(b, src, n);
}

static inline void bytes_truncate(Bytes *b, size_t len)
{
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

#endif
