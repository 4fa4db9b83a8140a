/*
 * Internal: AWS query-protocol (SNS) XML responses read into jansson
 * values with expat.
 *
 * Mapping, per element:
 *  - an element with child elements becomes an object keyed by child
 *    name (a repeated name keeps the last one);
 *  - children named "member" are collected into an array, in order; an
 *    element holding only members becomes that array (when it also has
 *    other children, the array goes under the key "member");
 *  - children named "entry" holding <key>K</key><value>V</value> (the
 *    Attributes maps) become the pair K: V of the parent object;
 *  - an element without child elements becomes a string with its text,
 *    unchanged (no trimming). So an empty list, <Subscriptions/> or
 *    <Failed></Failed>, reads as "": callers treat a non-array as empty;
 *  - attributes (xmlns) are ignored.
 *
 * Documents with a DOCTYPE or entity declarations are refused (no entity
 * expansion at all), nesting is limited to CF__AWS_XML_MAX_DEPTH.
 */
#ifndef CF_AWS_XML_H
#define CF_AWS_XML_H

#include <jansson.h>

#include <chatfanout/cf_common.h>

#define CF__AWS_XML_MAX_DEPTH 32
/* Longest element name kept (longer ones are refused). */
#define CF__AWS_XML_MAX_NAME 127

/*
 * Converts the document xml (len bytes, need not be NUL-terminated) and
 * stores its root element's value in *root (a new reference) and the
 * root's name in name (NUL-terminated, may be NULL when name_size is 0).
 * mem serves the parser's scratch state (NULL: libc); expat and jansson
 * use their own allocators. On error *root is NULL.
 * CF_OK, CF_ERR_INVALID (NULL argument), CF_ERR_PARSE (not well-formed,
 * DOCTYPE, too deep, name too long, empty input), CF_ERR_NOMEM.
 */
int cf__aws_xml_to_json(const char *xml, size_t len, const cf_mem *mem,
                        json_t **root, char *name, size_t name_size);

/* One SNS reply, read by cf__aws_xml_reply_parse(). */
typedef struct cf__aws_xml_reply {
  json_t *doc;         /* the converted root element (owned) */
  int is_error;        /* root was <ErrorResponse> (or <Error>) */
  json_t *data;        /* success: the <XResult> value, or an empty
                          object; error: NULL. Owned by the reply,
                          valid until cf__aws_xml_reply_deinit() */
  const char *code;    /* error: <Code> text, else ""; borrowed */
  const char *message; /* error: <Message> text, else "" */
  const char *type;    /* error: <Type> ("Sender"/"Receiver"), else "" */
  json_t *empty_;      /* internal: the empty object behind data */
} cf__aws_xml_reply;

/*
 * Reads an SNS response: <XResponse><XResult>...</XResult>...
 * </XResponse> gives data = the converted XResult (an empty object when
 * it is absent or has no child elements); <ErrorResponse><Error>
 * <Type/><Code/><Message/></Error></ErrorResponse> gives is_error and
 * the strings. Release with cf__aws_xml_reply_deinit() (also after an
 * error). CF_OK, CF_ERR_INVALID, CF_ERR_PARSE (malformed, or a root that
 * is neither), CF_ERR_NOMEM.
 */
int cf__aws_xml_reply_parse(const char *xml, size_t len, const cf_mem *mem,
                            cf__aws_xml_reply *out);
void cf__aws_xml_reply_deinit(cf__aws_xml_reply *r);

#endif /* CF_AWS_XML_H */
