/* Normalized relative paths and an open-addressing string set, for drivebay.archive._tarapply. */

#include "tarapply.h"

void path_clear(Path *p)
{
    p->n = p->s.len = p->z.len = 0;
    if (p->s.data)
        p->s.data[0] = p->z.data[0] = '\0';
}

int path_push(Path *p, const char *comp, size_t len)
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

void path_truncate(Path *p, size_t n)
{
    p->n = n;
    p->s.len = p->z.len = n ? p->ends[n - 1] : 0;
    if (p->s.data)
        p->s.data[p->s.len] = p->z.data[p->z.len] = '\0';
}

/* Length of the '/'-joined string of the first n components. */

void path_free(Path *p)
{
    free(p->s.data);
    free(p->z.data);
    free(p->ends);
}

/* ---- a set of strings (open addressing) ------------------------------------------------------------ */

uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

long strset_lookup(const StrSet *set, const char *s, size_t n, uint64_t h)
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
long strset_add(StrSet *set, const char *s, size_t n)
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

void strset_free(StrSet *set)
{
    free(set->arena.data);
    free(set->entries);
    free(set->slots);
}
