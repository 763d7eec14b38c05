/*
 * list.h - intrusive doubly linked lists and container_of.
 *
 * A list node lives inside the object it links, so linking never allocates
 * and unlinking is O(1). An empty list head points at itself. Nodes that are
 * not on any list are kept self-linked (list_init / list_remove do that), so
 * list_remove on an unlinked node is harmless.
 */
#ifndef SB_LIST_H
#define SB_LIST_H

#include <stddef.h>

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef struct list_node {
    struct list_node *prev, *next;
} list_node_t;

static inline void list_init(list_node_t *n) { n->prev = n->next = n; }
static inline int list_empty(const list_node_t *h) { return h->next == h; }

static inline void list_insert_tail(list_node_t *h, list_node_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void list_remove(list_node_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

#define list_foreach_safe(pos, tmp, head) \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif
