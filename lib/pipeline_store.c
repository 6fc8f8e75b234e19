/* pipeline_store: the pipeline's parts that belong to one store — its engine and its
 * dead-letter outbox — made at start and made again when the daemon switches to a new
 * generation (note 7 of pipeline.c: all or nothing). Consumer thread. */
#include "pipeline_int.h"
#include "log.h"
#include "registry.h"
#include "rm_err.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The engine and outbox of store (both hold the store; rebuilt on a switch). */
int pipeline_make_store_parts(pipeline_t *pl, store_t *store, engine_t **ret_engine,
                              outbox_t **ret_outbox, char *errstr, size_t errlen)
{
    const pipeline_opts_t *opts = &pl->pi_opts;
    const cfg_t *cfg = opts->po_cfg;
    engine_opts_t eopts = {
        .eo_max_message_bytes = (size_t)cfg_int(cfg, "projector.max_message_bytes"),
        .eo_erasures = opts->po_erasures,
        .eo_unparked_rejected = opts->po_scratch ? NULL : pipeline_dead_letter_unparked,
        .eo_unparked_rejected_ctx = pl};
    /* Every schema this store's events were decoded with, so that they decode again
     * with the registry down (registry.h note 4). */
    int prc = registry_preload(opts->po_catalog, store);
    if (prc) {
        snprintf(errstr, errlen, "cannot load the schemas kept in the store: %s", rm_strerror(prc));
        return prc;
    }
    engine_t *engine = engine_new(opts->po_view, opts->po_catalog, store, &eopts);
    if (!engine) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    char group[160];
    snprintf(group, sizeof(group), "readmodel-%s", opts->po_view->v_name);
    const char *effective_group =
        cfg_kafka_get(cfg, "group.id") ? cfg_kafka_get(cfg, "group.id") : group;
    outbox_t *outbox = NULL;
    int rc = outbox_new(store, cfg, opts->po_view->v_name, effective_group, opts->po_view->v_topics,
                        opts->po_view->v_topic_count, &outbox, errstr, errlen);
    if (rc) {
        engine_destroy(engine);
        return rc;
    }
    *ret_engine = engine;
    *ret_outbox = outbox;
    return 0;
}

/* Note 7: all or nothing. Everything that can fail (the new engine and outbox, the
 * adoption of the old generation's dead letters, the new store's offsets, the
 * consumer's assignment at them) happens before the pipeline lets go of anything of the
 * old generation; rd_kafka_assign is the last step that can fail, and a failed one
 * leaves the assignment as it was. Only then are the parts swapped, which cannot fail.
 * On failure the pipeline holds nothing of store and keeps writing the old one. */
int pipeline_switch_store(pipeline_t *pl, store_t *store, int64_t generation, char *errstr,
                          size_t errlen)
{
    assert(pl->pi_batch_count == 0); /* between batches only (po_tick) */
    engine_t *engine = NULL;
    outbox_t *outbox = NULL;
    pipeline_tp_t *tps = NULL;
    int rc = pipeline_make_store_parts(pl, store, &engine, &outbox, errstr, errlen);
    if (rc)
        goto failed;
    /* Dead letters recorded in the old generation: publish what the broker takes now. */
    pipeline_flush_dead_letters(pl, PIPELINE_OUTBOX_FLUSH_MS, true, true);
    pipeline_commit_all_kafka_offsets(pl);
    /* The new generation (a rebuild) re-consumes what the old one applied since the
     * rebuild caught up: it must not record those dead letters a second time. */
    rc = outbox_adopt(outbox, pl->pi_opts.po_store, false);
    if (rc) {
        snprintf(errstr, errlen, "cannot adopt the previous generation's dead letters: %s",
                 rm_strerror(rc));
        goto failed;
    }
    tps = malloc((pl->pi_tp_count ? pl->pi_tp_count : 1) * sizeof(*tps));
    if (!tps) {
        rc = RM_ENOMEM;
        snprintf(errstr, errlen, "out of memory");
        goto failed;
    }
    memcpy(tps, pl->pi_tps, pl->pi_tp_count * sizeof(*tps));
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &tps[i];
        tp->pt_next_offset = -1; /* loaded from the new store below */
        tp->pt_last_event_ms = 0;
        tp->pt_batch_event_ms = 0;
        tp->pt_gate_ms = 0;
        tp->pt_start_offset = -1;
        /* Assigned afresh at the new store's offsets below: nothing is held any more. */
        tp->pt_held_offset = -1;
        tp->pt_batch_held = -1;
        tp->pt_expect_held = false;
    }
    int orc = outbox_recover(outbox, PIPELINE_METADATA_TIMEOUT_MS);
    if (orc)
        log_warn("cannot read the dead-letter topics to recover the outbox; pending dead "
                 "letters wait until they can be read (retried every 10 s)",
                 LOG_S("error", rm_strerror(orc)));
    rc = pipeline_load_offsets(pl, store, tps);
    if (rc) {
        snprintf(errstr, errlen, "cannot read the new generation's offsets: %s", rm_strerror(rc));
        goto failed;
    }
    rc = pipeline_assign_tps(pl, tps);
    if (rc) {
        snprintf(errstr, errlen, "cannot assign the partitions at the new generation's offsets: %s",
                 rm_strerror(rc));
        goto failed;
    }
    /* Committed: the consumer reads at the new offsets; swap the parts to match. */
    engine_destroy(pl->pi_engine);
    outbox_destroy(pl->pi_outbox);
    pl->pi_engine = engine;
    pl->pi_outbox = outbox;
    pl->pi_opts.po_store = store;
    pl->pi_opts.po_generation = generation;
    /* Partitions paused for the registry are read afresh from the new store's offsets
     * (note 10): whatever a fresh assignment keeps of the pause, lift it. */
    rd_kafka_topic_partition_list_t *held = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        if (pl->pi_tps[i].pt_held_offset >= 0)
            rd_kafka_topic_partition_list_add(held,
                                              pl->pi_opts.po_view->v_topics[pl->pi_tps[i].pt_topic],
                                              pl->pi_tps[i].pt_partition);
    if (held->cnt)
        rd_kafka_resume_partitions(pl->pi_rk, held);
    rd_kafka_topic_partition_list_destroy(held);
    pl->pi_registry_marked = 0; /* the new store has no mark yet */
    memcpy(pl->pi_tps, tps, pl->pi_tp_count * sizeof(*tps));
    free(tps);
    /* The group showed the old generation's position (note 11). */
    pipeline_queue_stored_offsets(pl);
    pthread_mutex_lock(&pl->pi_lock);
    pl->pi_snap.ps_generation = generation;
    pthread_mutex_unlock(&pl->pi_lock);
    pipeline_publish_snapshot(pl);
    return 0;

failed:
    engine_destroy(engine);
    outbox_destroy(outbox);
    free(tps);
    pl->pi_switch_failures++;
    pipeline_publish_snapshot(pl);
    return rc;
}

int pipeline_adopt_previous(pipeline_t *pl, store_t *previous)
{
    return outbox_adopt(pl->pi_outbox, previous, true);
}
