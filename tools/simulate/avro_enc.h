/* avro_enc: encodes simulated events as Confluent-framed Avro messages.
 *
 * Each event type can be written with every catalog schema whose record full name is the
 * type's (avro_enc_encode_version; oldest first), by default with the newest. Schema fields
 * are matched to model fields once, at start, by name or, for a renamed field, by one of
 * its aliases; an optional (null-union) field the model does not fill encodes as null. One avro-c
 * generic value and one output buffer per encoder are reused, so in the steady state encoding
 * allocates only inside avro-c's string setters. Not thread-safe: one encoder per thread. */
#ifndef SIM_AVRO_ENC_H
#define SIM_AVRO_ENC_H

#include "catalog.h"
#include "registry.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

/* Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body. */
#define AVRO_ENC_MAGIC 0x00
#define AVRO_ENC_HEADER_BYTES 5

typedef struct avro_enc avro_enc_t;

/* Prepares a writer for every event type. catalog must outlive the encoder. Returns NULL
 * with errstr set when a type has no schema, no topic, or a field the model cannot fill. */
avro_enc_t *avro_enc_new(const catalog_t *catalog, char *errstr, size_t errlen);
void avro_enc_destroy(avro_enc_t *enc);

/* Encodes pl, an event of type, and points *ret_data / *ret_len at the framed message,
 * borrowed from the encoder until its next call. Returns 0, RM_EINVAL (the payload does
 * not fit the schema; see avro_enc_last_error) or RM_ENOMEM. */
int avro_enc_encode(avro_enc_t *enc, sim_event_type_t type, const sim_payload_t *pl,
                    const void **ret_data, size_t *ret_len);
/* A description of the last failure of avro_enc_encode (never NULL). */
const char *avro_enc_last_error(const avro_enc_t *enc);

/* avro_enc_encode with the version-th schema of type (0 = oldest; < avro_enc_versions). */
int avro_enc_encode_version(avro_enc_t *enc, sim_event_type_t type, size_t version,
                            const sim_payload_t *pl, const void **ret_data, size_t *ret_len);
size_t avro_enc_versions(const avro_enc_t *enc, sim_event_type_t type);

/* The catalog entry (schema id, topic) that type is written with by default (newest). */
const catalog_entry_t *avro_enc_entry(const avro_enc_t *enc, sim_event_type_t type);
const catalog_entry_t *avro_enc_entry_version(const avro_enc_t *enc, sim_event_type_t type,
                                              size_t version);

/* Registers every schema the encoder writes with (POST /subjects/{subject}/versions, the
 * subject by the registry's naming strategy and the catalog's topic) and frames from then
 * on with the ids the registry returned instead of the catalog's. Returns 0, or an error
 * of registry_register (or RM_EIO: an .avsc cannot be read) with errstr set. */
int avro_enc_register(avro_enc_t *enc, registry_t *registry, char *errstr, size_t errlen);
/* The id the version-th schema of type is framed with. */
int32_t avro_enc_frame_id(const avro_enc_t *enc, sim_event_type_t type, size_t version);

#endif
