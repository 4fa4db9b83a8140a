/*
 * A C service embedding the hub with its own transport: every client is
 * an in-memory inbox that pops whole messages from its outbox.
 * Build: cc embed.c $(pkg-config --cflags --libs libchatfanout)
 */
#include <stdio.h>
#include <string.h>

#include <chatfanout/chatfanout.h>

struct inbox {
  const char *name;
  cf_client *c;
  int ready; /* set by wake: the outbox has something */
  int got;   /* messages popped so far */
};

static void on_wake(cf_client *c, void *user_data) {
  /* A socket transport would start watching for writability here. */
  (void)c;
  ((struct inbox *)user_data)->ready = 1;
}

static void on_close(cf_client *c, int reason, void *user_data) {
  struct inbox *in = user_data;
  printf("%s closed (reason %d)\n", in->name, reason);
  cf_client_free(c);
  in->c = NULL;
}

static const cf_client_ops inbox_ops = {
    .version = CF_CLIENT_OPS_VERSION, .wake = on_wake, .close = on_close};

static void drain(struct inbox *in) {
  cf_msg *m;
  if (!in->ready)
    return;
  in->ready = 0;
  while ((m = cf_client_pop(in->c)) != NULL) {
    printf("%s got \"%.*s\"\n", in->name, (int)cf_msg_size(m),
           (const char *)cf_msg_data(m));
    in->got++;
    cf_msg_unref(m); /* the hub shares one copy among all inboxes */
  }
}

static int ok(int rv, const char *what) {
  if (rv != CF_OK)
    fprintf(stderr, "%s: %s\n", what, cf_strerror(rv));
  return rv == CF_OK;
}

static int say(cf_hub *hub, const char *room, const char *text) {
  return ok(cf_hub_publish(hub, room, strlen(room), CF_MSG_TEXT, text,
                           strlen(text)), "publish");
}

int main(void) {
  cf_hub_config cfg = {.version = CF_HUB_CONFIG_VERSION};
  struct inbox alice = {"alice", NULL, 0, 0}, bob = {"bob", NULL, 0, 0};
  struct inbox carol = {"carol", NULL, 0, 0};
  cf_hub *hub;
  int good;

  cfg.history = 10; /* joiners get the last 10 messages of a room */
  if (!ok(cf_hub_new(&hub, &cfg), "cf_hub_new"))
    return 1;
  good = ok(cf_client_new(&alice.c, hub, &inbox_ops, &alice), "new") &&
         ok(cf_client_new(&bob.c, hub, &inbox_ops, &bob), "new") &&
         ok(cf_client_new(&carol.c, hub, &inbox_ops, &carol), "new") &&
         ok(cf_client_join(alice.c, "lobby", 5), "join") &&
         ok(cf_client_join(carol.c, "other", 5), "join") &&
         say(hub, "lobby", "hello from alice") &&
         ok(cf_client_join(bob.c, "lobby", 5), "join") && /* history */
         say(hub, "lobby", "hi alice, bob here");
  drain(&alice);
  drain(&bob);
  drain(&carol);
  printf("alice %d, bob %d, carol %d (library %s)\n", alice.got, bob.got,
         carol.got, cf_version_string());
  good = good && alice.got == 2 && bob.got == 2 && carol.got == 0;
  cf_hub_free(hub); /* also frees the clients still attached */
  puts(good ? "ok" : "unexpected result");
  return good ? 0 : 1;
}
