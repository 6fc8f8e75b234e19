/* pipeline: the projector's consume → apply → commit loop, shared by the daemon,
 * rebuild and replay (reconcile) so they cannot drift apart.
 *
 * Notes on the design:
 * (1) Offsets live in the store. At start (and whenever partitions are added) every
 *     partition is assigned at the next offset stored in LMDB, never at Kafka's
 *     committed offset; no consumer group membership is used (see docs/design.md:
 *     one full-replica projector per view assigns all partitions itself — no
 *     rebalances, no 3 s join), new partitions are found by a periodic metadata poll.
 * (2) Group commit: a batch opens with the first message and closes as soon as the
 *     consumer queue is empty (a poll with timeout 0 returns nothing), or at
 *     batch_max_events, or batch_max_ms after its first message; it is applied in one
 *     write transaction together with the next offset of every partition it came
 *     from, and committed once. Closing on an empty queue costs live traffic no wait;
 *     under load messages pile up during each apply and commit, so batches grow by
 *     themselves (in a backlog the prefetch queue never empties: the bounds close).
 * (3) A batch is kept until its commit succeeds: on MDB_MAP_FULL the map grows and
 *     the same batch is re-applied; on a full disk or I/O error the loop stops
 *     consuming and retries with backoff — nothing is lost or skipped.
 * (4) Messages below a partition's next offset are dropped before applying, so a
 *     redelivery (re-assign, broker retry) can never apply twice.
 * (5) Kafka offsets are committed asynchronously, for lag tooling only, once the LMDB
 *     commit they describe is durable (store_durable_txnid): after an OS crash Kafka
 *     never claims more than the store kept. Dead letters wait for the same.
 * (6) A start time (rebuild --from-time) only matters for partitions with no stored
 *     offset: they start at rd_kafka_offsets_for_times' answer, or at the log start
 *     when the broker has none (-1: nothing at or after the time, or a broker without
 *     a time index, like the mock broker). Either way a time gate in fill_batch skips
 *     messages older than the start time until the first one at or after it, so both
 *     cases give "the earliest offset whose timestamp is at or after T". Skipped
 *     messages still advance the stored offset, so a later writer resumes after them.
 * (7) A store switch (pipeline_switch_store, a new store generation) happens between
 *     batches: the engine and outbox are rebuilt on the new store and every partition
 *     is re-assigned at the new store's offsets, so nothing is lost or applied twice.
 *     It is all or nothing: everything that can fail is prepared first and the old
 *     generation's parts are released only after the re-assignment succeeded, so a
 *     failed switch leaves the pipeline writing the old store as before.
 * (8) Link-timeout (every projector.parked_check_interval_ms): a parked event is
 *     dead-lettered once it has waited projector.parked_max_age_s in this store (its
 *     parking time, not its message timestamp: old history has waited no time) and every
 *     partition of the topics that carry links has since been read through a moment past
 *     that age (a probe on the high watermark), so a link behind a backlog still comes.
 * (9) Records the application never sees still take offsets: the commit or abort
 *     marker after each transaction, and (read_committed) the records of aborted
 *     transactions. The offset after the last applied message would then stay short
 *     of the log end forever (--until-caught-up never returned, lag stayed >= 1). When
 *     no batch is open, every record before the consumer's position has been applied
 *     or was one of those, so an idle loop stores the position as the next offset
 *     (a replay to stop offsets: at most its target, where it must end exactly).
 * (10) A schema registry outage is not poison. A message the engine could not decode
 *      because its writer schema could not be fetched (engine_result_t er_error
 *      RM_EUNAVAIL) is neither applied nor dead-lettered, and nothing after it in its
 *      partition is applied in that batch (sorted by view key, the batch finds it while
 *      computing the keys: pipeline_order.c note 4); after the commit the partition is
 *      paused and sought back to it, and resumed after a backoff (250 ms doubling to
 *      5 s). Until the held message itself comes again, other messages of the partition
 *      are dropped, so the partition's order holds. Other partitions go on. The number of held
 *      partitions is written to the store's meta db (PIPELINE_REGISTRY_META, JSON
 *      {"paused_partitions", "since_ms", "reason"}) whenever it changes, for /readyz.
 * (11) The consumer group's committed offsets are what lag tooling reports as the live
 *      projector's position, so only a pipeline writing the live view commits there: a
 *      rebuild (po_no_group_commit) and a replay (po_scratch) commit nothing — reading
 *      from offset 0 up, they would show a caught-up projector millions of events behind,
 *      or a stopped one caught up. Whenever the pipeline assigns partitions at a store's
 *      offsets (at start, a new generation, new partitions), it queues those offsets for
 *      the group (behind the same durability wait as note 5), so the generation a rebuild
 *      built shows its position without waiting for new events on every partition.
 * Thread: pipeline_run() runs on the caller's thread; pipeline_stop() may be called from a
 * signal handler or another thread. */
#ifndef RM_PIPELINE_H
#define RM_PIPELINE_H

#include "buf.h"
#include "catalog.h"
#include "cfg.h"
#include "engine.h"
#include "registry.h"
#include "store.h"
#include "view.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct pipeline pipeline_t;

/* Meta db name of the registry-outage mark (note 10). */
#define PIPELINE_REGISTRY_META "schema_registry"

/* Where one partition stops (pipeline_opts_t.po_stop_offsets). */
typedef struct pipeline_stop {
    const char *pst_topic;
    int32_t pst_partition;
    int64_t pst_offset; /* offsets below it are applied, none at or above it */
} pipeline_stop_t;

typedef struct pipeline_opts {
    const cfg_t *po_cfg;          /* kafka.* and projector.* settings */
    const view_t *po_view;
    const catalog_t *po_catalog;
    store_t *po_store;
    bool po_until_caught_up;      /* exit once every partition reached its high
                                     watermark as it was at start */
    int64_t po_start_time_ms;     /* > 0: partitions without a stored offset start at the
                                     first message at or after this time (note 6);
                                     0: at the beginning of the log */
    int64_t po_generation;        /* store generation number, for metrics (gen.h) */
    /* Called on the consumer thread between batches (no batch open, no txn of the
     * pipeline open; at least every 100 ms while idle): where the program checks for
     * a new store generation (pipeline_switch_store) and draws progress. A non-zero
     * return stops pipeline_run, which returns it. NULL: none. */
    int (*po_tick)(void *arg, pipeline_t *pl);
    void *po_tick_arg;
    /* Record dead letters in the store's outbox but never publish them, nor recover the
     * outbox against the DLQ: a rebuild's generation is not live yet (the daemon publishes
     * its outbox after the switch, outbox_adopt). */
    bool po_hold_dead_letters;
    /* Replay to a given point (reconcile diff-replay): every listed partition stops
     * exactly at its offset — messages at or above it are never applied, whatever the
     * batch — and pipeline_run returns once all got there; a partition not listed applies
     * nothing. Replaces po_until_caught_up's high watermarks. Borrowed for pipeline_run. */
    const pipeline_stop_t *po_stop_offsets;
    size_t po_stop_count;
    /* A rebuild: commit no offset to Kafka (note 11). The group belongs to the live
     * projector, whatever group.id it has; a rebuild's progress shows in its own output. */
    bool po_no_group_commit;
    /* A scratch store (a replay, not the live view): no dead letter is recorded or
     * published and the DLQ recovery group is not read; no offset is committed to
     * Kafka (note 11: the consumer group belongs to the live projector); parked events never
     * expire (a replay's wall clock says nothing about the events' age); a gap always
     * stops the run (RM_EGAP, whatever projector.on_gap says); RM_TEST_SKIP_APPLY
     * (failpoint.h) is ignored. */
    bool po_scratch;
    /* With po_until_caught_up (a rebuild): a partition the store has no offset for is a
     * gap when retention has deleted the beginning of its log (log start > 0) and the
     * run would start at or below the log start — at the beginning, or at a start time
     * older than what is left. It is handled like any gap: recorded in the store, then
     * RM_EGAP, or with projector.on_gap=continue the run goes on from the log start. */
    bool po_check_log_start;
    /* The view's erasure ledger (erasures.h; engine_opts_t.eo_erasures), borrowed; it
     * must outlive the pipeline. NULL: erasures live only in the store. */
    erasures_t *po_erasures;
    /* The schema registry po_catalog resolves writer ids through (registry.h), for its
     * metrics; NULL: offline catalog. Borrowed. */
    registry_t *po_registry;
} pipeline_opts_t;

/* One partition's position (pipeline_partitions). */
typedef struct pipeline_partition {
    const char *pp_topic;       /* owned by the view */
    int32_t pp_partition;
    int64_t pp_next_offset;     /* committed in the store; -1: nothing yet */
    int64_t pp_start_offset;    /* where this run started it (-1: not known yet) */
    int64_t pp_target;          /* po_until_caught_up: the high watermark to reach */
    int64_t pp_high_watermark;  /* as last fetched */
} pipeline_partition_t;

/* What closed a batch (note 2); readmodel_batches_total's closed_by label. */
typedef enum pipeline_close {
    PIPELINE_CLOSE_DRAINED = 0, /* the consumer queue was empty */
    PIPELINE_CLOSE_MAX_MS,      /* batch_max_ms after its first message */
    PIPELINE_CLOSE_MAX_EVENTS,  /* batch_max_events */
    PIPELINE_CLOSE_STOPPED,     /* pipeline_stop() or a gap */
    PIPELINE_CLOSE__COUNT
} pipeline_close_t;

typedef struct pipeline_stats {
    uint64_t ps_messages;                       /* consumed and applied (any outcome) */
    uint64_t ps_outcomes[ENGINE__OUTCOMES];
    uint64_t ps_batches;
    uint64_t ps_batches_closed[PIPELINE_CLOSE__COUNT]; /* committed batches by what closed them */
    uint64_t ps_commit_retries;                 /* batches re-applied after a store error */
    uint64_t ps_map_grows;
    uint64_t ps_skipped_redelivered;            /* below the stored next offset */
    uint64_t ps_skipped_before_start;           /* older than po_start_time_ms (note 6) */
    uint64_t ps_skipped_by_hook;                /* consumed, not applied: RM_TEST_SKIP_APPLY */
    uint64_t ps_beyond_stop;                    /* at or above a po_stop_offsets offset */
} pipeline_stats_t;

/* Builds the consumer (not yet assigned) and the engine and outbox on po_store. Returns 0
 * and the pipeline in *ret_pipeline (the caller owns it: pipeline_destroy), or a negative
 * rm_err_t with a message in errstr: RM_ECONFIG when librdkafka refuses the Kafka
 * settings for the consumer or the dead-letter producer (no restart fixes it), RM_ENOMEM,
 * RM_EINVAL for a malformed RM_TEST_SKIP_APPLY (failpoint.h), or the store's error
 * (reading the schemas or the replica id kept in it). */
int pipeline_new(const pipeline_opts_t *opts, pipeline_t **ret_pipeline, char *errstr,
                 size_t errlen);
void pipeline_destroy(pipeline_t *pl);

/* Runs until pipeline_stop() or, with po_until_caught_up, until caught up (with
 * po_stop_offsets: until every partition reached its stop offset). Returns 0 on a
 * clean stop (the last batch committed), or a negative rm_err_t on a fatal error:
 * RM_EGAP when a stored offset is outside its partition's log — below the log start
 * (retention) or beyond the log end (a recreated or truncated topic) — and
 * projector.on_gap=stop or the pipeline is a scratch one, RM_ENOTFOUND when a stop offset names a
 * partition that does not exist. */
int pipeline_run(pipeline_t *pl);

/* Asks pipeline_run to finish the current batch, commit and return. Async-signal-safe. */
void pipeline_stop(pipeline_t *pl);

/* Adopts store (a new generation; the caller keeps owning both stores and closes the
 * old one after this returns 0): rebuilds the engine and outbox on it and re-assigns
 * every partition at its offsets (note 7). All or nothing: on error it returns a
 * negative rm_err_t with the reason in errstr, holds no reference to store (the caller
 * may close it at once), and keeps writing the old store at its offsets, counted in
 * readmodel_generation_switch_failures_total. Consumer thread only, from po_tick. */
int pipeline_switch_store(pipeline_t *pl, store_t *store, int64_t generation, char *errstr,
                          size_t errlen);

/* Copies up to cap partitions' positions into out and returns how many there are.
 * Consumer thread only (from po_tick). */
size_t pipeline_partitions(pipeline_t *pl, pipeline_partition_t *out, size_t cap);

/* The rebuild's side of outbox_adopt: previous is the generation this pipeline's store
 * replaces. Consumer thread only, between runs. Returns 0 or a store error. */
int pipeline_adopt_previous(pipeline_t *pl, store_t *previous);

/* A snapshot of the counters (any thread; as of the last committed batch). */
void pipeline_get_stats(pipeline_t *pl, pipeline_stats_t *ret_stats);

/* Appends the projector's metrics in Prometheus text format: per partition stored
 * offset, high watermark, lag in messages and seconds; events by type and outcome;
 * batch size and commit latency histograms, batches by what closed them; parked
 * events; store map usage; the store's syncs (count, failures, duration histogram).
 * Any thread (reads a snapshot published after every batch). */
int pipeline_render_metrics(pipeline_t *pl, buf_t *out);

#endif
