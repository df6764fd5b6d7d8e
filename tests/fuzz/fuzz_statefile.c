/*
 * fuzz_statefile: the state file as a restarted proxy reads it
 * (proxy/statefile.c statefile_load), and what is done with what it
 * holds (router.c router_set_state: chain_load and ops_load), then the
 * first reconciliation, which compares the saved chains with QEMU's, and
 * what the router does once it is over (ops_resume: the operations of an
 * earlier life carry on or fail, their commands answered as refused).
 *
 * Input: the file's bytes, written to this process's scratch folder.
 * QEMU's answers to the reconciliation are fixed lines of the recorded
 * QEMU 7.2 transcript (a disk with a backing chain and a ready mirror).
 * Checked: a refused file comes with a problem and is moved aside; an
 * accepted one gives an object; loading any of it, reconciling, showing
 * and saving the operations and the model neither crash nor leak, and
 * what is saved is JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "cmd.h"
#include "fuzz_common.h"
#include "fuzz_json.h"
#include "fuzz_upstream.h"
#include "op.h"
#include "qjson.h"
#include "statefile.h"
#include "util.h"

/* QEMU's answers, by question (lines of tests/data/qemu-7.2-transcript). */
static struct {
    const char *command;
    int line;      /* 1-based line of the transcript */
    char *text;
} answers[] = {
    { "query-block", 6, NULL },
    { "query-named-block-nodes", 7, NULL },
    { "query-block-jobs", 13, NULL },
};
static const char graph_refused[] =
    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no graph\"}}";

static void load_answers(void)
{
    FILE *f = fopen(QMPROXY_SOURCE_DIR "/tests/data/qemu-7.2-transcript.qmp",
                    "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int no = 0;

    if (!f) {
        perror("transcript");
        abort();
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        no++;
        for (size_t i = 0; i < sizeof(answers) / sizeof(*answers); i++) {
            if (answers[i].line == no) {
                answers[i].text = xstrndup(line, (size_t)n - 2);  /* CRLF */
            }
        }
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < sizeof(answers) / sizeof(*answers); i++) {
        FUZZ_ASSERT(answers[i].text && answers[i].text[0] == '{');
    }
}

static void answer_all(void)
{
    /* a reconciliation may ask again; QEMU's answers do not change */
    for (int rounds = 0; rounds < 32 && fake_head(); rounds++) {
        const char *q = fake_head(), *a = graph_refused;
        for (size_t i = 0; i < sizeof(answers) / sizeof(*answers); i++) {
            if (!strcmp(q, answers[i].command)) {
                a = answers[i].text;
            }
        }
        fake_answer(a, strlen(a));
    }
    fake_lose_all();
}

static void on_seeded(void *opaque)
{
    (void)opaque;
    ops_resume();  /* as router.c does once the chains are known */
}

static const struct policy *no_policy(void *opaque)
{
    (void)opaque;
    return NULL;
}

static void save_state(void *opaque)
{
    (void)opaque;
}

/* One state file for the whole run, as the proxy has one for its life:
 * made per input, its writer thread was started and joined every time
 * (about a tenth of the CPU time). */
static struct statefile *sf;
static unsigned long refused_seen;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[256];

    (void)argc;
    (void)argv;
    load_answers();
    snprintf(path, sizeof(path), "%s/state", fuzz_dir());
    sf = statefile_new(path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("state", data, size);
    struct chain *c = chain_new(NULL, NULL, &fake_chain_hooks, NULL);
    struct cmd_env env = {
        .chain = c, .policy = no_policy, .save_state = save_state,
        .broadcast_event = fake_event,
    };
    char *problem = NULL;
    json_object *saved, *chain, *ops, *v;

    ops_init(&env);
    saved = statefile_load(sf, &problem);
    if (problem) {
        FUZZ_ASSERT(!saved && *problem);
        FUZZ_ASSERT(access(path, F_OK) != 0);  /* moved aside */
        free(problem);
        /* Nothing of a refused file reaches what follows: the
         * reconciliation of an empty model with QEMU's fixed answers and
         * its exports are the same work with the same result every time,
         * and were most of the time of an input that most mutations make.
         * They run for the first refused file of a run. */
        if (refused_seen++) {
            ops_free();
            chain_free(c);
            fuzz_dir_clean(false);
            return 0;
        }
    } else {
        FUZZ_ASSERT(json_object_is_type(saved, json_type_object));
    }
    /* as router_set_state does */
    if (saved && json_object_object_get_ex(saved, "chain", &chain)) {
        chain_load(c, chain);
        if (json_object_object_get_ex(saved, "operations", &ops)) {
            ops_load(ops);
        }
    }
    json_object_put(saved);

    /* the first reconciliation compares the saved model with QEMU's */
    chain_seed(c, on_seeded, NULL);
    answer_all();

    v = ops_to_json(NULL);
    fuzz_check_written(v);
    json_object_put(v);
    v = ops_save();
    fuzz_check_written(v);
    json_object_put(v);
    v = chain_save(c);
    fuzz_check_written(v);
    json_object_put(v);
    v = chain_to_json(c, NULL);
    fuzz_check_written(v);
    json_object_put(v);
    free(chain_to_xml(c, "disk0"));

    /* QEMU goes away: what is still asked is lost (which may make an
     * operation ask again, once) */
    ops_upstream_lost();
    chain_upstream_lost(c);
    for (int i = 0; i < 8 && fake_head(); i++) {
        fake_lose_all();
    }
    FUZZ_ASSERT(!fake_head());
    ops_free();
    chain_free(c);
    fuzz_dir_clean(false);
    return 0;
}
