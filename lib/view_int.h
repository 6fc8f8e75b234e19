/* view_int: what the parts of the view loader (view.c, view_rules.c, view_options.c)
 * share; private to them. */
#ifndef RM_VIEW_INT_H
#define RM_VIEW_INT_H

#include "view.h"
#include "yml.h"

typedef struct view_ld {
    view_t *vl_view;
    const catalog_t *vl_catalog;
    const char *vl_file;
    char *vl_err;
    size_t vl_errlen;
    bool vl_failed;
} view_ld_t;

/* view.c */
__attribute__((format(printf, 4, 5))) int view_ld_fail(view_ld_t *ld, const yml_node_t *node,
                                                       const char *where, const char *fmt, ...);
int view_ld_name(view_ld_t *ld, const yml_node_t *node, const char *where, char **ret);
int view_ld_keys(view_ld_t *ld, const yml_node_t *map, const char *where,
                 const char *const *allowed);
int view_parse_i64(const char *s, int64_t *ret);

/* view_rules.c */
int view_ld_section(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                    view_section_t *section);
int view_ld_rule(view_ld_t *ld, const yml_node_t *node, size_t index, view_rule_t *rule);
int view_ld_check_shares(view_ld_t *ld, const yml_node_t *node, size_t index);

/* view_options.c */
int view_ld_indexes(view_ld_t *ld, const yml_node_t *node);
int view_ld_sources(view_ld_t *ld, const yml_node_t *node);
int view_ld_lives(view_ld_t *ld, const yml_node_t *node);
int view_ld_repairs(view_ld_t *ld, const yml_node_t *node);
int view_ld_tombstones(view_ld_t *ld, const yml_node_t *node);

#endif
