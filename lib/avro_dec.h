/* avro_dec: Confluent-framed Avro → a reader-schema avro_value_t, safely and cheaply.
 *
 * Notes on the design:
 * (1) Framing: byte 0 = 0x00, bytes 1-4 = schema id (big-endian), then the body.
 * (2) Every body is validated against its writer schema BEFORE avro-c sees it:
 *     varint shape, lengths against the remaining bytes, UTF-8 of strings, enum and
 *     union indexes, boolean bytes, nesting depth, and that the body is consumed
 *     exactly. avro-c 1.11.1 leaks on every failed decode and mishandles
 *     out-of-range enum/union indexes (docs/architecture.md §8), so poison must never reach it.
 * (3) One decoder per schema id, built on first use and kept. The reader schema is the
 *     newest catalog schema with the same record name; the body is decoded with its
 *     writer schema, and a field map computed once (by name, then by the reader
 *     field's aliases) says where each reader field is: reader fields the writer lacks
 *     must default to null and read as absent, writer fields the reader lacks are
 *     ignored, and a field whose type changed makes the writer incompatible (RM_ESCHEMA).
 *     avro-c 1.11's resolved writer cannot do this: it rejects any reader field the
 *     writer lacks, defaults or not, and ignores aliases (docs/design.md). Value
 *     instances are reused, so the steady state allocates nothing per message.
 * Not thread-safe: one avro_dec_t per consumer thread. */
#ifndef RM_AVRO_DEC_H
#define RM_AVRO_DEC_H

#include "buf.h"
#include "catalog.h"

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#define AVRO_DEC_MAX_DEPTH 32

typedef struct avro_dec avro_dec_t;

typedef struct avro_dec_event {
    int32_t ade_schema_id;
    const catalog_entry_t *ade_writer;
    const catalog_entry_t *ade_reader;
    avro_value_t *ade_value; /* WRITER-schema record; borrowed, valid until the next decode */
    const int *ade_field_map; /* reader field index -> index in ade_value, -1: absent */
    const avro_value_t *ade_defaults; /* per reader field: its default when the writer lacks
                                         it and it is not null (iface NULL: none) */
} avro_dec_event_t;

/* catalog must outlive the decoder. Returns NULL on allocation failure. */
avro_dec_t *avro_dec_new(const catalog_t *catalog);
void avro_dec_destroy(avro_dec_t *dec);

/* Splits a Confluent frame. Returns 0, or RM_EFRAME (too short, wrong magic byte). */
int avro_dec_frame(const void *data, size_t len, int32_t *ret_schema_id, const void **ret_body,
                   size_t *ret_body_len);

/* The inverse of avro_dec_frame, for the few messages this project writes itself
 * (repairs, dead-letter-handled markers): value as a Confluent-framed Avro message
 * (magic 0, big-endian schema_id, binary body) into out (reset first). Allocates a
 * writer per call: not for a hot path. Returns 0, RM_ENOMEM or RM_EINVAL. */
int avro_dec_encode_frame(int32_t schema_id, avro_value_t *value, buf_t *out);

/* Validates body against schema (see note 2). Returns 0 or RM_EDECODE with a short
 * reason (no payload bytes) in reason. Pure; exposed for tests and fuzzing. */
int avro_dec_validate(avro_schema_t schema, const void *body, size_t len, char *reason,
                      size_t reasonlen);

/* Decodes a framed message. Returns 0 and fills ret_event, or RM_EFRAME, RM_ESCHEMA
 * (unknown id, or writer incompatible with the reader), RM_EDECODE, with a short
 * reason; or RM_EUNAVAIL when the writer id must come from a schema registry that cannot
 * answer now (catalog_resolve): the message is not at fault, decode it again later. */
int avro_dec_decode(avro_dec_t *dec, const void *data, size_t len, avro_dec_event_t *ret_event,
                    char *reason, size_t reasonlen);

/* Whether messages written with writer can be read as reader, by the rules of note 3
 * (the check a decode makes once per schema id). Returns 0; RM_ESCHEMA with the reader
 * field index that cannot be read in ret_bad_field and the reason; or RM_ENOMEM. */
int avro_dec_check(const catalog_entry_t *writer, const catalog_entry_t *reader, int *ret_bad_field,
                   char *reason, size_t reasonlen);

/* The field of event that the reader schema has at reader_index: returns 0 and fills
 * ret_value (the reader's default when the writer lacks the field and the default is not
 * null), 1 when the writer did not write it and it defaults to null, -1 on error. */
int avro_dec_field(const avro_dec_event_t *event, size_t reader_index, avro_value_t *ret_value);

#endif
