/* view_query: lookups over a loaded view (view.h); they read only the view. */
#include "view.h"

#include <string.h>

const view_rule_t *view_rule_for(const view_t *view, const char *full_name)
{
    for (size_t i = 0; i < view->v_rule_count; i++)
        if (strcmp(view->v_rules[i].vr_event, full_name) == 0)
            return &view->v_rules[i];
    return NULL;
}

int view_section_index(const view_t *view, const char *name)
{
    for (size_t i = 0; i < view->v_section_count; i++)
        if (strcmp(view->v_sections[i].vs_name, name) == 0)
            return (int)i;
    return -1;
}

const view_source_t *view_source_for(const view_t *view, int section)
{
    for (size_t i = 0; i < view->v_source_count; i++)
        if (view->v_sources[i].vsrc_section == section)
            return &view->v_sources[i];
    return NULL;
}

const view_live_t *view_live_for(const view_t *view, int section)
{
    for (size_t i = 0; i < view->v_live_count; i++)
        if (view->v_lives[i].vlv_section == section)
            return &view->v_lives[i];
    return NULL;
}

const view_index_t *view_index_named(const view_t *view, const char *name)
{
    for (size_t i = 0; i < view->v_index_count; i++)
        if (strcmp(view->v_indexes[i].vi_name, name) == 0)
            return &view->v_indexes[i];
    return NULL;
}

int view_topic_index(const view_t *view, const char *topic)
{
    for (size_t i = 0; i < view->v_topic_count; i++)
        if (strcmp(view->v_topics[i], topic) == 0)
            return (int)i;
    return -1;
}
