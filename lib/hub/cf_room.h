/*
 * Internal: rooms, memberships and per-room history.
 *
 * The table maps names to rooms (chained hash, keyed SipHash so clients
 * cannot pick colliding names). A membership node links one client and
 * one room and sits in both the room's member list (join order, which is
 * the fan-out order) and the client's room list; it is allocated at join,
 * so fan-out itself never allocates.
 *
 * A room lives while it has members or history. A room with history but
 * no members is "idle": it waits on an LRU list and is evicted, oldest
 * use first, when a new room is needed and max rooms are held.
 *
 * History memory is bounded for the whole table: every kept entry costs
 * its wire bytes plus CF_HIST_ENTRY_COST, and once the sum passes
 * hist_limit the oldest entries of the least recently used rooms go,
 * idle rooms first, then rooms with members (a second LRU list). Each
 * entry is dropped at most once, so a push stays O(1) amortized. Rings
 * grow and shrink with their room's entries, so they stay bounded too.
 */
#ifndef CF_ROOM_H
#define CF_ROOM_H

#include <chatfanout/cf_hub.h>

#include "cf_list.h"

/*
 * What a history entry costs beyond its wire bytes: the message header,
 * room name and headroom of its block, and its ring slot, rounded up.
 */
#define CF_HIST_ENTRY_COST 256u

typedef struct cf_room cf_room;

typedef struct cf_member {
  cf_list room_link;   /* in room->members */
  cf_list client_link; /* in the client's room list */
  cf_room *room;
  cf_client *client;
} cf_member;

struct cf_room {
  cf_room *next;      /* hash chain */
  uint64_t hash;      /* of the name, kept for rehashing */
  cf_list members;    /* cf_member.room_link, in join order */
  uint32_t nmembers;
  /* With history: in cf_rooms.idle (no members) or cf_rooms.busy;
   * unlinked while the room has no history. */
  cf_list lru_link;
  cf_msg **hist;      /* ring of history entries; NULL until needed */
  uint32_t hist_cap;  /* slots of hist, <= cf_rooms.history */
  uint32_t hist_head; /* slot of the oldest entry */
  uint32_t hist_count;/* entries, <= hist_cap */
  uint8_t name_len;   /* 1..CF_ROOM_MAX */
  char name[CF_ROOM_MAX];
};

typedef struct cf_rooms {
  const cf_mem *mem;  /* the hub's allocator, outlives the table */
  cf_room **buckets;  /* nbuckets chains; NULL until the first room */
  uint32_t nbuckets;  /* 0 or a power of two */
  uint32_t count;     /* rooms held */
  uint32_t max;       /* most rooms held at once, >= 1 */
  uint32_t history;   /* history entries per room; 0: none */
  cf_list idle;       /* idle rooms, least recently used first */
  cf_list busy;       /* rooms with members and history, same order */
  size_t hist_bytes;  /* cost of all entries (wire + CF_HIST_ENTRY_COST) */
  size_t hist_limit;  /* most hist_bytes kept, >= one entry's cost */
  uint64_t key[2];    /* SipHash key */
} cf_rooms;

/* hist_limit starts unbounded; the owner sets it before any push. */
void cf__rooms_init(cf_rooms *t, const cf_mem *mem, uint32_t max,
                    uint32_t history, const uint64_t key[2]);

/* Frees every room; memberships must be gone already. */
void cf__rooms_deinit(cf_rooms *t);

/*
 * Checks a room name: 1..CF_ROOM_MAX bytes of printable ASCII without
 * space (0x21-0x7e). CF_OK or CF_ERR_INVALID.
 */
int cf__room_name_check(const char *name, size_t len);

/* The room called name (already checked), or NULL. */
cf_room *cf__rooms_find(const cf_rooms *t, const char *name, size_t len);

/*
 * Finds or creates the room called name (already checked). Creating one
 * when max rooms are held evicts the least recently used idle room.
 * A new room is empty: the caller must fill it or cf__room_settle() it.
 * With with_hist, a new room also gets its history ring. CF_OK,
 * CF_ERR_LIMIT (nothing to evict) or CF_ERR_NOMEM (all unchanged).
 */
int cf__rooms_open(cf_rooms *t, const char *name, size_t len,
                   int with_hist, cf_room **out);

/*
 * cf__rooms_open() in two steps, for a caller that must know it can have
 * the room before it commits to anything. prepare allocates a room (with
 * its history ring when with_hist) for a name not in the table, without
 * changing which rooms the table holds: CF_OK, CF_ERR_LIMIT (max rooms
 * held, none idle to evict) or CF_ERR_NOMEM, *out set only on CF_OK.
 * insert then names and links it, evicting the least recently used idle
 * room when max rooms are held; rooms must not be opened or freed in
 * between. It returns CF_OK, or CF_ERR_LIMIT (nothing linked) if they
 * were. A prepared room not inserted goes back with cf__room_discard().
 */
int cf__rooms_prepare(cf_rooms *t, int with_hist, cf_room **out);
int cf__rooms_insert(cf_rooms *t, cf_room *r, const char *name, size_t len);
void cf__room_discard(cf_rooms *t, cf_room *r);

/*
 * Call after a room was used (members changed, history added): frees it
 * when it has neither members nor history, else makes it the most
 * recently used room of its LRU list (if it has history).
 * Returns 1 if the room was freed.
 */
int cf__room_settle(cf_rooms *t, cf_room *r);

/*
 * Makes room in r's history ring for one more entry: CF_OK or
 * CF_ERR_NOMEM (r unchanged).
 */
int cf__room_hist_reserve(cf_rooms *t, cf_room *r);

/*
 * Appends a reference to m to r's history, dropping the oldest when
 * full, makes r the most recently used room of its list, then drops
 * entries hub-wide while over hist_limit (see above). Rooms left with
 * neither members nor history are freed then, but never r: it keeps at
 * least m. Needs a successful reserve first, and m's cost must be at
 * most hist_limit; does nothing when history is 0.
 */
void cf__room_hist_push(cf_rooms *t, cf_room *r, cf_msg *m);

/* History entry i, 0 being the oldest; i < r->hist_count. */
cf_msg *cf__room_hist_at(const cf_rooms *t, const cf_room *r, uint32_t i);

/* Links a prepared membership node at the tail of r's members. */
void cf__room_add_member(cf_rooms *t, cf_room *r, cf_member *mb);

/* Unlinks mb from its room (not from the client) and settles the room. */
void cf__room_remove_member(cf_rooms *t, cf_member *mb);

#endif /* CF_ROOM_H */
