/*
 * libchatfanout - umbrella header. Link with `pkg-config --libs
 * libchatfanout`. See cf_hub.h for the hub, cf_queue.h for queues and
 * cf_loop.h for the event-loop boundary.
 */
#ifndef CHATFANOUT_H
#define CHATFANOUT_H

#include <chatfanout/cf_version.h>
#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>
#include <chatfanout/cf_queue.h>
#include <chatfanout/cf_queue_sqs.h>
#include <chatfanout/cf_hub.h>

#endif /* CHATFANOUT_H */
