/* crash_check: what a program would find in one crash image of a view store.
 *
 * Usage: crash_check DIR (DIR holds data.mdb and the store's marks)
 * Prints two JSON lines, flushing after each, so a crash while walking a torn file (a
 * SIGSEGV on a page pointer into nowhere) still leaves the first:
 *   {"suspect":BOOL,"why":"..."}  store_check_durable(): would the query API, the
 *                                  projector and every other reader refuse it?
 *   {"txnid":N,"entries":N,"digest":"HEX"} or {"error":"..."}
 *                                  the walk an old reader would have made: every
 *                                  entry of every named database, hashed (FNV-1a 64
 *                                  over length-prefixed database name, key and value)
 * Exit 0 when the walk completed, 1 when LMDB reported an error. */
#include "rm_err.h"
#include "store.h"

#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK_MAX_DBS 64
#define CHECK_MAIN_DBI 1 /* LMDB's: 0 is the free-page database */

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t n = len; /* length first: ("ab","c") and ("a","bc") differ */
    for (int i = 0; i < 8; i++) {
        h ^= (n >> (i * 8)) & 0xff;
        h *= 1099511628211ULL;
    }
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int walk(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *hash, uint64_t *entries)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    MDB_val key, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        *hash = fnv(*hash, name, strlen(name));
        *hash = fnv(*hash, key.mv_data, key.mv_size);
        *hash = fnv(*hash, val.mv_data, val.mv_size);
        (*entries)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: crash_check DIR\n");
        return 2;
    }
    char why[1024] = "";
    int rc = store_check_durable(argv[1], why, sizeof(why));
    printf("{\"suspect\":%s,\"why\":\"%s\"}\n", rc == RM_ESUSPECT ? "true" : "false",
           rc ? rm_strerror(rc) : "");
    fflush(stdout);

    MDB_env *env;
    MDB_txn *txn = NULL;
    uint64_t hash = 14695981039346656037ULL, entries = 0;
    const char *stage = "env_create";
    rc = mdb_env_create(&env);
    if (!rc) {
        mdb_env_set_maxdbs(env, CHECK_MAX_DBS);
        stage = "env_open";
        rc = mdb_env_open(env, argv[1], MDB_RDONLY | MDB_NOLOCK, 0644);
    }
    if (!rc) {
        stage = "txn_begin";
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    }
    /* The main database lists the named ones; each is opened and walked. */
    char names[CHECK_MAX_DBS][64];
    size_t count = 0;
    if (!rc) {
        stage = "main";
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, CHECK_MAIN_DBI, &cur);
        MDB_val key, val;
        int grc;
        for (grc = rc ? rc : mdb_cursor_get(cur, &key, &val, MDB_FIRST); grc == 0;
             grc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            if (count < CHECK_MAX_DBS && key.mv_size < sizeof(names[0])) {
                memcpy(names[count], key.mv_data, key.mv_size);
                names[count++][key.mv_size] = '\0';
            }
        }
        if (!rc) {
            mdb_cursor_close(cur);
            rc = grc == MDB_NOTFOUND ? 0 : grc;
        }
    }
    for (size_t i = 0; !rc && i < count; i++) {
        MDB_dbi dbi;
        stage = names[i];
        rc = mdb_dbi_open(txn, names[i], 0, &dbi);
        if (!rc)
            rc = walk(txn, dbi, names[i], &hash, &entries);
    }
    if (rc) {
        /* A torn main database can name a database in garbage bytes: print them safely. */
        printf("{\"error\":\"");
        for (const unsigned char *p = (const unsigned char *)stage; *p; p++)
            printf(*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\' ? "%c" : "\\u%04x", *p);
        printf(": %s\"}\n", mdb_strerror(rc));
    } else {
        MDB_envinfo info;
        mdb_env_info(env, &info);
        printf("{\"txnid\":%zu,\"entries\":%llu,\"digest\":\"%016llx\"}\n", info.me_last_txnid,
               (unsigned long long)entries, (unsigned long long)hash);
    }
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc ? 1 : 0;
}
