/* view_feeds: which topics feed each section of a view (view.h vs_feeds), derived once
 * from the definition, so that the query API can say per section how far behind the
 * partitions it depends on are (docs/query-api.md, freshness). */
#include "view_feeds.h"

#include <assert.h>
#include <string.h>

static uint64_t all_topics(const view_t *view)
{
    return view->v_topic_count == 64 ? UINT64_MAX : (UINT64_C(1) << view->v_topic_count) - 1;
}

/* The topics a rule's record arrives on. The projector routes by record name, not by
 * topic, so the catalog's `topic` of each schema of that name is where producers put it;
 * a record the catalog places on none of the view's topics may come on any of them. */
static uint64_t rule_topics(const view_t *view, const catalog_t *catalog, const view_rule_t *rule)
{
    uint64_t topics = 0;
    for (size_t i = 0; i < catalog_count(catalog); i++) {
        const catalog_entry_t *entry = catalog_at(catalog, i);
        if (!entry->ce_topic || strcmp(entry->ce_full_name, rule->vr_event) != 0)
            continue;
        int t = view_topic_index(view, entry->ce_topic);
        if (t >= 0)
            topics |= UINT64_C(1) << t;
    }
    return topics ? topics : all_topics(view);
}

/* Topics whose rules create link l: an event that resolves its key through l is parked
 * until the link arrives, so the section it writes is as late as those topics too. */
static uint64_t link_topics(const view_t *view, const uint64_t *topics_of_rule, int link)
{
    uint64_t topics = 0;
    for (size_t r = 0; r < view->v_rule_count; r++)
        for (size_t o = 0; o < view->v_rules[r].vr_op_count; o++)
            if (view->v_rules[r].vr_ops[o].vo_kind == VIEW_OP_LINK &&
                view->v_rules[r].vr_ops[o].vo_link == link)
                topics |= topics_of_rule[r];
    return topics;
}

void view_feeds_compute(view_t *view, const catalog_t *catalog)
{
    assert(view->v_topic_count <= VIEW_MAX_TOPICS);
    uint64_t topics_of_rule[view->v_rule_count ? view->v_rule_count : 1];
    for (size_t r = 0; r < view->v_rule_count; r++)
        topics_of_rule[r] = rule_topics(view, catalog, &view->v_rules[r]);
    for (size_t s = 0; s < view->v_section_count; s++)
        view->v_sections[s].vs_feeds = 0;
    for (size_t r = 0; r < view->v_rule_count; r++) {
        const view_rule_t *rule = &view->v_rules[r];
        uint64_t topics = topics_of_rule[r];
        if (rule->vr_via_link >= 0)
            topics |= link_topics(view, topics_of_rule, rule->vr_via_link);
        for (size_t o = 0; o < rule->vr_op_count; o++)
            if (rule->vr_ops[o].vo_section >= 0) /* erase and link write no section */
                view->v_sections[rule->vr_ops[o].vo_section].vs_feeds |= topics;
    }
    for (size_t t = 0; view->v_tombstones && t < view->v_topic_count; t++) {
        const view_tombstone_t *tomb = &view->v_tombstones[t];
        if (tomb->vt_kind == VIEW_TOMB_DELETE)
            view->v_sections[tomb->vt_section].vs_feeds |=
                (UINT64_C(1) << t) | link_topics(view, topics_of_rule, tomb->vt_link);
    }
    int repairs = view->v_repair_topic ? view_topic_index(view, view->v_repair_topic) : -1;
    for (size_t s = 0; repairs >= 0 && s < view->v_section_count; s++)
        view->v_sections[s].vs_feeds |= UINT64_C(1) << repairs; /* a repair may set any */
    for (size_t s = 0; s < view->v_section_count; s++)
        if (view->v_sections[s].vs_live)
            view->v_sections[s].vs_feeds = 0; /* never written from a topic */
}
