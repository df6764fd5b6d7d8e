/*
 * fuzz_qmp: QEMU's request checks (qmp_check_request) on whatever a client
 * sends, and the replies the proxy writes in QEMU's form (qmp_error_reply,
 * qmp_return_reply).
 *
 * Input: one byte of flags (allow exec-oob), then a client's stream, read
 * by jsonstream as the session reads it.  For every text: the checks run;
 * an accepted request has a command and arguments that are an object; the
 * error reply (with QEMU's desc, or a desc made of the text's raw bytes)
 * and a return reply (returning the text's value) must be one line ending
 * in CRLF and valid JSON (json-c's strict tokener) whose id is the
 * request's, unless the id or the returned value holds a non-finite
 * double, which QEMU writes as inf/nan (not JSON) and so does the proxy.
 *
 * Only the first QMP_TEXTS_CHECKED texts of an input are checked: the
 * checks of one text do not depend on the texts before it, so a mutated
 * input of fifty stray bytes (fifty error texts) found nothing fifty
 * texts could not, at fifty times the cost.  Reading a stream of any
 * length is fuzz_jsonstream's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_json.h"
#include "jsonstream.h"
#include "qmp.h"
#include "util.h"

#define QMP_TEXTS_CHECKED 2

static bool allow_oob;
static int texts_seen;

static void check_reply(const char *reply, size_t len,
                        const struct qmp_request *req, bool non_finite)
{
    json_object *v, *id;

    FUZZ_ASSERT(reply && len >= 2 && strlen(reply) == len);
    FUZZ_ASSERT(reply[len - 2] == '\r' && reply[len - 1] == '\n');
    FUZZ_ASSERT(!memchr(reply, '\n', len - 1));
    FUZZ_ASSERT(!memchr(reply, '\r', len - 2));
    if (non_finite || (req->has_id && fuzz_json_non_finite(req->id))) {
        return;
    }
    v = fuzz_strict_parse(reply, len - 2);
    if (!v) {
        fprintf(stderr, "not JSON: %s", reply);
        FUZZ_ASSERT(!"a reply of the proxy's is not JSON");
    }
    FUZZ_ASSERT(json_object_is_type(v, json_type_object));
    json_object_put(v);
    /* the id as a client reads it back: QEMU's rules (modified UTF-8:
     * an id "\u0000" is \xC0\x80 inside, as in QEMU) */
    struct fuzz_one_text back;
    fuzz_read_one(reply, len, &back);
    FUZZ_ASSERT(back.texts == 1 && back.ok);
    FUZZ_ASSERT(json_object_object_get_ex(back.value, "id", &id)
                == req->has_id);
    if (req->has_id) {
        FUZZ_ASSERT(fuzz_json_equal(id, req->id, true));
    }
    fuzz_one_text_release(&back);
}

static bool on_text(void *opaque, const struct js_text *t)
{
    struct qmp_request req;
    char *error, *desc, *reply;
    size_t len;

    (void)opaque;
    error = qmp_check_request(t->value, t->has_value, allow_oob, &req);
    if (!error) {
        FUZZ_ASSERT(req.command != NULL);
        FUZZ_ASSERT(!req.args || json_object_is_type(req.args,
                                                     json_type_object));
        FUZZ_ASSERT(allow_oob || !req.oob);
    } else {
        FUZZ_ASSERT(!strncmp(error, "QMP input ", 10));
    }

    reply = qmp_error_reply(QMP_GENERIC_ERROR, error ? error : "fine", &req,
                            &len);
    check_reply(reply, len, &req, false);
    free(reply);

    /* a desc of any bytes (a client's text quoted back) */
    desc = xstrndup(t->raw, t->len);
    reply = qmp_error_reply(QMP_COMMAND_NOT_FOUND, desc, &req, &len);
    check_reply(reply, len, &req, false);
    free(reply);
    free(desc);

    reply = qmp_return_reply(t->has_value ? t->value : NULL, &req, &len);
    check_reply(reply, len, &req,
                t->has_value && fuzz_json_non_finite(t->value));
    free(reply);

    /* the classifier QEMU's side uses, on a client's text */
    (void)qmp_classify(t);
    free(error);
    return ++texts_seen < QMP_TEXTS_CHECKED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    struct jsonstream *js;

    allow_oob = fuzz_u8(&in) & 1;
    texts_seen = 0;
    js = jsonstream_new(true, 0, on_text, NULL);
    if (jsonstream_feed(js, (const char *)in.p, in.n)) {
        jsonstream_feed(js, "\n", 1);
    }
    jsonstream_free(js);
    return 0;
}
