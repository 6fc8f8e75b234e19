/* raw_consume: the ceiling for projection throughput — a plain librdkafka loop that
 * consumes every partition of the given topics from the beginning to the high
 * watermark it had at start, touching each payload once, and reports messages/s.
 * It uses the same consumer settings as the projector (lib/pipeline.c), so the
 * ratio projector/raw isolates the cost of decode + apply + commit. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 3 ? stderr : stdout,
                "Usage: raw_consume BOOTSTRAP TOPIC[,TOPIC...]\n"
                "Prints one JSON line: {\"messages\":N,\"seconds\":S,\"rate\":R}\n");
        return argc < 3 ? 2 : 0;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[] = {"bootstrap.servers",
                           argv[1],
                           "group.id",
                           "raw-consume-bench",
                           "enable.auto.commit",
                           "false",
                           "queued.min.messages",
                           "1000000",
                           "queued.max.messages.kbytes",
                           "1048576",
                           "fetch.wait.max.ms",
                           "10",
                           "fetch.message.max.bytes",
                           "4194304",
                           NULL};
    for (int i = 0; props[i]; i += 2)
        if (rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof(err))) {
            fprintf(stderr, "raw_consume: %s\n", err);
            return 2;
        }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "raw_consume: %s\n", err);
        return 1;
    }
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000)) {
        fprintf(stderr, "raw_consume: metadata failed\n");
        return 1;
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(64);
    int64_t expected = 0;
    char *topics = strdup(argv[2]);
    for (char *t = strtok(topics, ","); t; t = strtok(NULL, ",")) {
        for (int i = 0; i < md->topic_cnt; i++) {
            if (strcmp(md->topics[i].topic, t) != 0)
                continue;
            for (int p = 0; p < md->topics[i].partition_cnt; p++) {
                int64_t lo, hi;
                rd_kafka_query_watermark_offsets(rk, t, md->topics[i].partitions[p].id, &lo, &hi,
                                                 5000);
                expected += hi - lo;
                rd_kafka_topic_partition_list_add(list, t, md->topics[i].partitions[p].id)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    free(topics);
    int64_t count = 0;
    uint64_t checksum = 0;
    double start = 0;
    while (count < expected) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m)
            continue;
        if (!m->err) {
            if (count == 0)
                start = now_s();
            count++;
            if (m->len)
                checksum += ((const unsigned char *)m->payload)[m->len - 1];
        }
        rd_kafka_message_destroy(m);
    }
    double secs = now_s() - start;
    printf("{\"messages\":%lld,\"seconds\":%.3f,\"rate\":%.0f,\"checksum\":%llu}\n",
           (long long)count, secs, secs > 0 ? (double)count / secs : 0.0,
           (unsigned long long)checksum);
    rd_kafka_assign(rk, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
