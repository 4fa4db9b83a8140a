/* Shared hub test fixture: see hub_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hub_fixture.h"

test_mem tm;

int hf_setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  return 0;
}

int hf_teardown(void **state) {
  (void)state;
  /* cmocka fails the test for leaked blocks; this names the culprit. */
  assert_int_equal(tm.live, 0);
  return 0;
}

static size_t framer_put(uint8_t *buf, const char *tmp, int n) {
  memcpy(buf, tmp, (size_t)n);
  return (size_t)n;
}

size_t hf_framer_len(uint8_t *buf, uint32_t flags, size_t len, void *ud) {
  char tmp[CF_FRAME_HEADROOM_MAX + 1];

  (void)flags;
  (void)ud;
  return framer_put(buf, tmp, snprintf(tmp, sizeof(tmp), "<%zu>", len));
}

size_t hf_framer_kind(uint8_t *buf, uint32_t flags, size_t len, void *ud) {
  char tmp[CF_FRAME_HEADROOM_MAX + 1];
  char kind = flags == CF_MSG_BINARY ? 'B' : 'T';

  (void)ud;
  return framer_put(buf, tmp,
                    snprintf(tmp, sizeof(tmp), "<%c%zu>", kind, len));
}

int hf_pub(cf_hub *h, const char *room, const char *s) {
  return cf_hub_publish(h, room, strlen(room), CF_MSG_TEXT, s, strlen(s));
}

cf_hub_stats hf_stats(const cf_hub *h) {
  cf_hub_stats st;

  cf_hub_get_stats(h, &st, sizeof(st));
  return st;
}

void hf_drain(cf_client *c, char *buf, size_t cap, size_t *len) {
  struct iovec iov[8];
  int n, i;

  while ((n = cf_client_iov(c, iov, 8)) > 0) {
    size_t total = 0;

    for (i = 0; i < n; i++) {
      if (buf != NULL) {
        assert_true(*len + iov[i].iov_len <= cap);
        memcpy(buf + *len, iov[i].iov_base, iov[i].iov_len);
      }
      *len += iov[i].iov_len;
      total += iov[i].iov_len;
    }
    cf_client_consume(c, total);
  }
}

void hf_take(cf_client *c, char *buf, size_t cap, size_t *len) {
  cf_msg *m;

  while (c != NULL && (m = cf_client_pop(c)) != NULL) {
    size_t n = cf_msg_size(m);

    assert_true(*len + n + 1 < cap);
    memcpy(buf + *len, cf_msg_data(m), n);
    *len += n;
    buf[(*len)++] = '|';
    buf[*len] = '\0';
    cf_msg_unref(m);
  }
}

/* --- Fake queue backend ---------------------------------------------- */

static int fq_start(void *impl) {
  (void)impl;
  return CF_OK;
}

static int fq_publish(void *impl, const cf_envelope *env) {
  hf_fakeq *f = impl;
  void *copy;

  if (f->fail_with != 0)
    return f->fail_with;
  /* A real backend copies the envelope, which may fail. */
  if (f->mem != NULL) {
    copy = f->mem->malloc(env->len + 1, f->mem->user_data);
    if (copy == NULL)
      return CF_ERR_NOMEM;
    f->mem->free(copy, f->mem->user_data);
  }
  assert_true(f->n < HF_FQ_MAX && env->len <= sizeof(f->data[0]));
  f->env[f->n] = *env;
  memcpy(f->room[f->n], env->room, env->room_len);
  memcpy(f->data[f->n], env->data, env->len);
  f->env[f->n].room = f->room[f->n];
  f->env[f->n].data = f->data[f->n];
  f->n++;
  return CF_OK;
}

static int fq_flush(void *impl, double timeout) {
  (void)impl;
  (void)timeout;
  return CF_OK;
}

static void fq_destroy(void *impl) {
  ((hf_fakeq *)impl)->destroyed = 1;
}

const cf_queue_ops hf_fq_ops = {.version = CF_QUEUE_OPS_VERSION,
                                .name = "fake",
                                .start = fq_start,
                                .publish = fq_publish,
                                .flush = fq_flush,
                                .destroy = fq_destroy};
