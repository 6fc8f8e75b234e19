/* rm_err: error codes and their descriptions. */
#include "rm_err.h"

#include <errno.h>
#include <lmdb.h>

const char *rm_strerror(int err)
{
    switch ((rm_err_t)err) {
    case RM_OK:
        return "success";
    case RM_ENOMEM:
        return "out of memory";
    case RM_EINVAL:
        return "invalid argument or input";
    case RM_EIO:
        return "I/O error";
    case RM_ENOTFOUND:
        return "not found";
    case RM_EFRAME:
        return "bad Confluent framing";
    case RM_ESCHEMA:
        return "unknown or incompatible schema id";
    case RM_EDECODE:
        return "Avro body does not match its schema";
    case RM_EVALIDATE:
        return "event violates the view definition";
    case RM_EMAPFULL:
        return "LMDB map full";
    case RM_EDISKFULL:
        return "file system full";
    case RM_ESTORE:
        return "store (LMDB) error";
    case RM_EKAFKA:
        return "Kafka client error";
    case RM_ECONFIG:
        return "bad configuration";
    case RM_EEXISTS:
        return "already exists";
    case RM_ETIMEOUT:
        return "deadline passed";
    case RM_EMISMATCH:
        return "store was built by another view definition";
    case RM_ERESIZED:
        return "store map was resized by another process";
    case RM_EBUSY:
        return "resource busy";
    case RM_EGAP:
        return "gap: stored offset is outside the partition's log";
    case RM_ESUSPECT:
        return "store may have lost writes (failed fsync or OS crash): rebuild it";
    case RM_EUNAVAIL:
        return "service unavailable (schema registry): retry later";
    }
    return "unknown error";
}

int rm_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return RM_OK;
    case ENOMEM:
        return RM_ENOMEM;
    case ENOENT:
        return RM_ENOTFOUND;
    case ENOSPC:
    case EDQUOT:
        return RM_EDISKFULL;
    case EINVAL:
        return RM_EINVAL;
    case EEXIST:
        return RM_EEXISTS;
    case EAGAIN:
    case EBUSY:
        return RM_EBUSY;
    case ETIMEDOUT:
        return RM_ETIMEOUT;
    default:
        return RM_EIO;
    }
}

int rm_err_from_mdb(int mdb_rc)
{
    switch (mdb_rc) {
    case MDB_SUCCESS:
        return RM_OK;
    case MDB_NOTFOUND:
        return RM_ENOTFOUND;
    case MDB_KEYEXIST:
        return RM_EEXISTS;
    case MDB_MAP_FULL:
        return RM_EMAPFULL;
    case MDB_MAP_RESIZED:
        return RM_ERESIZED;
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
    case MDB_DBS_FULL:
        return RM_ESTORE;
    default:
        if (mdb_rc > 0)
            return rm_err_from_errno(mdb_rc);
        return RM_ESTORE;
    }
}
