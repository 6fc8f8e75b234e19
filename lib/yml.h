/* yml: a read-only YAML document tree with line numbers, over libyaml.
 *
 * Config files and view definitions are YAML; every error about them must name
 * the file, the line and the key, so this wrapper keeps libyaml's marks and
 * hands out nodes that know their line. Aliases are resolved by libyaml.
 * A document and its nodes are immutable after load and may be read from any
 * thread. Nodes are borrowed: valid until yml_destroy(). */
#ifndef RM_YML_H
#define RM_YML_H

#include <stddef.h>

typedef struct yml_doc yml_doc_t;
typedef struct yml_node yml_node_t;

typedef enum yml_kind { YML_NONE = 0, YML_SCALAR, YML_SEQ, YML_MAP } yml_kind_t;

/* Loads and parses path. On failure returns NULL and writes "path:line: what" to errstr. */
yml_doc_t *yml_load_file(const char *path, char *errstr, size_t errlen);
/* Parses YAML text held in memory; name is used in messages. Same contract as above. */
yml_doc_t *yml_load_string(const char *name, const char *text, size_t len, char *errstr,
                           size_t errlen);
void yml_destroy(yml_doc_t *doc);

/* The file name given at load. */
const char *yml_name(const yml_doc_t *doc);
/* Root node, or NULL for an empty document. */
const yml_node_t *yml_root(const yml_doc_t *doc);

yml_kind_t yml_kind(const yml_node_t *node);
/* 1-based line where the node starts. */
unsigned yml_line(const yml_node_t *node);
/* A scalar's text (NUL-terminated; YAML scalars cannot hold NUL), or NULL if not a scalar. */
const char *yml_scalar(const yml_node_t *node);
/* Number of items of a sequence or pairs of a mapping; 0 for a scalar. */
size_t yml_count(const yml_node_t *node);
/* i-th item of a sequence; NULL when out of range or not a sequence. */
const yml_node_t *yml_seq_at(const yml_node_t *node, size_t i);
/* i-th key (a scalar node) and value of a mapping; NULL when out of range. */
const yml_node_t *yml_map_key_at(const yml_node_t *node, size_t i);
const yml_node_t *yml_map_value_at(const yml_node_t *node, size_t i);
/* Value of key in a mapping, or NULL. */
const yml_node_t *yml_map_get(const yml_node_t *node, const char *key);

#endif
