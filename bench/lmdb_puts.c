/* lmdb_puts: the storage ceiling for projection — raw LMDB puts of N values of a given
 * size under random keys, in transactions of a given batch size, in one durability
 * mode. Prints one JSON line. bench/run compares the projector against it: the ratio
 * isolates what decoding, routing and the engine's extra reads and writes cost. */
#include <lmdb.h>
#include <stdint.h>
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

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "Usage: lmdb_puts DIR COUNT VALUE_BYTES BATCH sync|nometasync|periodic\n");
        return 2;
    }
    const char *dir = argv[1];
    long count = atol(argv[2]), value_bytes = atol(argv[3]), batch = atol(argv[4]);
    const char *mode = argv[5];
    unsigned flags = MDB_NORDAHEAD;
    if (strcmp(mode, "periodic") == 0)
        flags |= MDB_NOSYNC;
    else if (strcmp(mode, "nometasync") == 0)
        flags |= MDB_NOMETASYNC;
    else if (strcmp(mode, "sync") != 0)
        return 2;
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    mdb_env_create(&env);
    mdb_env_set_mapsize(env, (size_t)16 << 30);
    if (mdb_env_open(env, dir, flags, 0644)) {
        fprintf(stderr, "lmdb_puts: cannot open %s\n", dir);
        return 1;
    }
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, NULL, 0, &dbi);
    mdb_txn_commit(txn);
    char *value = malloc((size_t)value_bytes);
    memset(value, 'v', (size_t)value_bytes);
    uint64_t seed = 42;
    double start = now_s(), last_sync = start;
    for (long done = 0; done < count;) {
        mdb_txn_begin(env, NULL, 0, &txn);
        for (long i = 0; i < batch && done < count; i++, done++) {
            char key[24];
            /* customer-like keys: "C" + random number, so neighbours are unrelated */
            int klen = snprintf(key, sizeof(key), "C%016llx", (unsigned long long)next_rand(&seed));
            MDB_val k = {(size_t)klen, key}, v = {(size_t)value_bytes, value};
            if (mdb_put(txn, dbi, &k, &v, 0)) {
                fprintf(stderr, "lmdb_puts: put failed\n");
                return 1;
            }
        }
        mdb_txn_commit(txn);
        if (strcmp(mode, "periodic") == 0 && now_s() - last_sync >= 1.0) {
            mdb_env_sync(env, 1);
            last_sync = now_s();
        }
    }
    mdb_env_sync(env, 1);
    double secs = now_s() - start;
    printf("{\"puts\":%ld,\"value_bytes\":%ld,\"batch\":%ld,\"mode\":\"%s\",\"seconds\":%.3f,"
           "\"rate\":%.0f}\n",
           count, value_bytes, batch, mode, secs, (double)count / secs);
    mdb_env_close(env);
    free(value);
    return 0;
}
