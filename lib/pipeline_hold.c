/* pipeline_hold: partitions held while the schema registry cannot answer (note 10 in
 * pipeline.h): paused, sought back to the held message and resumed after a backoff. */
#include "pipeline_int.h"
#include "log.h"
#include "rm_time.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPELINE_HOLD_MIN_MS 250 /* first retry of a partition held for the registry */
#define PIPELINE_RESEEK_MS 500 /* at most this often again, if messages past it still come */

/* Partitions held for the registry once this batch commits. */
static size_t registry_held_after_batch(const pipeline_t *pl)
{
    size_t held = 0;
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        held += pl->pi_tps[i].pt_held_offset >= 0 || pl->pi_tps[i].pt_batch_held >= 0;
    return held;
}

/* Note 10: the store says how many partitions wait for the registry, for /readyz (the
 * query API reads it); written only when the number changes. */
int pipeline_mark_registry_outage(pipeline_t *pl, MDB_txn *txn)
{
    size_t held = registry_held_after_batch(pl);
    if (held == pl->pi_registry_marked)
        return 0;
    char value[512];
    json_t *reason = json_string(held ? pl->pi_registry_reason : "");
    char *quoted = reason ? json_dumps(reason, JSON_ENCODE_ANY) : NULL;
    json_decref(reason);
    snprintf(value, sizeof(value), "{\"paused_partitions\":%zu,\"since_ms\":%lld,\"reason\":%s}",
             held, (long long)rm_wall_ms(), quoted ? quoted : "\"\"");
    free(quoted);
    return store_meta_put(pl->pi_opts.po_store, txn, PIPELINE_REGISTRY_META, value, strlen(value));
}

/* After a commit: pauses each partition the batch held for the registry and seeks it back
 * to the held message, to be retried after a backoff (note 10). */
void pipeline_hold_partitions(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    pl->pi_registry_marked = registry_held_after_batch(pl);
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        if (tp->pt_batch_held < 0) {
            if (tp->pt_batch_next >= 0 && tp->pt_held_offset < 0)
                tp->pt_hold_backoff_ms = 0; /* it moved on: the next outage starts afresh */
            continue;
        }
        tp->pt_held_offset = tp->pt_batch_held;
        tp->pt_batch_held = -1;
        int64_t backoff =
            tp->pt_hold_backoff_ms ? tp->pt_hold_backoff_ms * 2 : PIPELINE_HOLD_MIN_MS;
        tp->pt_hold_backoff_ms =
            backoff > PIPELINE_BACKOFF_MAX_MS ? PIPELINE_BACKOFF_MAX_MS : backoff;
        tp->pt_resume_ms = rm_mono_ms() + tp->pt_hold_backoff_ms;
        pl->pi_registry_waits++;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = tp->pt_held_offset;
        rd_kafka_pause_partitions(pl->pi_rk, list);
        rd_kafka_error_t *err = rd_kafka_seek_partitions(pl->pi_rk, list, PIPELINE_SEEK_TIMEOUT_MS);
        if (err) /* fill_batch drops what a failed seek lets through (pt_expect_held) */
            rd_kafka_error_destroy(err);
        rd_kafka_topic_partition_list_destroy(list);
        log_warn("schema registry unavailable: partition paused, nothing dead-lettered",
                 LOG_S("view", view->v_name), LOG_S("topic", view->v_topics[tp->pt_topic]),
                 LOG_I("partition", tp->pt_partition), LOG_I("offset", tp->pt_held_offset),
                 LOG_I("retry_in_ms", tp->pt_hold_backoff_ms),
                 LOG_S("reason", pl->pi_registry_reason));
    }
}

/* Resumes the held partitions whose backoff has passed; their held message comes again. */
void pipeline_resume_held(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    int64_t now = rm_mono_ms();
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        if (tp->pt_held_offset < 0 || now < tp->pt_resume_ms || tp->pt_expect_held)
            continue;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = tp->pt_held_offset;
        rd_kafka_resume_partitions(pl->pi_rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        tp->pt_expect_held = true;
    }
}

/* Seeks a held partition back to its held message (asynchronously). */
static void seek_held(pipeline_t *pl, const pipeline_tp_t *tp)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, pl->pi_opts.po_view->v_topics[tp->pt_topic],
                                      tp->pt_partition)
        ->offset = tp->pt_held_offset;
    rd_kafka_error_t *err = rd_kafka_seek_partitions(pl->pi_rk, list, 0);
    if (err)
        rd_kafka_error_destroy(err);
    rd_kafka_topic_partition_list_destroy(list);
}

bool pipeline_hold_drops(pipeline_t *pl, pipeline_tp_t *tp, const rd_kafka_message_t *m)
{
    if (tp->pt_held_offset < 0)
        return false;
    /* Held for the registry (note 10): until resumed, and then until the held message
     * itself comes again, what arrives is fetched before the seek. */
    if (!tp->pt_expect_held || m->offset != tp->pt_held_offset) {
        if (tp->pt_expect_held && m->offset > tp->pt_held_offset &&
            rm_mono_ms() - tp->pt_reseek_ms >= PIPELINE_RESEEK_MS) {
            tp->pt_reseek_ms = rm_mono_ms();
            seek_held(pl, tp); /* the seek was lost (a re-assignment): again */
        }
        return true;
    }
    tp->pt_held_offset = -1;
    tp->pt_expect_held = false;
    return false;
}
