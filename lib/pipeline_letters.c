/* pipeline_letters: dead letters (recorded in the batch's transaction, published once
 * durable) and the link-timeout of parked events (note 8 in pipeline.h). */
#include "pipeline_int.h"
#include "degraded.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <stdio.h>

/* The entity a dead letter's key names is marked degraded in the same txn (degraded.h). */
static int mark_degraded(pipeline_t *pl, MDB_txn *txn, const outbox_letter_t *letter)
{
    degraded_event_t ev = {letter->ol_topic,        letter->ol_partition, letter->ol_offset,
                           letter->ol_timestamp_ms, letter->ol_key,       letter->ol_key_len,
                           letter->ol_error,        letter->ol_reason};
    bool marked;
    int rc = degraded_mark(pl->pi_opts.po_view, pl->pi_opts.po_store, txn, &ev, &marked);
    /* Not resolved yet: the entity may come through a link not known yet. */
    return rc || marked ? rc
                        : degraded_mark_wait(pl->pi_opts.po_view, pl->pi_opts.po_store, txn, &ev,
                                             rm_wall_ms());
}

typedef struct expire_ctx {
    pipeline_t *ec_pipe;
    char ec_reason[160];
} expire_ctx_t;

static int dead_letter_expired(void *ctx, MDB_txn *txn, const engine_parked_t *parked)
{
    expire_ctx_t *ec = ctx;
    snprintf(ec->ec_reason, sizeof(ec->ec_reason),
             "link-timeout: link '%s' not learned within %lld s", parked->ep_link,
             (long long)(ec->ec_pipe->pi_parked_max_age_ms / 1000));
    const engine_msg_t *m = &parked->ep_msg;
    outbox_letter_t letter = {m->em_topic,    m->em_partition, m->em_offset, m->em_timestamp_ms,
                              m->em_key,      m->em_key_len,   m->em_value,  m->em_value_len,
                              "link-timeout", ec->ec_reason};
    log_warn("parked event expired; dead-lettered",
             LOG_S("view", ec->ec_pipe->pi_opts.po_view->v_name), LOG_S("topic", m->em_topic),
             LOG_I("partition", m->em_partition), LOG_I("offset", m->em_offset),
             LOG_S("link", parked->ep_link));
    int rc = outbox_record(ec->ec_pipe->pi_outbox, txn, &letter);
    return rc ? rc : mark_degraded(ec->ec_pipe, txn, &letter);
}

/* The dead letter's error class (header __connect.errors.exception.class.name). */
static const char *error_class(int err)
{
    switch (err) {
    case RM_EFRAME:
        return "framing";
    case RM_ESCHEMA:
        return "schema";
    case RM_EDECODE:
        return "decode";
    case RM_EVALIDATE:
        return "validation";
    default:
        return "other";
    }
}

/* One rejected event, on arrival or when its link arrived: the same letter and the same
 * degraded mark either way, so that the two paths cannot drift apart. */
int pipeline_dead_letter_rejected(pipeline_t *pl, MDB_txn *txn, const engine_msg_t *msg,
                                  const engine_result_t *res, const char *what)
{
    outbox_letter_t letter = {msg->em_topic,        msg->em_partition, msg->em_offset,
                              msg->em_timestamp_ms, msg->em_key,       msg->em_key_len,
                              msg->em_value,        msg->em_value_len, error_class(res->er_error),
                              res->er_reason};
    int rc = outbox_record(pl->pi_outbox, txn, &letter);
    rc = rc ? rc : mark_degraded(pl, txn, &letter);
    if (!rc)
        log_warn(what, LOG_S("view", pl->pi_opts.po_view->v_name), LOG_S("topic", msg->em_topic),
                 LOG_I("partition", msg->em_partition), LOG_I("offset", msg->em_offset),
                 LOG_S("error", error_class(res->er_error)), LOG_S("reason", res->er_reason));
    return rc;
}

/* A parked event rejected when its link arrived: dead-lettered like one rejected on
 * arrival, in the transaction that unparked it (engine_opts_t.eo_unparked_rejected). */
int pipeline_dead_letter_unparked(void *ctx, MDB_txn *txn, const engine_msg_t *msg,
                                  const engine_result_t *res)
{
    return pipeline_dead_letter_rejected(ctx, txn, msg, res,
                                         "parked event dead-lettered when its link arrived");
}

/* Publishes recorded dead letters, unless this pipeline holds them (po_hold_dead_letters).
 * A letter goes out only once its transaction is durable (outbox.h note 2); before a
 * clean exit or a switch of the store, sync_first makes it durable now rather than at
 * the next background sync, so that nothing is left behind that the broker would take. */
void pipeline_flush_dead_letters(pipeline_t *pl, int timeout_ms, bool only_when_due,
                                 bool sync_first)
{
    if (pl->pi_opts.po_hold_dead_letters || pl->pi_opts.po_scratch)
        return;
    if (only_when_due && !outbox_flush_due(pl->pi_outbox))
        return;
    if (sync_first)
        store_sync(pl->pi_opts.po_store); /* a failure only leaves letters waiting */
    outbox_flush(pl->pi_outbox, timeout_ms);
}

/* The wall time before which every message of the link topics has been applied: a
 * parked event's link can still come while a link topic has a backlog older than the
 * event's wait, so link-timeout counts only time the link topics were read through.
 * Each partition's cached high watermark (as of its last fetch) is a probe; once the
 * stored offset reaches it, everything produced before the probe was applied. */
static int64_t links_read_until(pipeline_t *pl, int64_t now_ms)
{
    const view_t *view = pl->pi_opts.po_view;
    bool new_store = pl->pi_probed_store != pl->pi_opts.po_store;
    pl->pi_probed_store = pl->pi_opts.po_store;
    int64_t read_until = now_ms;
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        if (!pl->pi_link_topic[tp->pt_topic])
            continue;
        if (new_store) /* another generation: what the old one read proves nothing */
            tp->pt_read_ms = tp->pt_probe_ms = 0;
        int64_t low = -1, high = -1;
        rd_kafka_get_watermark_offsets(pl->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        int64_t next = tp->pt_next_offset >= 0 ? tp->pt_next_offset : low >= 0 ? low : 0;
        if (tp->pt_probe_ms > 0 && next >= tp->pt_probe_high) {
            tp->pt_read_ms = tp->pt_probe_ms;
            tp->pt_probe_ms = 0;
        }
        if (tp->pt_probe_ms == 0 && high >= 0) {
            if (next >= high) {
                tp->pt_read_ms = now_ms;
            } else {
                tp->pt_probe_ms = now_ms;
                tp->pt_probe_high = high;
            }
        }
        if (tp->pt_read_ms < read_until)
            read_until = tp->pt_read_ms;
    }
    return read_until;
}

/* Dead-letters parked events that have waited in this store longer than
 * projector.parked_max_age_s while the link topics were read (links_read_until). The
 * messages' own timestamps play no part: replayed history has waited no time. */
int pipeline_expire_parked(pipeline_t *pl)
{
    pl->pi_next_expire_ms = rm_mono_ms() + pl->pi_parked_check_ms;
    pl->pi_expiry_checks++;
    int64_t cutoff_ms = links_read_until(pl, rm_wall_ms()) - pl->pi_parked_max_age_ms;
    store_t *store = pl->pi_opts.po_store;
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    expire_ctx_t ctx = {pl, ""};
    size_t expired = 0;
    rc = engine_txn_begin(pl->pi_engine, txn);
    rc = rc ? rc : outbox_txn_begin(pl->pi_outbox, txn);
    rc = rc ? rc
            : engine_expire_parked(pl->pi_engine, txn, cutoff_ms, dead_letter_expired, &ctx,
                                   &expired);
    size_t marks_dropped = 0;
    rc = rc ? rc : degraded_expire_waiting(store, txn, cutoff_ms, &marks_dropped);
    rc = rc ? rc : outbox_txn_precommit(pl->pi_outbox, txn);
    if (rc || (!expired && !marks_dropped)) {
        store_write_abort(txn);
        return rc;
    }
    rc = store_write_commit(store, txn);
    if (!rc) {
        pl->pi_expired += expired;
        pipeline_flush_dead_letters(pl, PIPELINE_OUTBOX_FLUSH_MS, false, false);
    }
    return rc;
}
