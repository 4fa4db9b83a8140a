/*
 * SNS XML -> jansson. See cf_aws_xml.h for the mapping. expat streams
 * events; an explicit stack of frames (one per open element) collects
 * each element's children or text, and a closing tag turns its frame
 * into a value attached to the parent. The first error stops the parser
 * and is kept, so every handler starts by checking it.
 */
#include "cf_aws_xml.h"

#include <limits.h>
#include <string.h>

#include <expat.h>

#include "cf_mem.h"

typedef struct frame {
  char name[CF__AWS_XML_MAX_NAME + 1];
  json_t *obj;  /* non-member children, created on the first one */
  json_t *arr;  /* <member> children, created on the first one */
  char *text;   /* character data while the element has no children */
  size_t len;
  size_t cap;
  int has_kids; /* a child element was seen: text is ignored */
} frame;

typedef struct xctx {
  XML_Parser p;
  const cf_mem *mem;
  int err;      /* first error, CF_OK while parsing goes well */
  int depth;    /* open elements */
  json_t *root; /* the root's value once it closed */
  char root_name[CF__AWS_XML_MAX_NAME + 1];
  frame st[CF__AWS_XML_MAX_DEPTH];
} xctx;

static void fail(xctx *x, int err) {
  if (x->err == CF_OK)
    x->err = err;
  XML_StopParser(x->p, XML_FALSE);
}

static void frame_clear(xctx *x, frame *f) {
  json_decref(f->obj);
  json_decref(f->arr);
  cf__free(x->mem, f->text);
  memset(f, 0, sizeof(*f));
}

static void XMLCALL on_start(void *ud, const XML_Char *name,
                             const XML_Char **attrs) {
  xctx *x = ud;
  size_t n = strlen(name);
  frame *f;

  (void)attrs;
  if (x->err != CF_OK)
    return;
  if (x->depth == CF__AWS_XML_MAX_DEPTH || n > CF__AWS_XML_MAX_NAME) {
    fail(x, CF_ERR_PARSE);
    return;
  }
  if (x->depth > 0)
    x->st[x->depth - 1].has_kids = 1;
  f = &x->st[x->depth++];
  memset(f, 0, sizeof(*f));
  memcpy(f->name, name, n + 1);
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int n) {
  xctx *x = ud;
  frame *f;
  size_t cap;
  char *p;

  if (x->err != CF_OK || x->depth == 0 || n <= 0)
    return;
  f = &x->st[x->depth - 1];
  /* Whitespace between child elements is layout, not content. */
  if (f->has_kids)
    return;
  if ((size_t)n >= f->cap - f->len || f->text == NULL) {
    cap = f->cap != 0 ? f->cap : 64;
    while (cap - f->len <= (size_t)n)
      cap *= 2;
    if ((p = cf__realloc(x->mem, f->text, cap)) == NULL) {
      fail(x, CF_ERR_NOMEM);
      return;
    }
    f->text = p;
    f->cap = cap;
  }
  memcpy(f->text + f->len, s, (size_t)n);
  f->len += (size_t)n;
}

/* Takes the frame's parts as one value; the frame keeps nothing. */
static json_t *frame_value(frame *f) {
  json_t *v;

  if (f->obj != NULL) {
    v = f->obj;
    if (f->arr != NULL && json_object_set_new(v, "member", f->arr) != 0)
      v = NULL; /* the object is freed with the frame */
    else
      f->obj = NULL;
    f->arr = NULL;
    return v;
  }
  if (f->arr != NULL) {
    v = f->arr;
    f->arr = NULL;
    return v;
  }
  return json_stringn(f->text != NULL ? f->text : "", f->len);
}

/* An <entry><key>K</key><value>V</value></entry> pair, or NULL. */
static const char *entry_key(const char *name, json_t *v) {
  json_t *k;
  if (strcmp(name, "entry") != 0 || !json_is_object(v))
    return NULL;
  k = json_object_get(v, "key");
  return json_is_string(k) ? json_string_value(k) : NULL;
}

/* Consumes v (stolen reference) into the parent frame. */
static int attach(frame *par, const char *name, json_t *v) {
  const char *key;
  json_t *val;
  int rc;

  if (strcmp(name, "member") == 0) {
    if (par->arr == NULL && (par->arr = json_array()) == NULL) {
      json_decref(v);
      return CF_ERR_NOMEM;
    }
    return json_array_append_new(par->arr, v) == 0 ? CF_OK : CF_ERR_NOMEM;
  }
  if (par->obj == NULL && (par->obj = json_object()) == NULL) {
    json_decref(v);
    return CF_ERR_NOMEM;
  }
  if ((key = entry_key(name, v)) != NULL) {
    val = json_object_get(v, "value");
    val = val != NULL ? json_incref(val) : json_string("");
    rc = json_object_set_new(par->obj, key, val);
    json_decref(v);
    return rc == 0 ? CF_OK : CF_ERR_NOMEM;
  }
  return json_object_set_new(par->obj, name, v) == 0 ? CF_OK : CF_ERR_NOMEM;
}

static void XMLCALL on_end(void *ud, const XML_Char *name) {
  xctx *x = ud;
  frame *f;
  json_t *v;
  int rc;

  (void)name;
  if (x->err != CF_OK || x->depth == 0)
    return;
  f = &x->st[x->depth - 1];
  v = frame_value(f);
  if (v == NULL) {
    fail(x, CF_ERR_NOMEM);
    return;
  }
  x->depth--;
  if (x->depth == 0) {
    memcpy(x->root_name, f->name, sizeof(x->root_name));
    x->root = v;
    frame_clear(x, f);
    return;
  }
  rc = attach(&x->st[x->depth - 1], f->name, v);
  frame_clear(x, f);
  if (rc != CF_OK)
    fail(x, rc);
}

/* Entity declarations are where expansion attacks live; SNS never sends
 * a DTD, so any declaration ends the parse. */
static void XMLCALL on_doctype(void *ud, const XML_Char *name,
                               const XML_Char *sysid, const XML_Char *pubid,
                               int has_internal_subset) {
  (void)name;
  (void)sysid;
  (void)pubid;
  (void)has_internal_subset;
  fail(ud, CF_ERR_PARSE);
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param,
                              const XML_Char *value, int value_len,
                              const XML_Char *base, const XML_Char *sysid,
                              const XML_Char *pubid,
                              const XML_Char *notation) {
  (void)name;
  (void)is_param;
  (void)value;
  (void)value_len;
  (void)base;
  (void)sysid;
  (void)pubid;
  (void)notation;
  fail(ud, CF_ERR_PARSE);
}

static int run_parser(xctx *x, const char *xml, size_t len) {
  x->p = XML_ParserCreate(NULL);
  if (x->p == NULL)
    return CF_ERR_NOMEM;
  XML_SetUserData(x->p, x);
  XML_SetElementHandler(x->p, on_start, on_end);
  XML_SetCharacterDataHandler(x->p, on_text);
  XML_SetStartDoctypeDeclHandler(x->p, on_doctype);
  XML_SetEntityDeclHandler(x->p, on_entity);
  if (XML_Parse(x->p, xml, (int)len, XML_TRUE) != XML_STATUS_OK &&
      x->err == CF_OK)
    x->err = XML_GetErrorCode(x->p) == XML_ERROR_NO_MEMORY ? CF_ERR_NOMEM
                                                           : CF_ERR_PARSE;
  XML_ParserFree(x->p);
  if (x->err == CF_OK && x->root == NULL)
    x->err = CF_ERR_PARSE;
  return x->err;
}

int cf__aws_xml_to_json(const char *xml, size_t len, const cf_mem *mem,
                        json_t **root, char *name, size_t name_size) {
  cf_mem m;
  xctx *x;
  int rc;

  if (root != NULL)
    *root = NULL;
  if (xml == NULL || root == NULL || (name == NULL && name_size != 0))
    return CF_ERR_INVALID;
  if (len == 0 || len > INT_MAX)
    return CF_ERR_PARSE;
  cf__mem_init(&m, mem);
  if ((x = cf__calloc(&m, 1, sizeof(*x))) == NULL)
    return CF_ERR_NOMEM;
  x->mem = &m;
  rc = run_parser(x, xml, len);
  while (x->depth > 0)
    frame_clear(x, &x->st[--x->depth]);
  if (rc == CF_OK) {
    *root = x->root;
    if (name_size > 0) {
      strncpy(name, x->root_name, name_size - 1);
      name[name_size - 1] = '\0';
    }
  } else {
    json_decref(x->root);
  }
  cf__free(&m, x);
  return rc;
}

/* ---- replies ---------------------------------------------------------- */

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), t = strlen(tail);
  return n > t && strcmp(s + n - t, tail) == 0;
}

static const char *str_of(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : "";
}

/* The <Error> element: under <ErrorResponse>, or the root itself, or
 * under <Response><Errors> (the EC2 flavour of the query protocol). */
static json_t *find_error(json_t *doc, const char *root) {
  json_t *e;
  if (strcmp(root, "Error") == 0)
    return doc;
  if (strcmp(root, "ErrorResponse") == 0)
    return json_object_get(doc, "Error");
  e = json_object_get(doc, "Errors");
  return json_is_object(e) ? json_object_get(e, "Error") : NULL;
}

static json_t *find_result(json_t *doc) {
  const char *key;
  json_t *v;
  json_object_foreach(doc, key, v) {
    if (ends_with(key, "Result") && (json_is_object(v) || json_is_array(v)))
      return v;
  }
  return NULL;
}

int cf__aws_xml_reply_parse(const char *xml, size_t len, const cf_mem *mem,
                            cf__aws_xml_reply *out) {
  char root[CF__AWS_XML_MAX_NAME + 1];
  json_t *e;
  int rc;

  if (out == NULL)
    return CF_ERR_INVALID;
  memset(out, 0, sizeof(*out));
  out->code = out->message = out->type = "";
  rc = cf__aws_xml_to_json(xml, len, mem, &out->doc, root, sizeof(root));
  if (rc != CF_OK)
    return rc;
  e = find_error(out->doc, root);
  if (e != NULL || strcmp(root, "ErrorResponse") == 0) {
    out->is_error = 1;
    out->code = str_of(e, "Code");
    out->message = str_of(e, "Message");
    out->type = str_of(e, "Type");
    return CF_OK;
  }
  if (!ends_with(root, "Response"))
    return CF_ERR_PARSE;
  out->data = find_result(out->doc);
  if (out->data == NULL) {
    if ((out->empty_ = json_object()) == NULL)
      return CF_ERR_NOMEM;
    out->data = out->empty_;
  }
  return CF_OK;
}

void cf__aws_xml_reply_deinit(cf__aws_xml_reply *r) {
  if (r == NULL)
    return;
  json_decref(r->doc);
  json_decref(r->empty_);
  memset(r, 0, sizeof(*r));
  r->code = r->message = r->type = "";
}
