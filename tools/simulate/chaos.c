/* chaos: duplicates, cross-topic skew and poison between the model and the producer
 * (see chaos.h). */
#include "chaos.h"
#include "buf.h"
#include "poison.h"
#include "prng.h"
#include "rm_err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CHAOS_MAX_DUP_DELAY 256
/* A prng stream of its own, so that chaos never shifts the model's draws. */
#define CHAOS_PRNG_STREAM 0xc4a05

typedef struct chaos_msg {
    char *cm_topic;
    char *cm_key;
    size_t cm_key_len;
    void *cm_value;
    size_t cm_value_len;
    uint64_t cm_due; /* duplicates: emitted count; held: count of other-topic messages */
} chaos_msg_t;

typedef struct chaos_vec {
    chaos_msg_t *cv_items;
    size_t cv_len, cv_cap, cv_head; /* cv_head: first live item (the hold is a FIFO) */
} chaos_vec_t;

typedef struct chaos_poison {
    char *cp_topic;
    char *cp_key;
    poison_shape_t cp_shape;
    kprod_ack_t cp_ack;
} chaos_poison_t;

struct chaos {
    chaos_opts_t ch_opts;
    const catalog_t *ch_catalog;
    prng_t ch_prng;
    size_t ch_events;
    uint64_t ch_emitted; /* messages handed to the producer */
    uint64_t ch_others; /* messages of topics other than the skew topic */
    chaos_vec_t ch_dups;
    chaos_vec_t ch_held;
    chaos_poison_t *ch_poison;
    size_t ch_poison_sent;
    buf_t ch_buf;
    chaos_counts_t ch_counts;
};

static void msg_free(chaos_msg_t *msg)
{
    free(msg->cm_topic);
    free(msg->cm_key);
    free(msg->cm_value);
}

static int vec_push(chaos_vec_t *vec, const char *topic, const char *key, size_t key_len,
                    const void *value, size_t value_len, uint64_t due)
{
    if (vec->cv_head > 0 && vec->cv_head == vec->cv_len)
        vec->cv_head = vec->cv_len = 0;
    if (vec->cv_len == vec->cv_cap) {
        size_t cap = vec->cv_cap ? vec->cv_cap * 2 : 64;
        chaos_msg_t *items = realloc(vec->cv_items, cap * sizeof(*items));
        if (!items)
            return RM_ENOMEM;
        vec->cv_items = items;
        vec->cv_cap = cap;
    }
    chaos_msg_t *msg = &vec->cv_items[vec->cv_len];
    *msg = (chaos_msg_t){.cm_key_len = key_len, .cm_value_len = value_len, .cm_due = due};
    msg->cm_topic = strdup(topic);
    msg->cm_key = malloc(key_len + 1);
    msg->cm_value = malloc(value_len ? value_len : 1);
    if (!msg->cm_topic || !msg->cm_key || !msg->cm_value) {
        msg_free(msg);
        return RM_ENOMEM;
    }
    memcpy(msg->cm_key, key, key_len);
    msg->cm_key[key_len] = '\0';
    memcpy(msg->cm_value, value, value_len);
    vec->cv_len++;
    return 0;
}

static void vec_free(chaos_vec_t *vec)
{
    for (size_t i = vec->cv_head; i < vec->cv_len; i++)
        msg_free(&vec->cv_items[i]);
    free(vec->cv_items);
}

chaos_t *chaos_new(const chaos_opts_t *opts, const catalog_t *catalog, uint64_t seed, size_t events,
                   char *errstr, size_t errlen)
{
    if (opts->co_duplicate_pct > 100) {
        snprintf(errstr, errlen, "duplicates: expected a percentage 0..100");
        return NULL;
    }
    chaos_t *chaos = calloc(1, sizeof(*chaos));
    if (!chaos || (opts->co_poison &&
                   !(chaos->ch_poison = calloc(opts->co_poison, sizeof(*chaos->ch_poison))))) {
        free(chaos);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    chaos->ch_opts = *opts;
    if (!chaos->ch_opts.co_skew_topic)
        chaos->ch_opts.co_skew_topic = "orders";
    chaos->ch_catalog = catalog;
    chaos->ch_events = events;
    prng_seed(&chaos->ch_prng, seed, CHAOS_PRNG_STREAM);
    buf_init(&chaos->ch_buf);
    return chaos;
}

void chaos_destroy(chaos_t *chaos)
{
    if (!chaos)
        return;
    vec_free(&chaos->ch_dups);
    vec_free(&chaos->ch_held);
    for (size_t i = 0; i < chaos->ch_poison_sent; i++) {
        free(chaos->ch_poison[i].cp_topic);
        free(chaos->ch_poison[i].cp_key);
    }
    free(chaos->ch_poison);
    buf_free(&chaos->ch_buf);
    free(chaos);
}

/* Hands one message to the producer; maybe schedules its duplicate. */
static int emit(chaos_t *chaos, producer_t *producer, const char *topic, const char *key,
                size_t key_len, const void *value, size_t value_len, bool may_duplicate)
{
    int rc = producer_send(producer, topic, key, key_len, value, value_len);
    if (rc)
        return rc;
    chaos->ch_emitted++;
    if (may_duplicate && chaos->ch_opts.co_duplicate_pct &&
        prng_below(&chaos->ch_prng, 100) < chaos->ch_opts.co_duplicate_pct) {
        uint64_t delay = 1 + prng_below(&chaos->ch_prng, CHAOS_MAX_DUP_DELAY);
        rc = vec_push(&chaos->ch_dups, topic, key, key_len, value, value_len,
                      chaos->ch_emitted + delay);
    }
    return rc;
}

/* Emits the duplicates that are due (all of them when force). */
static int release_dups(chaos_t *chaos, producer_t *producer, bool force)
{
    chaos_vec_t *vec = &chaos->ch_dups;
    size_t kept = 0;
    int rc = 0;
    for (size_t i = 0; i < vec->cv_len; i++) {
        chaos_msg_t *msg = &vec->cv_items[i];
        if (rc || (!force && msg->cm_due > chaos->ch_emitted)) {
            vec->cv_items[kept++] = *msg;
            continue;
        }
        rc = emit(chaos, producer, msg->cm_topic, msg->cm_key, msg->cm_key_len, msg->cm_value,
                  msg->cm_value_len, false);
        if (rc) {
            vec->cv_items[kept++] = *msg; /* freed by chaos_destroy */
            continue;
        }
        chaos->ch_counts.cc_duplicates++;
        msg_free(msg);
    }
    vec->cv_len = kept;
    return rc;
}

/* Emits the held messages of the skew topic that are due (all when force), in order. */
static int release_held(chaos_t *chaos, producer_t *producer, bool force)
{
    chaos_vec_t *vec = &chaos->ch_held;
    while (vec->cv_head < vec->cv_len) {
        chaos_msg_t *msg = &vec->cv_items[vec->cv_head];
        if (!force && msg->cm_due > chaos->ch_others)
            break;
        int rc = emit(chaos, producer, msg->cm_topic, msg->cm_key, msg->cm_key_len, msg->cm_value,
                      msg->cm_value_len, true);
        if (rc)
            return rc;
        msg_free(msg);
        vec->cv_head++;
    }
    return 0;
}

static int send_poison(chaos_t *chaos, producer_t *producer, const catalog_entry_t *entry,
                       const char *key, size_t key_len, const void *value, size_t value_len)
{
    chaos_poison_t *p = &chaos->ch_poison[chaos->ch_poison_sent];
    p->cp_shape = (poison_shape_t)(chaos->ch_poison_sent % POISON_SHAPE_COUNT);
    const catalog_entry_t *target;
    int rc = poison_build(p->cp_shape, chaos->ch_catalog, entry, value, value_len,
                          chaos->ch_opts.co_oversize_bytes, &chaos->ch_buf, &target);
    if (rc)
        return rc;
    p->cp_topic = strdup(target->ce_topic);
    p->cp_key = strndup(key, key_len);
    p->cp_ack.ka_offset = -1;
    chaos->ch_poison_sent++;
    if (!p->cp_topic || !p->cp_key)
        return RM_ENOMEM;
    chaos->ch_counts.cc_poison++;
    return producer_send_acked(producer, p->cp_topic, key, key_len, chaos->ch_buf.b_data,
                               chaos->ch_buf.b_len, &p->cp_ack);
}

int chaos_send(chaos_t *chaos, producer_t *producer, size_t index, const catalog_entry_t *entry,
               const char *key, size_t key_len, const void *value, size_t value_len)
{
    int rc;
    if (chaos->ch_opts.co_skew && strcmp(entry->ce_topic, chaos->ch_opts.co_skew_topic) == 0) {
        rc = vec_push(&chaos->ch_held, entry->ce_topic, key, key_len, value, value_len,
                      chaos->ch_others + chaos->ch_opts.co_skew);
        chaos->ch_counts.cc_held++;
    } else {
        rc = emit(chaos, producer, entry->ce_topic, key, key_len, value, value_len, true);
        chaos->ch_others++;
    }
    rc = rc ? rc : release_held(chaos, producer, false);
    rc = rc ? rc : release_dups(chaos, producer, false);
    /* poison k (0-based) follows stream message floor((k + 1) * events / (poison + 1)) */
    size_t k = chaos->ch_poison_sent;
    if (!rc && k < chaos->ch_opts.co_poison &&
        index + 1 >= (k + 1) * chaos->ch_events / (chaos->ch_opts.co_poison + 1))
        rc = send_poison(chaos, producer, entry, key, key_len, value, value_len);
    return rc;
}

int chaos_drain(chaos_t *chaos, producer_t *producer)
{
    int rc = release_held(chaos, producer, true);
    /* every duplicate, including those of the held messages just released */
    return rc ? rc : release_dups(chaos, producer, true);
}

chaos_counts_t chaos_counts(const chaos_t *chaos)
{
    return chaos->ch_counts;
}

int chaos_write_manifest(const chaos_t *chaos, FILE *out)
{
    int rc = 0;
    for (size_t i = 0; i < chaos->ch_poison_sent; i++) {
        const chaos_poison_t *p = &chaos->ch_poison[i];
        if (p->cp_ack.ka_done && !p->cp_ack.ka_err && p->cp_ack.ka_partition < 0)
            continue; /* not produced: its topic is not in --topics (producer_set_replay) */
        if (!p->cp_ack.ka_done || p->cp_ack.ka_err)
            rc = RM_EKAFKA;
        buf_t line;
        buf_init(&line);
        int wrc = buf_append_str(&line, "{\"topic\":");
        wrc = wrc ? wrc : buf_append_json_str(&line, p->cp_topic, strlen(p->cp_topic));
        wrc = wrc ? wrc
                  : buf_printf(&line, ",\"partition\":%d,\"offset\":%lld,\"shape\":\"%s\",\"key\":",
                               (int)p->cp_ack.ka_partition, (long long)p->cp_ack.ka_offset,
                               poison_shape_name(p->cp_shape));
        wrc = wrc ? wrc : buf_append_json_str(&line, p->cp_key, strlen(p->cp_key));
        wrc = wrc ? wrc : buf_append_str(&line, "}\n");
        if (wrc || fwrite(line.b_data, 1, line.b_len, out) != line.b_len)
            rc = rc ? rc : RM_EIO;
        buf_free(&line);
    }
    return rc;
}
