/* kprod: the one librdkafka producer of the project: delivery reports counted and handed
 * to the caller, a full local queue waited out, bounded flushes, errors as rm_err_t.
 *
 * Each caller keeps its own settings in the conf it passes (idempotence, message timeout,
 * partitioner, transactions) and its own per-message data (headers, partition, opaque).
 *
 * Threads: a kprod_t belongs to one thread at a time. Delivery reports, and so the report
 * function, run inside kprod_send, kprod_poll, kprod_flush and kprod_destroy, on the
 * calling thread; the counters need no lock. */
#ifndef RM_KPROD_H
#define RM_KPROD_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kprod kprod_t;

/* One message. Zero-initialise and fill what applies. */
typedef struct kprod_msg {
    const char *km_topic;
    bool km_has_partition; /* false: the configured partitioner chooses */
    int32_t km_partition;
    const void *km_key; /* copied; NULL: no key */
    size_t km_key_len;
    const void *km_value; /* copied; NULL: a tombstone */
    size_t km_value_len;
    rd_kafka_headers_t *km_headers; /* taken over only when the send returns 0 */
    int64_t km_timestamp_ms; /* 0: librdkafka's own timestamp */
    void *km_opaque; /* handed back in the message's report */
} kprod_msg_t;

/* The outcome of one message, given to the report function. Borrowed: valid during the
 * call only. */
typedef struct kprod_report {
    const char *kr_topic;
    int32_t kr_partition;
    int64_t kr_offset; /* -1 when not delivered */
    int kr_err; /* 0 when delivered, else an rm_err_t */
    const char *kr_reason; /* librdkafka's text when not delivered, else NULL */
    void *kr_opaque; /* the message's km_opaque */
} kprod_report_t;

/* Called once for every message's delivery report, on the thread that serves reports. */
typedef void kprod_report_fn(void *opaque, const kprod_report_t *report);

/* Where one message landed; see kprod_report_ack. */
typedef struct kprod_ack {
    int32_t ka_partition;
    int64_t ka_offset; /* -1 until delivered */
    int ka_err; /* 0 when delivered, else an rm_err_t */
    bool ka_done; /* its report was served */
} kprod_ack_t;

/* A report function for callers that only want to know where messages landed: each
 * message's km_opaque, when not NULL, is a kprod_ack_t the caller keeps alive until the
 * report is served (kprod_flush returned 0), and it is filled then. */
void kprod_report_ack(void *opaque, const kprod_report_t *report);

/* Creates a producer from conf, which is taken over in every case (the caller sets its
 * pointer to NULL). kprod sets the conf's delivery callback and opaque; the caller's
 * settings are kept otherwise. report (NULL: none) is called with opaque for every
 * message. Returns NULL with errstr set on failure. */
kprod_t *kprod_new(rd_kafka_conf_t *conf, kprod_report_fn *report, void *opaque, char *errstr,
                   size_t errlen);

/* Flushes for up to flush_timeout_ms (0: not at all); then, when purge, drops what is
 * still queued or in flight (their reports say RM_EKAFKA, "purged"), so that destroying
 * does not wait for a broker that cannot take them; then destroys. The report function
 * may run during the call. NULL-safe. */
void kprod_destroy(kprod_t *kp, int flush_timeout_ms, bool purge);

/* Queues one message. While the local queue is full, serves delivery reports and tries
 * again; stops at a fatal producer error. Returns 0, RM_EKAFKA (fatal error, e.g.
 * idempotence violated, or a message librdkafka refuses; see kprod_error) or another
 * rm_err_t mapped from librdkafka. */
int kprod_send(kprod_t *kp, const kprod_msg_t *msg);

/* kprod_send, but returns RM_EBUSY at once when the local queue is full, for callers
 * that produce again at their next step. */
int kprod_try_send(kprod_t *kp, const kprod_msg_t *msg);

/* Serves delivery reports without blocking. */
void kprod_poll(kprod_t *kp);

/* Serves delivery reports until nothing is queued or in flight, or timeout_ms passed
 * (-1: no bound of its own; message.timeout.ms then bounds how long a message can stay,
 * unless it is 0), or the producer failed for good. Returns 0 when nothing is left,
 * RM_ETIMEOUT when messages are left, RM_EKAFKA after a fatal error. Messages that
 * failed are not an error here: see kprod_failed. */
int kprod_flush(kprod_t *kp, int timeout_ms);

/* Messages queued, in flight, or whose reports are not served yet. */
uint64_t kprod_queued(kprod_t *kp);
uint64_t kprod_delivered(const kprod_t *kp);
uint64_t kprod_failed(const kprod_t *kp);

/* The first error since the producer was created (a refused send, a failed delivery, a
 * fatal error) as "topic: reason", or NULL. */
const char *kprod_error(const kprod_t *kp);
/* The most recent such error, or NULL. */
const char *kprod_last_error(const kprod_t *kp);

/* RM_EKAFKA with librdkafka's reason in reason when the producer failed for good (an
 * idempotent or transactional producer after a permanent error: every later send fails;
 * make a new one), else 0. */
int kprod_fatal(kprod_t *kp, char *reason, size_t reason_len);

/* The librdkafka handle, for what is not producing: metadata, the cluster id, admin
 * requests. Borrowed: valid until kprod_destroy. */
rd_kafka_t *kprod_rk(kprod_t *kp);

#endif
