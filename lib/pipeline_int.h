/* pipeline_int: what the parts of the pipeline (pipeline*.c) share; private to them.
 * The design notes the parts refer to ("note N") are at the top of pipeline.h. Everything
 * here runs on the consumer thread (pipeline_run's), except where a comment says otherwise. */
#ifndef RM_PIPELINE_INT_H
#define RM_PIPELINE_INT_H

#include "pipeline.h"
#include "failpoint.h"
#include "metrics.h"
#include "outbox.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define PIPELINE_METADATA_TIMEOUT_MS 5000
#define PIPELINE_SEEK_TIMEOUT_MS 2000 /* a synchronous seek of one partition */
#define PIPELINE_BACKOFF_MAX_MS 5000 /* disk-full / I/O retry backoff ceiling */
#define PIPELINE_MAX_PARTITIONS 4096
#define PIPELINE_OUTBOX_FLUSH_MS 2000 /* bounded wait for dead-letter acks between batches */

/* Why a stored offset is outside its partition's log (pipeline_handle_gap); the
 * readmodel_gaps_total label and the "cause" of the gap record. */
typedef enum pipeline_gap_cause {
    PIPELINE_GAP_RETENTION = 0, /* below the log start: deleted before the view saw it */
    PIPELINE_GAP_LOG_TRUNCATED, /* beyond the log end: topic recreated, or unclean election */
    PIPELINE_GAP_UNKNOWN, /* the watermarks could not be read: not recorded */
    PIPELINE_GAP__CAUSES
} pipeline_gap_cause_t;

/* The labels of pipeline_gap_cause_t, in its order. */
extern const char *const pipeline_gap_cause_names[PIPELINE_GAP__CAUSES];

typedef struct pipeline_tp {
    int pt_topic; /* index into the view's topics */
    int32_t pt_partition;
    int64_t pt_next_offset; /* committed in the store; -1: nothing stored yet */
    int64_t pt_last_event_ms;
    int64_t pt_target; /* --until-caught-up: high watermark at start; with
                          po_stop_offsets: the stop offset (0: not listed) */
    bool pt_stop_reached; /* po_stop_offsets: a message at or above pt_target arrived */
    int64_t pt_batch_next; /* next offset after the open batch (-1: untouched) */
    int64_t pt_batch_event_ms;
    int64_t pt_gate_ms; /* > 0: skip messages older than this (note 6 in pipeline.h) */
    int64_t pt_start_offset; /* where this run started the partition (-1: unknown) */
    bool pt_gap_pending; /* pipeline_load_targets: a gap to handle before this run is caught up */
    /* Link topics only (pipeline_expire_parked): every message produced before pt_read_ms (wall
     * clock) has been applied; a probe (pt_probe_ms > 0) waits for the stored offset to
     * reach pt_probe_high, the high watermark seen at pt_probe_ms. */
    int64_t pt_read_ms;
    int64_t pt_probe_ms;
    int64_t pt_probe_high;
    /* Registry outage (note 10 in pipeline.h): the message at pt_held_offset could not be
     * decoded because its schema could not be fetched; the partition is paused and
     * sought back to it until pt_resume_ms. -1: not held. */
    int64_t pt_held_offset;
    int64_t pt_batch_held; /* the open batch held the partition at this offset, or -1 */
    uint32_t pt_pass_barriers; /* pipeline_order_pass: barriers of the pass met so far */
    int64_t pt_resume_ms; /* monotonic */
    int64_t pt_hold_backoff_ms;
    bool pt_expect_held; /* resumed: the first message must be pt_held_offset */
    int64_t pt_reseek_ms; /* monotonic: when fill_batch last sought it back again */
} pipeline_tp_t;

/* What a scrape sees: copied by the consumer thread under pi_lock after each batch. */
typedef struct pipeline_snapshot {
    pipeline_stats_t ps_stats;
    uint64_t *ps_applied_by_rule; /* per view rule: events applied */
    metrics_hist_t ps_batch_events;
    metrics_hist_t ps_commit_seconds;
    store_sync_stats_t ps_sync; /* of the store being written */
    pipeline_tp_t *ps_tps;
    int64_t *ps_high; /* per partition: high watermark as last seen */
    size_t ps_tp_count;
    size_t ps_parked;
    size_t ps_map_bytes;
    size_t ps_used_bytes;
    int64_t ps_generation;
    outbox_stats_t ps_outbox;
    uint64_t ps_gaps[PIPELINE_GAP__CAUSES];
    uint64_t ps_expired;
    uint64_t ps_switch_failures;
    uint64_t ps_expiry_checks;
    uint64_t ps_registry_waits;
    size_t ps_registry_paused;
} pipeline_snapshot_t;

/* One message of a pass, in the order it is applied (pipeline_order_pass). */
typedef struct pipeline_entry {
    uint32_t pe_slot; /* index into pi_batch: arrival order */
    uint32_t pe_class; /* 2 x barriers of its partition before it, + 1 for a barrier */
    pipeline_tp_t *pe_tp; /* its partition */
    const char *pe_key; /* the key it is sorted by (in pi_order_keys), or NULL */
    uint32_t pe_key_off; /* ... its offset there while the pass's keys are collected */
    uint32_t pe_key_len;
    uint64_t pe_link_hash; /* the link it claims (engine_key_t) */
    uint8_t pe_kind; /* engine_key_kind_t */
    bool pe_via_link;
    bool pe_learns;
} pipeline_entry_t;

/* A link claim of a pass: hash and index into pi_order (pipeline_order.c). */
typedef struct pipeline_claim {
    uint64_t pc_hash;
    uint32_t pc_entry;
} pipeline_claim_t;

struct pipeline {
    pipeline_opts_t pi_opts;
    pthread_mutex_t pi_lock; /* guards pi_snap */
    pipeline_snapshot_t pi_snap;
    uint64_t *pi_applied_by_rule; /* consumer thread's live counters */
    metrics_hist_t pi_batch_events;
    metrics_hist_t pi_commit_seconds;
    int64_t pi_next_snapshot_ms;
    int64_t pi_next_expire_ms;
    int64_t pi_parked_max_age_ms;
    int64_t pi_parked_check_ms; /* projector.parked_check_interval_ms */
    const store_t *pi_probed_store; /* the store the link-topic probes were taken for */
    uint64_t pi_expiry_checks; /* expiry passes run */
    bool pi_continue_on_gap;
    int pi_gap_tp; /* index of a partition that hit a gap, or -1 */
    int64_t pi_gap_offset; /* the offset that was out of range */
    uint64_t pi_gaps[PIPELINE_GAP__CAUSES]; /* gaps detected since start, by cause */
    uint64_t pi_expired; /* parked events dead-lettered (link-timeout) */
    uint64_t pi_switch_failures; /* pipeline_switch_store calls that kept the old store */
    rd_kafka_t *pi_rk;
    engine_t *pi_engine;
    outbox_t *pi_outbox;
    pipeline_tp_t *pi_tps;
    size_t pi_tp_count;
    bool *pi_link_topic; /* per view topic: carries events that learn links */
    rd_kafka_message_t **pi_batch;
    bool *pi_batch_skip; /* per batch slot: before the start time (note 6) */
    size_t pi_batch_count;
    size_t pi_batch_cap;
    pipeline_close_t pi_batch_closed_by; /* what closed the open batch (fill_batch) */
    int64_t pi_batch_max_events;
    int64_t pi_batch_max_ms;
    int64_t pi_metadata_refresh_ms;
    int64_t pi_next_metadata_ms;
    volatile sig_atomic_t pi_stop;
    pipeline_stats_t pi_stats;
    failpoint_skips_t *pi_skips; /* RM_TEST_SKIP_APPLY; NULL (the normal case): none */
    /* Kafka offset commits wait until the store commit they describe is durable
     * (commit_kafka_offsets): the snapshot waiting for the disk, and the newer one. */
    rd_kafka_topic_partition_list_t *pi_kafka_waiting;
    uint64_t pi_kafka_waiting_txnid;
    rd_kafka_topic_partition_list_t *pi_kafka_next;
    uint64_t pi_kafka_next_txnid;
    uint64_t pi_batch_hook_skips; /* skipped by it in the open batch's transaction */
    uint64_t pi_registry_waits; /* messages held for the schema registry (note 10) */
    size_t pi_registry_marked; /* paused partitions the store's mark says (note 10) */
    char pi_registry_reason[192]; /* why the last message was held */
    pipeline_entry_t *pi_order; /* the pass being applied (pi_batch_cap entries) */
    pipeline_claim_t *pi_claims; /* pipeline_order_pass's scratch (pi_batch_cap entries) */
    buf_t pi_order_keys; /* the keys of pi_order's entries */
};

/* pipeline_order.c: the order a batch is applied in (pipeline.c, apply_batch_once). */

/* Fills pl->pi_order with the batch's messages of one pass (link_pass: those of topics
 * that learn links; else the others) and returns their number in *ret_count. Unsorted:
 * in arrival order. Sorted: computes each message's view key in txn (engine_view_key) and
 * orders them by it, keeping every partition's order where it matters; a message whose
 * writer schema cannot be fetched now holds its partition (pt_batch_held, note 10) before
 * anything of the pass is applied. Returns 0 or a store error. */
int pipeline_order_pass(pipeline_t *pl, MDB_txn *txn, bool link_pass, bool sorted,
                        size_t *ret_count);

/* pipeline_assign.c: which partitions the consumer reads, from where, up to where, and
 * what happens when a stored offset is outside its log. */

/* The partition of topic (an index into the view's topics), or NULL. */
pipeline_tp_t *pipeline_tp_find(pipeline_t *pl, int topic, int32_t partition);
/* Fills tps (pi_tps, or the copy a switch prepares) with store's offsets where none is
 * known yet (pt_next_offset < 0). */
int pipeline_load_offsets(pipeline_t *pl, store_t *store, pipeline_tp_t *tps);
/* (Re)assigns every partition of tps at its next offset (or where this run started it,
 * or the beginning). Fills in pt_start_offset and, for a start time, pt_gate_ms of tps.
 * On error the consumer's assignment is unchanged. */
int pipeline_assign_tps(pipeline_t *pl, pipeline_tp_t *tps);
/* Discovers the partitions of the view's topics; assigns when new ones appeared. */
int pipeline_refresh_partitions(pipeline_t *pl);
/* --until-caught-up (or po_stop_offsets): every partition's target, and the gaps to
 * handle before anything is applied (pt_gap_pending). */
int pipeline_load_targets(pipeline_t *pl);
bool pipeline_caught_up(const pipeline_t *pl);
/* A consumer error message; an offset out of range becomes the gap to handle. */
void pipeline_handle_error_message(pipeline_t *pl, const rd_kafka_message_t *msg);
/* The first gap pipeline_load_targets found, as if a fetch had met it. */
void pipeline_take_pending_gap(pipeline_t *pl);
/* Records the gap at pi_gap_tp, then returns RM_EGAP or resumes (projector.on_gap). */
int pipeline_handle_gap(pipeline_t *pl);

/* pipeline_letters.c: dead letters and the link-timeout of parked events. */

/* A message the engine rejected (res): recorded in the outbox and its entity marked
 * degraded, both in txn; once both are done, logged as what (a literal) with the
 * message's coordinates, error class and reason. Returns 0 or the store's error. */
int pipeline_dead_letter_rejected(pipeline_t *pl, MDB_txn *txn, const engine_msg_t *msg,
                                  const engine_result_t *res, const char *what);
/* engine_opts_t.eo_unparked_rejected; ctx is the pipeline. */
int pipeline_dead_letter_unparked(void *ctx, MDB_txn *txn, const engine_msg_t *msg,
                                  const engine_result_t *res);
void pipeline_flush_dead_letters(pipeline_t *pl, int timeout_ms, bool only_when_due,
                                 bool sync_first);
/* Note 8: one expiry pass in a transaction of its own. */
int pipeline_expire_parked(pipeline_t *pl);

/* pipeline_hold.c: partitions held for an unavailable schema registry (note 10). */

/* In the batch's txn: the store's mark of how many partitions wait for the registry. */
int pipeline_mark_registry_outage(pipeline_t *pl, MDB_txn *txn);
/* After a commit: pauses and seeks back every partition the batch held. */
void pipeline_hold_partitions(pipeline_t *pl);
/* Resumes the held partitions whose backoff has passed. */
void pipeline_resume_held(pipeline_t *pl);
/* fill_batch: whether message m of held partition tp is to be dropped (it came before
 * the held message itself); true for every message of a partition still paused. */
bool pipeline_hold_drops(pipeline_t *pl, pipeline_tp_t *tp, const rd_kafka_message_t *m);

/* pipeline_metrics.c: the snapshot a scrape reads. */

/* Consumer thread: publishes the counters for scrapes. */
void pipeline_publish_snapshot(pipeline_t *pl);

/* pipeline_store.c: the engine and outbox of store (both hold the store). Returns 0, or
 * with a message in errstr the outbox's or the registry's error, or RM_ENOMEM. */
int pipeline_make_store_parts(pipeline_t *pl, store_t *store, engine_t **ret_engine,
                              outbox_t **ret_outbox, char *errstr, size_t errlen);
/* pipeline.c: before an exit or a switch of the store, makes the store durable, then
 * commits every queued offset to Kafka. */
void pipeline_commit_all_kafka_offsets(pipeline_t *pl);
/* pipeline.c: queues every partition's next offset known from the store for the
 * consumer group (pipeline.h note 11), after an assignment at the store's offsets;
 * nothing for a rebuild or a replay. Consumer thread. */
void pipeline_queue_stored_offsets(pipeline_t *pl);

#endif
