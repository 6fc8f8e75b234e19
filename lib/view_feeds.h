/* view_feeds: which topics feed each section of a view (view.h vs_feeds). Its own header,
 * apart from view.h, so that the loader depends on it and it on the lookups of
 * view_query.c, never back: no cycle between the parts of the view module. */
#ifndef RM_VIEW_FEEDS_H
#define RM_VIEW_FEEDS_H

#include "view.h"

/* Fills every section's vs_feeds from the rules, links, tombstones and repairs topic, and
 * the catalog's topic of each record: a rule feeds the sections its operations write from
 * the topics its record is published on (any of the view's topics when the catalog names
 * none); a rule that finds its key through a link also waits on the topics whose rules
 * create that link (its events are parked until then); the repairs topic feeds every
 * projected section; erasures feed none (they remove the document, not a section's
 * content). Called by view_load; requires v_topic_count <= VIEW_MAX_TOPICS. */
void view_feeds_compute(view_t *view, const catalog_t *catalog);

#endif
