/* pipeline_assign: which partitions the consumer reads and from where (notes 1 and 6 in
 * pipeline.h), up to where (--until-caught-up targets and replay stop offsets), and the
 * gaps: a stored offset outside its partition's log. */
#include "pipeline_int.h"
#include "failpoint.h"
#include "kafka.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const pipeline_gap_cause_names[PIPELINE_GAP__CAUSES] = {"retention", "log-truncated",
                                                                    "unknown"};

pipeline_tp_t *pipeline_tp_find(pipeline_t *pl, int topic, int32_t partition)
{
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        if (pl->pi_tps[i].pt_topic == topic && pl->pi_tps[i].pt_partition == partition)
            return &pl->pi_tps[i];
    return NULL;
}

/* Note 6: where partitions with no stored offset start for po_start_time_ms, and
 * their time gate. A partition the broker cannot answer for starts at the beginning,
 * gated; a lookup failure leaves it there too (slower, never wrong). */
static void resolve_start_time(pipeline_t *pl, pipeline_tp_t *tps, int64_t *start)
{
    const view_t *view = pl->pi_opts.po_view;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)pl->pi_tp_count);
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &tps[i];
        if (tp->pt_next_offset >= 0 || tp->pt_start_offset >= 0)
            continue;
        tp->pt_gate_ms = pl->pi_opts.po_start_time_ms;
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = pl->pi_opts.po_start_time_ms;
    }
    rd_kafka_resp_err_t err =
        list->cnt ? rd_kafka_offsets_for_times(pl->pi_rk, list, PIPELINE_METADATA_TIMEOUT_MS)
                  : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err)
        log_warn("offsets for the start time unavailable; scanning from the log start",
                 LOG_S("error", rd_kafka_err2str(err)));
    for (int i = 0; !err && i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &list->elems[i];
        /* tps is pi_tps or a copy of it in the same order (pipeline_switch_store). */
        pipeline_tp_t *tp = pipeline_tp_find(pl, view_topic_index(view, p->topic), p->partition);
        if (tp && !p->err && p->offset >= 0)
            start[tp - pl->pi_tps] = p->offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Fills tps (pi_tps, or the copy a switch prepares) with store's offsets where none is
 * known yet (pt_next_offset < 0). */
int pipeline_load_offsets(pipeline_t *pl, store_t *store, pipeline_tp_t *tps)
{
    const view_t *view = pl->pi_opts.po_view;
    MDB_txn *txn;
    int rc = store_read_begin(store, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &tps[i];
        store_offset_t off;
        if (tp->pt_next_offset < 0 && store_offset_get(store, txn, view->v_topics[tp->pt_topic],
                                                       tp->pt_partition, &off) == 0) {
            tp->pt_next_offset = off.so_next_offset;
            tp->pt_last_event_ms = off.so_last_event_ms;
        }
    }
    store_read_end(txn);
    return 0;
}

/* (Re)assigns every partition of tps at its next offset (or where this run started it,
 * or the beginning). Fills in pt_start_offset and, for a start time, pt_gate_ms of tps.
 * On error the consumer's assignment is unchanged. */
int pipeline_assign_tps(pipeline_t *pl, pipeline_tp_t *tps)
{
    const view_t *view = pl->pi_opts.po_view;
    int64_t *start = malloc((pl->pi_tp_count ? pl->pi_tp_count : 1) * sizeof(*start));
    if (!start)
        return RM_ENOMEM;
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        start[i] = tps[i].pt_next_offset >= 0    ? tps[i].pt_next_offset
                   : tps[i].pt_start_offset >= 0 ? tps[i].pt_start_offset
                                                 : RD_KAFKA_OFFSET_BEGINNING;
    if (pl->pi_opts.po_start_time_ms > 0)
        resolve_start_time(pl, tps, start);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)pl->pi_tp_count);
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &tps[i];
        if (tp->pt_start_offset < 0)
            tp->pt_start_offset = start[i] >= 0 ? start[i] : 0;
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = start[i];
    }
    free(start);
    /* A failpoint, so a test can see what a failed assignment leaves behind. */
    rd_kafka_resp_err_t err =
        failpoint_errno("assign") ? RD_KAFKA_RESP_ERR__FAIL : rd_kafka_assign(pl->pi_rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        log_error("assign failed", LOG_S("error", rd_kafka_err2str(err)));
        return kafka_err(err);
    }
    return 0;
}

/* Loads stored offsets for partitions that have none yet and (re)assigns every known
 * partition at its stored next offset (or the beginning when nothing is stored). */
static int assign_all(pipeline_t *pl)
{
    int rc = pipeline_load_offsets(pl, pl->pi_opts.po_store, pl->pi_tps);
    if (!rc)
        rc = pipeline_assign_tps(pl, pl->pi_tps);
    if (!rc)
        pipeline_queue_stored_offsets(pl);
    return rc;
}

/* Moves one assigned partition's fetch to offset. A seek, not a re-assign of every
 * partition: gaps come one partition at a time, and re-assigning all of them for each one
 * stopped partitions whose previous stop was still pending, which librdkafka (up to
 * 2.15, its issue 5573) answers with a duplicate stop and an assertion that kills the
 * process. Falls back to assign_all if the seek fails. */
static int seek_one(pipeline_t *pl, const pipeline_tp_t *tp, int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, pl->pi_opts.po_view->v_topics[tp->pt_topic],
                                      tp->pt_partition)
        ->offset = offset;
    rd_kafka_error_t *err = rd_kafka_seek_partitions(pl->pi_rk, list, PIPELINE_SEEK_TIMEOUT_MS);
    bool failed = err || list->elems[0].err;
    if (err)
        rd_kafka_error_destroy(err);
    rd_kafka_topic_partition_list_destroy(list);
    return failed ? assign_all(pl) : 0;
}

/* Discovers the partitions of the view's topics; assigns when new ones appeared. */
int pipeline_refresh_partitions(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(pl->pi_rk, 1, NULL, &md, PIPELINE_METADATA_TIMEOUT_MS);
    pl->pi_next_metadata_ms = rm_mono_ms() + pl->pi_metadata_refresh_ms;
    if (err) {
        log_warn("metadata request failed; retrying later", LOG_S("error", rd_kafka_err2str(err)));
        return kafka_err(err);
    }
    size_t before = pl->pi_tp_count;
    for (int t = 0; t < md->topic_cnt; t++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[t];
        int topic = view_topic_index(view, mt->topic);
        if (topic < 0 || mt->err)
            continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            if (pipeline_tp_find(pl, topic, mt->partitions[p].id) ||
                pl->pi_tp_count >= PIPELINE_MAX_PARTITIONS)
                continue;
            pipeline_tp_t *tp = &pl->pi_tps[pl->pi_tp_count++];
            memset(tp, 0, sizeof(*tp));
            tp->pt_topic = topic;
            tp->pt_partition = mt->partitions[p].id;
            tp->pt_next_offset = -1;
            tp->pt_target = -1;
            tp->pt_batch_next = -1;
            tp->pt_start_offset = -1;
            tp->pt_held_offset = -1;
            tp->pt_batch_held = -1;
        }
    }
    for (size_t v = 0; v < view->v_topic_count; v++) {
        bool found = false;
        for (size_t i = 0; i < pl->pi_tp_count; i++)
            found |= pl->pi_tps[i].pt_topic == (int)v;
        if (!found)
            log_warn("topic has no partitions yet", LOG_S("topic", view->v_topics[v]));
    }
    rd_kafka_metadata_destroy(md);
    if (pl->pi_tp_count == before)
        return 0;
    log_info("assigning partitions", LOG_I("partitions", pl->pi_tp_count),
             LOG_I("new", pl->pi_tp_count - before));
    return assign_all(pl);
}

/* po_stop_offsets: each partition's target is its stop offset, 0 when not listed. */
static int load_stop_targets(pipeline_t *pl)
{
    const pipeline_opts_t *opts = &pl->pi_opts;
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        pl->pi_tps[i].pt_target = 0;
    for (size_t s = 0; s < opts->po_stop_count; s++) {
        const pipeline_stop_t *stop = &opts->po_stop_offsets[s];
        pipeline_tp_t *tp = pipeline_tp_find(pl, view_topic_index(opts->po_view, stop->pst_topic),
                                             stop->pst_partition);
        if (!tp) {
            log_error("stop offset for a partition that does not exist",
                      LOG_S("topic", stop->pst_topic), LOG_I("partition", stop->pst_partition));
            return RM_ENOTFOUND;
        }
        tp->pt_target = stop->pst_offset;
    }
    return 0;
}

/* The log start (RD_KAFKA_OFFSET_BEGINNING) or log end (RD_KAFKA_OFFSET_END) of every
 * partition into out[], in one ListOffsets request per broker: a query per partition waits
 * behind the consumer's fetch long-poll on the same connection (fetch.wait.max.ms), which
 * made a rebuild's catch-up round over 192 partitions take 2.5-5.5 s of waiting. */
static int query_log_offsets(pipeline_t *pl, int64_t which, int64_t *out)
{
    const view_t *view = pl->pi_opts.po_view;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)pl->pi_tp_count);
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        rd_kafka_topic_partition_list_add(list, view->v_topics[pl->pi_tps[i].pt_topic],
                                          pl->pi_tps[i].pt_partition)
            ->offset = which; /* a ListOffsets "timestamp": -2 earliest, -1 latest */
    rd_kafka_resp_err_t err =
        list->cnt ? rd_kafka_offsets_for_times(pl->pi_rk, list, PIPELINE_METADATA_TIMEOUT_MS)
                  : RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; !err && i < pl->pi_tp_count; i++) {
        const pipeline_tp_t *tp = &pl->pi_tps[i];
        const rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(
            list, view->v_topics[tp->pt_topic], tp->pt_partition);
        err = !p              ? RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
              : p->err        ? p->err
              : p->offset < 0 ? RD_KAFKA_RESP_ERR__BAD_MSG
                              : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err)
            log_error("watermark query failed", LOG_S("topic", view->v_topics[tp->pt_topic]),
                      LOG_I("partition", tp->pt_partition), LOG_S("error", rd_kafka_err2str(err)));
        else
            out[i] = p->offset;
    }
    if (err && !list->cnt)
        log_error("watermark query failed", LOG_S("error", rd_kafka_err2str(err)));
    rd_kafka_topic_partition_list_destroy(list);
    return err ? kafka_err(err) : 0;
}

/* --until-caught-up: the high watermark of every partition as it is now. */
int pipeline_load_targets(pipeline_t *pl)
{
    if (pl->pi_opts.po_stop_offsets)
        return load_stop_targets(pl);
    size_t count = pl->pi_tp_count ? pl->pi_tp_count : 1;
    int64_t *low = calloc(count, sizeof(*low)), *high = calloc(count, sizeof(*high));
    int rc = low && high ? 0 : RM_ENOMEM;
    if (!rc && pl->pi_opts.po_check_log_start)
        rc = query_log_offsets(pl, RD_KAFKA_OFFSET_BEGINNING, low);
    if (!rc)
        rc = query_log_offsets(pl, RD_KAFKA_OFFSET_END, high);
    for (size_t i = 0; !rc && i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        tp->pt_target = high[i];
        /* Beyond the log end no fetch would ever error, and the target is already reached.
         * po_check_log_start: a partition this store has never seen must start at the
         * log start 0, or at a start time that is inside what retention kept. */
        bool unseen_deleted = pl->pi_opts.po_check_log_start && tp->pt_next_offset < 0 &&
                              low[i] > 0 && tp->pt_start_offset <= low[i];
        tp->pt_gap_pending = tp->pt_next_offset > high[i] || unseen_deleted;
    }
    free(low);
    free(high);
    return rc;
}

bool pipeline_caught_up(const pipeline_t *pl)
{
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        const pipeline_tp_t *tp = &pl->pi_tps[i];
        int64_t next = tp->pt_next_offset < 0 ? 0 : tp->pt_next_offset;
        if (tp->pt_target > 0 && next < tp->pt_target && !tp->pt_stop_reached)
            return false;
    }
    return true;
}

void pipeline_handle_error_message(pipeline_t *pl, const rd_kafka_message_t *msg)
{
    const char *topic = msg->rkt ? rd_kafka_topic_name(msg->rkt) : "";
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        /* auto.offset.reset=error: the stored offset is gone (retention). Never skip
         * silently: pipeline_run records the gap and stops or continues per config. */
        pipeline_tp_t *tp =
            pipeline_tp_find(pl, view_topic_index(pl->pi_opts.po_view, topic), msg->partition);
        if (tp && pl->pi_gap_tp < 0) {
            pl->pi_gap_tp = (int)(tp - pl->pi_tps);
            pl->pi_gap_offset = tp->pt_next_offset;
        }
        return;
    }
    log_error("consumer error", LOG_S("topic", topic), LOG_I("partition", msg->partition),
              LOG_I("offset", msg->offset), LOG_S("error", rd_kafka_message_errstr(msg)));
}

/* The first gap pipeline_load_targets found, as if a fetch had met it (pipeline_run handles them
 * all before it applies anything). */
void pipeline_take_pending_gap(pipeline_t *pl)
{
    for (size_t i = 0; pl->pi_gap_tp < 0 && i < pl->pi_tp_count; i++) {
        if (pl->pi_tps[i].pt_gap_pending) {
            pl->pi_gap_tp = (int)i;
            pl->pi_gap_offset = pl->pi_tps[i].pt_next_offset;
        }
    }
}

/* Records a gap in meta ("gap/<topic>/<partition>", with its cause) so the API can report
 * the view as degraded for that partition, then stops (RM_EGAP) or resumes.
 * Below the log start (retention) it resumes at the log start: the events in between are
 * gone. Beyond the log end (a recreated topic, or a log an unclean leader election cut
 * back) it resumes at the log end, never lower: what is below the end the view has either
 * applied (truncation) or can only get by a rebuild (recreation, which also resets the
 * entity versions the guard compares), and re-reading it would dead-letter its poison and
 * mark its entities degraded a second time. */
int pipeline_handle_gap(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    store_t *store = pl->pi_opts.po_store;
    pipeline_tp_t *tp = &pl->pi_tps[pl->pi_gap_tp];
    const char *topic = view->v_topics[tp->pt_topic];
    int64_t stored = pl->pi_gap_offset;
    pl->pi_gap_tp = -1;
    tp->pt_gap_pending = false;
    int64_t low = -1, high = -1;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        pl->pi_rk, topic, tp->pt_partition, &low, &high, PIPELINE_METADATA_TIMEOUT_MS);
    if (!err && stored >= low && stored <= high) {
        /* Out of range a moment ago, inside the log now (the watermarks moved with a
         * leader change): nothing is missing, so read on from the stored offset. */
        log_warn("offset was out of range but is inside the log now; reading on",
                 LOG_S("view", view->v_name), LOG_S("topic", topic),
                 LOG_I("partition", tp->pt_partition), LOG_I("stored_offset", stored),
                 LOG_I("log_start", low), LOG_I("log_end", high));
        return seek_one(pl, tp, stored);
    }
    pipeline_gap_cause_t cause = err || low < 0  ? PIPELINE_GAP_UNKNOWN
                                 : stored > high ? PIPELINE_GAP_LOG_TRUNCATED
                                                 : PIPELINE_GAP_RETENTION;
    pl->pi_gaps[cause]++;
    if (cause == PIPELINE_GAP_UNKNOWN) {
        /* Nothing to record yet: a restart (this is not APP_EXIT_GAP) looks again. */
        log_error("offset out of range and the log's watermarks are unavailable; stopping",
                  LOG_S("view", view->v_name), LOG_S("topic", topic),
                  LOG_I("partition", tp->pt_partition), LOG_I("stored_offset", stored),
                  LOG_S("error", rd_kafka_err2str(err)));
        return err ? kafka_err(err) : RM_EKAFKA;
    }
    int64_t resume = cause == PIPELINE_GAP_LOG_TRUNCATED ? high : low;
    bool resumes = pl->pi_continue_on_gap;
    static const char *const what[PIPELINE_GAP_UNKNOWN][2] = {
        {"gap: events were deleted before this view saw them; stopping (projector.on_gap=stop)",
         "gap: events were deleted before this view saw them; recorded, continuing from the "
         "log start"},
        {"gap: the log ends before the stored offset (topic deleted and recreated, or cut back "
         "by an unclean leader election); stopping (projector.on_gap=stop)",
         "gap: the log ends before the stored offset (topic deleted and recreated, or cut back "
         "by an unclean leader election); recorded, continuing from the log end"},
    };
    log_error(what[cause][resumes], LOG_S("view", view->v_name), LOG_S("topic", topic),
              LOG_I("partition", tp->pt_partition), LOG_S("cause", pipeline_gap_cause_names[cause]),
              LOG_I("stored_offset", stored), LOG_I("log_start", low), LOG_I("log_end", high));
    char name[320], value[400];
    snprintf(name, sizeof(name), "gap/%s/%d", topic, tp->pt_partition);
    snprintf(value, sizeof(value),
             "{\"topic\":\"%s\",\"partition\":%d,\"cause\":\"%s\",\"stored_offset\":%lld,"
             "\"log_start\":%lld,\"log_end\":%lld,\"detected_ms\":%lld,\"action\":\"%s\","
             "\"resumed_at\":%lld}",
             topic, tp->pt_partition, pipeline_gap_cause_names[cause], (long long)stored,
             (long long)low, (long long)high, (long long)rm_wall_ms(),
             resumes ? "continued" : "stopped", (long long)(resumes ? resume : -1));
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (!rc)
        rc = store_meta_put(store, txn, name, value, strlen(value));
    if (!rc && resumes) {
        /* The offset moves in the same transaction as the record. */
        store_offset_t off = {resume, high, tp->pt_last_event_ms, rm_wall_ms()};
        rc = store_offset_put(store, txn, topic, tp->pt_partition, &off);
    }
    rc = rc ? (store_write_abort(txn), rc) : store_write_commit(store, txn);
    if (rc)
        return rc;
    if (!resumes)
        return RM_EGAP;
    tp->pt_next_offset = resume;
    return seek_one(pl, tp, resume);
}

size_t pipeline_partitions(pipeline_t *pl, pipeline_partition_t *out, size_t cap)
{
    const view_t *view = pl->pi_opts.po_view;
    for (size_t i = 0; i < pl->pi_tp_count && i < cap; i++) {
        const pipeline_tp_t *tp = &pl->pi_tps[i];
        int64_t low = 0, high = -1;
        rd_kafka_get_watermark_offsets(pl->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        out[i] = (pipeline_partition_t){
            view->v_topics[tp->pt_topic], tp->pt_partition, tp->pt_next_offset,
            tp->pt_start_offset,          tp->pt_target,    high};
    }
    return pl->pi_tp_count;
}
