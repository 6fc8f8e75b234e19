/* yml: YAML document tree with line numbers, built once from libyaml's document API.
 *
 * libyaml's yaml_document_t addresses nodes by index and needs the document to
 * follow them; we copy it into a flat array of our own nodes whose children are
 * pointers, so callers can walk a node without carrying the document around. */
#include "yml.h"
#include "rm_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct yml_node {
    yml_kind_t yn_kind;
    unsigned yn_line;
    char *yn_scalar;           /* YML_SCALAR */
    size_t yn_count;           /* items (seq) or pairs (map) */
    const yml_node_t **yn_kids; /* seq: yn_count items; map: 2*yn_count (key, value, ...) */
};

struct yml_doc {
    char *yd_name;
    yml_node_t *yd_nodes;
    size_t yd_node_count;
    const yml_node_t *yd_root;
};

void yml_destroy(yml_doc_t *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->yd_node_count; i++) {
        free(doc->yd_nodes[i].yn_scalar);
        free(doc->yd_nodes[i].yn_kids);
    }
    free(doc->yd_nodes);
    free(doc->yd_name);
    free(doc);
}

/* Copies the parsed nodes into doc. Returns 0 or RM_ENOMEM. */
static int copy_document(yml_doc_t *doc, yaml_document_t *ydoc)
{
    size_t count = (size_t)(ydoc->nodes.top - ydoc->nodes.start);
    doc->yd_nodes = calloc(count ? count : 1, sizeof(*doc->yd_nodes));
    if (!doc->yd_nodes)
        return RM_ENOMEM;
    doc->yd_node_count = count;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *yn = &ydoc->nodes.start[i];
        yml_node_t *node = &doc->yd_nodes[i];
        node->yn_line = (unsigned)yn->start_mark.line + 1;
        switch (yn->type) {
        case YAML_SCALAR_NODE:
            node->yn_kind = YML_SCALAR;
            node->yn_scalar = strndup((const char *)yn->data.scalar.value, yn->data.scalar.length);
            if (!node->yn_scalar)
                return RM_ENOMEM;
            break;
        case YAML_SEQUENCE_NODE: {
            node->yn_kind = YML_SEQ;
            size_t n = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
            node->yn_count = n;
            node->yn_kids = calloc(n ? n : 1, sizeof(*node->yn_kids));
            if (!node->yn_kids)
                return RM_ENOMEM;
            for (size_t k = 0; k < n; k++)
                node->yn_kids[k] = &doc->yd_nodes[yn->data.sequence.items.start[k] - 1];
            break;
        }
        case YAML_MAPPING_NODE: {
            node->yn_kind = YML_MAP;
            size_t n = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
            node->yn_count = n;
            node->yn_kids = calloc(n ? 2 * n : 1, sizeof(*node->yn_kids));
            if (!node->yn_kids)
                return RM_ENOMEM;
            for (size_t k = 0; k < n; k++) {
                yaml_node_pair_t *pair = &yn->data.mapping.pairs.start[k];
                node->yn_kids[2 * k] = &doc->yd_nodes[pair->key - 1];
                node->yn_kids[2 * k + 1] = &doc->yd_nodes[pair->value - 1];
            }
            break;
        }
        default:
            node->yn_kind = YML_NONE;
        }
    }
    doc->yd_root = count ? &doc->yd_nodes[0] : NULL;
    return 0;
}

static yml_doc_t *load(yaml_parser_t *parser, const char *name, char *errstr, size_t errlen)
{
    yml_doc_t *doc = calloc(1, sizeof(*doc));
    yaml_document_t ydoc;
    if (!doc || !(doc->yd_name = strdup(name))) {
        snprintf(errstr, errlen, "%s: out of memory", name);
        free(doc);
        return NULL;
    }
    if (!yaml_parser_load(parser, &ydoc)) {
        snprintf(errstr, errlen, "%s:%zu: %s%s%s", name, parser->problem_mark.line + 1,
                 parser->problem ? parser->problem : "YAML syntax error",
                 parser->context ? " " : "", parser->context ? parser->context : "");
        yml_destroy(doc);
        return NULL;
    }
    /* Duplicate keys are a common config mistake that YAML parsers accept silently. */
    int rc = copy_document(doc, &ydoc);
    yaml_document_delete(&ydoc);
    if (rc) {
        snprintf(errstr, errlen, "%s: out of memory", name);
        yml_destroy(doc);
        return NULL;
    }
    for (size_t i = 0; i < doc->yd_node_count; i++) {
        const yml_node_t *node = &doc->yd_nodes[i];
        if (node->yn_kind != YML_MAP)
            continue;
        for (size_t a = 0; a < node->yn_count; a++)
            for (size_t b = a + 1; b < node->yn_count; b++) {
                const char *ka = yml_scalar(node->yn_kids[2 * a]);
                const char *kb = yml_scalar(node->yn_kids[2 * b]);
                if (ka && kb && strcmp(ka, kb) == 0) {
                    snprintf(errstr, errlen, "%s:%u: %s: duplicate key", name,
                             node->yn_kids[2 * b]->yn_line, kb);
                    yml_destroy(doc);
                    return NULL;
                }
            }
    }
    return doc;
}

yml_doc_t *yml_load_string(const char *name, const char *text, size_t len, char *errstr,
                           size_t errlen)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(errstr, errlen, "%s: out of memory", name);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yml_doc_t *doc = load(&parser, name, errstr, errlen);
    yaml_parser_delete(&parser);
    return doc;
}

yml_doc_t *yml_load_file(const char *path, char *errstr, size_t errlen)
{
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(errstr, errlen, "%s: cannot open: %m", path);
        return NULL;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(file);
        snprintf(errstr, errlen, "%s: out of memory", path);
        return NULL;
    }
    yaml_parser_set_input_file(&parser, file);
    yml_doc_t *doc = load(&parser, path, errstr, errlen);
    yaml_parser_delete(&parser);
    fclose(file);
    return doc;
}

const char *yml_name(const yml_doc_t *doc)
{
    return doc->yd_name;
}

const yml_node_t *yml_root(const yml_doc_t *doc)
{
    return doc->yd_root;
}

yml_kind_t yml_kind(const yml_node_t *node)
{
    return node ? node->yn_kind : YML_NONE;
}

unsigned yml_line(const yml_node_t *node)
{
    return node ? node->yn_line : 0;
}

const char *yml_scalar(const yml_node_t *node)
{
    return node && node->yn_kind == YML_SCALAR ? node->yn_scalar : NULL;
}

size_t yml_count(const yml_node_t *node)
{
    return node && node->yn_kind != YML_SCALAR ? node->yn_count : 0;
}

const yml_node_t *yml_seq_at(const yml_node_t *node, size_t i)
{
    if (!node || node->yn_kind != YML_SEQ || i >= node->yn_count)
        return NULL;
    return node->yn_kids[i];
}

const yml_node_t *yml_map_key_at(const yml_node_t *node, size_t i)
{
    if (!node || node->yn_kind != YML_MAP || i >= node->yn_count)
        return NULL;
    return node->yn_kids[2 * i];
}

const yml_node_t *yml_map_value_at(const yml_node_t *node, size_t i)
{
    if (!node || node->yn_kind != YML_MAP || i >= node->yn_count)
        return NULL;
    return node->yn_kids[2 * i + 1];
}

const yml_node_t *yml_map_get(const yml_node_t *node, const char *key)
{
    for (size_t i = 0; i < yml_count(node) && node->yn_kind == YML_MAP; i++) {
        const char *k = yml_scalar(node->yn_kids[2 * i]);
        if (k && strcmp(k, key) == 0)
            return node->yn_kids[2 * i + 1];
    }
    return NULL;
}
