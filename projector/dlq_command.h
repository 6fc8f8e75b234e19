/* dlq_command: `projector dlq list|replay|purge` — operate on the view's dead letters.
 *
 * Dead letters live in <topic>.dlq (lib/outbox.c). Which of them an operator has
 * dealt with is kept as Kafka consumer-group offsets of group "<group.id>-dlq", not
 * in the store: the commands then work while the projector runs, and the store keeps
 * its single writer.
 *   list    prints the dead letters of this view after the group's offsets (JSON lines)
 *   replay  re-publishes each one's original key and value to its original topic
 *           (header readmodel.replay-of), then advances the group past it: the
 *           projector applies it like any other event (after a fix, e.g. a newly
 *           registered schema), and the version guard makes a double replay harmless
 *   purge   advances the group past them without re-publishing */
#ifndef RM_DLQ_COMMAND_H
#define RM_DLQ_COMMAND_H

#include "app.h"

/* Runs one dlq subcommand. Returns an exit code (APP_EXIT_*). */
int dlq_main(app_t *app, const char *command, bool dry_run);

#endif
