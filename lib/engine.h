/* engine: apply one Kafka message to a view store, as the view definition says.
 *
 * The engine is generic: it decodes the message (avro_dec), finds the rule for its
 * record name, resolves the view key (directly or through a link), checks the
 * entity's version, and runs the rule's operations on fragments (frag.h), all
 * inside the caller's write transaction. It never commits: the pipeline owns the
 * transaction so that offsets, fragments and dead letters commit together.
 *
 * Outcomes are data, not errors: a poison message is ENGINE_REJECTED with a reason
 * (the pipeline dead-letters it and moves on); only store failures (map full, disk
 * full, I/O) are returned as errors, and then the caller must abort and retry the
 * whole batch.
 *
 * A writer schema that came from a schema registry (catalog.h note 2) is kept in the
 * store's meta db ("schema/<id>") in the transaction of the first event that used it.
 *
 * Thread: the one writer thread that owns the store's write transactions. */
#ifndef RM_ENGINE_H
#define RM_ENGINE_H

#include "catalog.h"
#include "erasures.h"
#include "store.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENGINE_DEFAULT_MAX_MESSAGE_BYTES (1024 * 1024)

typedef struct engine engine_t;

typedef struct engine_msg {
    const char *em_topic;
    int32_t em_partition;
    int64_t em_offset;
    int64_t em_timestamp_ms;
    const void *em_key;   /* may be NULL */
    size_t em_key_len;
    const void *em_value; /* NULL: a tombstone */
    size_t em_value_len;
} engine_msg_t;

typedef enum engine_outcome {
    ENGINE_APPLIED = 0, /* changed the view (or learned a link) */
    ENGINE_STALE,       /* entity version not newer than the applied one: ignored */
    ENGINE_NO_RULE,     /* record type not used by this view: skipped */
    ENGINE_PARKED,      /* link not known yet: parked until it is */
    ENGINE_ERASED,      /* entity was erased: dropped */
    ENGINE_TOMBSTONE,   /* null value: no rule for tombstones on this topic: skipped */
    ENGINE_REJECTED,    /* poison: cannot be decoded or validated */
    ENGINE__OUTCOMES
} engine_outcome_t;

typedef struct engine_result {
    engine_outcome_t er_outcome;
    int er_error;            /* REJECTED: RM_EFRAME, RM_ESCHEMA, RM_EDECODE, RM_EVALIDATE;
                                or RM_EUNAVAIL: the writer schema's registry cannot answer
                                now, the message is NOT poison (retry it later) */
    char er_reason[192];     /* REJECTED: short reason, never payload bytes */
    int er_rule;             /* index of the rule applied, or -1 */
    int64_t er_event_ms;     /* occurred_at, when decoded */
    size_t er_unparked;      /* parked events applied because this event made a link */
} engine_result_t;

/* A parked event that failed validation when its link arrived (engine_opts_t). msg and
 * res are borrowed for the call; msg's bytes are the parked copy, valid until it returns.
 * A non-zero return is handed back by engine_apply (then abort the txn). */
typedef int (*engine_rejected_cb)(void *ctx, MDB_txn *txn, const engine_msg_t *msg,
                                  const engine_result_t *res);

typedef struct engine_opts {
    size_t eo_max_message_bytes; /* larger values are rejected; 0 = default */
    /* The view's erasure ledger (erasures.h), borrowed; NULL: none (tests, tools). With
     * it, engine_txn_begin first erases in the store every key the ledger holds that the
     * store has not seen yet (a new generation: all of them), and engine_txn_precommit
     * appends the keys the transaction erased — durably, before the commit — unless the
     * ledger is read-only. A store that predates the ledger adds its erasures to it in
     * its first transaction. So an erasure outlives the log record that caused it. */
    erasures_t *eo_erasures;
    /* Called, in the applying transaction, for each parked event that is REJECTED when
     * the link it waited for arrives, so that it is dead-lettered exactly as it would have
     * been had it arrived after its link. NULL: such events are only counted out. */
    engine_rejected_cb eo_unparked_rejected;
    void *eo_unparked_rejected_ctx;
} engine_opts_t;

/* view, catalog and store must outlive the engine. Returns NULL on allocation failure. */
engine_t *engine_new(const view_t *view, const catalog_t *catalog, store_t *store,
                     const engine_opts_t *opts);
void engine_destroy(engine_t *engine);

/* Must be called after beginning each write transaction (loads the parking sequence;
 * the first time on a store written by an older version, it also rewrites the parked
 * events in the current format; then applies erasures the ledger has and the store
 * lacks). Errors: store errors, RM_EIO (the ledger): abort the txn and retry. */
int engine_txn_begin(engine_t *engine, MDB_txn *txn);
/* Must be called before committing it (persists engine state in the same txn, and
 * makes the txn's erasures durable in the ledger). On error, abort and retry. */
int engine_txn_precommit(engine_t *engine, MDB_txn *txn);

/* Applies msg in txn. Returns 0 with ret_result filled, or a store error
 * (RM_EMAPFULL, RM_EDISKFULL, RM_EIO, RM_ESTORE): then abort txn and retry the batch. */
int engine_apply(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
                 engine_result_t *ret_result);

/* What engine_view_key tells about a message (engine_key_t.ek_kind). */
typedef enum engine_key_kind {
    ENGINE_KEY_NONE = 0, /* applying it changes nothing (no rule, a tombstone nothing
                            declares, a link whose entity was erased): any position does */
    ENGINE_KEY_VIEW,     /* it writes under the view key ek_key only, through links known
                            now, plus the link it claims (ek_learns) */
    ENGINE_KEY_PARKS,    /* it would park: its link does not know the foreign id yet
                            (ek_key: the link's name, a NUL, the id); it writes under that
                            id only */
    ENGINE_KEY_UNKNOWN,  /* cannot tell, or it may write under other keys: poison, a link
                            or an id the checks before any write reject, an erasure, a tombstone
                            that erases or deletes, a repair, a dead-letter-handled record,
                            a rule claiming two links */
} engine_key_kind_t;

typedef struct engine_key {
    engine_key_kind_t ek_kind;
    bool ek_via_link;       /* the rule routes through a link (VIEW, PARKS, or NONE for an
                               erased link): a claim in between changes the answer */
    bool ek_learns;         /* the rule claims a link ... */
    uint64_t ek_link_hash;  /* ... this one (a hash of the link's name and foreign id) */
    size_t ek_key_len;      /* VIEW: the view key; PARKS: the link and id */
    char ek_key[VIEW_KEY_MAX_BYTES];
} engine_key_t;

/* The view key msg would write if it were applied in txn now, without applying it: the
 * decoder path engine_apply takes (writer schemas cached the same way), the rule, the
 * checks engine_apply makes before it writes, and the view key directly or through a
 * link read in txn (nothing is written). Returns 0 with *ret_key filled; RM_EUNAVAIL
 * with a short reason when the writer schema's registry cannot answer now (as
 * engine_apply's er_error would say: not poison); or a store error. The answer holds
 * only while no message with a link operation or an erasure is applied in between
 * (engine_key_t says which messages do that). */
int engine_view_key(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, engine_key_t *ret_key,
                    char *reason, size_t reasonlen);

/* A parked event handed out by engine_expire_parked (borrowed for the callback). */
typedef struct engine_parked {
    engine_msg_t ep_msg;
    const char *ep_link; /* the link it waited for */
    int64_t ep_parked_at_ms; /* wall clock when it was parked in this store */
} engine_parked_t;
typedef int (*engine_expired_cb)(void *ctx, MDB_txn *txn, const engine_parked_t *parked);

/* Removes, in txn, the parked events that were parked in this store before cutoff_ms
 * (wall clock; the message's own timestamp plays no part: an old event replayed now has
 * waited no time), calling cb for each first (the pipeline dead-letters them with reason
 * link-timeout). Stops at the first non-zero return of cb and returns it. */
int engine_expire_parked(engine_t *engine, MDB_txn *txn, int64_t cutoff_ms, engine_expired_cb cb,
                         void *ctx, size_t *ret_expired);

/* Number of parked events (for metrics), counted in txn. */
int engine_parked_count(engine_t *engine, MDB_txn *txn, size_t *ret_count);

const char *engine_outcome_name(engine_outcome_t outcome);

#endif
