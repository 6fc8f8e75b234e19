/* rm_err: the project's one error convention (docs/style.md, "Contracts").
 *
 * Every function that can fail returns int: 0 on success, a negative rm_err_t
 * on failure. LMDB, librdkafka, avro-c and errno codes are mapped onto these,
 * never leaked to callers. rm_strerror() never returns NULL. */
#ifndef RM_ERR_H
#define RM_ERR_H

typedef enum rm_err {
    RM_OK = 0,
    RM_ENOMEM = -1,        /* allocation failed */
    RM_EINVAL = -2,        /* invalid argument or malformed input */
    RM_EIO = -3,           /* I/O error (disk, socket) */
    RM_ENOTFOUND = -4,     /* key, file or item does not exist */
    RM_EFRAME = -5,        /* message is not Confluent-framed (magic byte, length) */
    RM_ESCHEMA = -6,       /* unknown or incompatible schema id */
    RM_EDECODE = -7,       /* Avro body does not match its writer schema */
    RM_EVALIDATE = -8,     /* event decoded but violates the view definition */
    RM_EMAPFULL = -9,      /* LMDB map full: grow and retry the same batch */
    RM_EDISKFULL = -10,    /* file system full: stop, keep state, retry later */
    RM_ESTORE = -11,       /* any other LMDB failure */
    RM_EKAFKA = -12,       /* librdkafka failure */
    RM_ECONFIG = -13,      /* bad configuration */
    RM_EEXISTS = -14,      /* already exists */
    RM_ETIMEOUT = -15,     /* deadline passed */
    RM_EMISMATCH = -16,    /* store was built by another view definition */
    RM_ERESIZED = -17,     /* another process grew the map; adopt and retry */
    RM_EBUSY = -18,        /* resource in use (e.g. store locked by another writer) */
    RM_EGAP = -19,         /* stored offset outside the log: deleted unseen, or log cut back */
    RM_ESUSPECT = -20,     /* store may have lost writes (failed fsync, OS crash while
                              unsynced): never served or written again; rebuild it */
    RM_EUNAVAIL = -21,     /* a service this depends on (the schema registry) cannot answer
                              now: not the message's fault; retry later */
} rm_err_t;

/* Returns a static, human-readable description of err (never NULL). */
const char *rm_strerror(int err);

/* Maps an LMDB return code (MDB_* or errno) to an rm_err_t. 0 maps to RM_OK. */
int rm_err_from_mdb(int mdb_rc);

/* Maps an errno value to an rm_err_t. */
int rm_err_from_errno(int errnum);

#endif
