/*
 * qmproxyctl: the operator's command line for qmproxy (and, for the
 * generic commands, for a plain QEMU monitor).  One file per command,
 * each with a ctl_entry, as tmux keeps cmd-*.c; this header is what they
 * share: the exit codes, the QMP connection, and output helpers.
 *
 * The program is synchronous: it talks to one monitor at a time with
 * blocking reads bounded by poll() deadlines.  It shares the daemon's
 * JSON code: QEMU's parser (jsonstream) for what the user types, the
 * line splitter (linestream) for what the monitor writes, and qjson to
 * write commands in QEMU's own form.
 */
#ifndef QMPROXY_CTL_H
#define QMPROXY_CTL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

/* Exit codes; stable, documented in the README ("qmproxyctl"). */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_QMP_ERROR = 1,   /* the monitor answered with an error */
    CTL_EXIT_USAGE = 2,       /* bad command line, or invalid input */
    CTL_EXIT_CONNECTION = 3,  /* cannot connect, or the monitor went away */
    CTL_EXIT_TIMEOUT = 4,     /* --timeout passed */
    CTL_EXIT_OP_FAILED = 5,   /* the operation ended failed or aborted */
    CTL_EXIT_INTERRUPTED = 6, /* Ctrl-C: the operation is left running */
    CTL_EXIT_ABORTED = 7,     /* Ctrl-C with --abort-on-interrupt: aborted */
};

/* Options every command takes. */
struct ctl_options {
    const char *socket;   /* -s: the monitor (unix:PATH, PATH, tcp:H:P) */
    bool json;            /* --json: machine-readable output on stdout */
    double timeout;       /* --timeout S; <= 0: the default for the command */
    bool color;           /* stdout is a terminal and NO_COLOR is unset */
};

extern struct ctl_options ctl_opt;
/* Set by SIGINT/SIGTERM while a command waits. */
extern volatile sig_atomic_t ctl_interrupted;

/* ---- the QMP connection (client.c) ---------------------------------- */

struct ctl_client;

/*
 * Connect to ctl_opt.socket, read the greeting, negotiate.  With
 * want_extras, also ask for the proxy's events (qmproxy-capabilities;
 * against a plain QEMU that fails harmlessly and ctl_client_is_proxy()
 * says false).  NULL with the reason printed and *exit_code set.
 */
struct ctl_client *ctl_connect(bool want_extras, int *exit_code);
void ctl_client_free(struct ctl_client *c);
/* A stream of JSON lines without QMP (the --tap socket); read with
 * ctl_read.  NULL with the reason printed and *exit_code set. */
struct ctl_client *ctl_open_lines(const char *spec, int *exit_code);
bool ctl_client_is_proxy(const struct ctl_client *c);
json_object *ctl_client_greeting(struct ctl_client *c);
int ctl_client_fd(const struct ctl_client *c);

/* A deadline in monotonic microseconds from seconds (<= 0: none = 0). */
uint64_t ctl_deadline(double seconds);

/* Send a command: name and args (args taken; NULL: none). */
bool ctl_send(struct ctl_client *c, const char *name, json_object *args);
/* Send text as it is (one JSON request). */
bool ctl_send_raw(struct ctl_client *c, const char *text, size_t len);

/*
 * Read the next message, event or reply (owned).  Returns CTL_EXIT_OK,
 * CTL_EXIT_CONNECTION (closed; reason printed unless quiet),
 * CTL_EXIT_TIMEOUT (deadline passed; 0 means none) or
 * CTL_EXIT_INTERRUPTED (a signal set ctl_interrupted).
 */
int ctl_read(struct ctl_client *c, uint64_t deadline, json_object **msg);

/* Called for each event met while waiting for a reply. */
typedef void (*ctl_event_fn)(void *opaque, json_object *event);

/*
 * Wait for the reply to the last command sent (QMP answers in order),
 * handing each event met to on_event (NULL: kept in the client's list).
 * *reply is the whole reply, owned.
 */
int ctl_wait_reply(struct ctl_client *c, uint64_t deadline,
                   ctl_event_fn on_event, void *opaque, json_object **reply);

/*
 * Run a command and get its return value (owned).  On an error reply the
 * error is printed (class and desc, on stderr) and CTL_EXIT_QMP_ERROR is
 * returned; *ret is then NULL.  Timeout: ctl_opt.timeout, else 30 s.
 */
int ctl_call(struct ctl_client *c, const char *name, json_object *args,
             json_object **ret);
/* Same, without printing an error: *reply is the whole reply. */
int ctl_call_quiet(struct ctl_client *c, const char *name, json_object *args,
                   json_object **reply);

/* ---- output (output.c) --------------------------------------------- */

/* A string member for printing: "" when absent or not a string. */
const char *ctl_str(json_object *o, const char *key);

/* "qmproxyctl: CLASS: desc" on stderr for an error reply. */
void ctl_print_error_reply(json_object *reply);
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A value on stdout: one line of JSON (--json), else indented. */
void ctl_print_json(json_object *value, bool pretty);
/* 64 MiB, 1.5 GiB... into buf. */
const char *ctl_human_size(char *buf, size_t size, double bytes);
const char *ctl_human_duration(char *buf, size_t size, double seconds);
/* An ANSI colour sequence, or "" when not colouring. */
const char *ctl_color(const char *code);

/* Parse text as one JSON value with QEMU's parser (single quotes and all);
 * NULL with *error (owned) when it is not exactly one value. */
json_object *ctl_parse_json(const char *text, char **error);
/* Read a whole file (owned), NULL with errno. */
char *ctl_read_file(const char *path);

/* ---- waiting for an operation (progress.c) ------------------------- */

struct ctl_op_wait {
    const char *name;        /* the operation, when known beforehand */
    /* the command makes an operation of this type (its name, if not
     * given, is that of the first to start); NULL: it acts on one */
    const char *type;
    bool show_progress;      /* bars (terminal) or lines */
    bool abort_on_interrupt;
};

/*
 * The command (already sent on c) answers when its operation reaches its
 * resting point; meanwhile show progress from a second connection.
 * Returns the exit code; prints the outcome.
 */
int ctl_wait_operation(struct ctl_client *c, const struct ctl_op_wait *w);
/*
 * Without --wait: the command is sent; return once the operation exists
 * (printing its name) or the command is refused.
 */
int ctl_start_operation(struct ctl_client *c, const struct ctl_op_wait *w);

/*
 * Connect (asking for the proxy's events), send command with args
 * (taken), then ctl_wait_operation (wait) or ctl_start_operation.
 */
int ctl_run_operation(const char *command, json_object *args,
                      const struct ctl_op_wait *w, bool wait);
/* 64M, 1.5G, 1048576, 10MiB -> bytes; false when it is not a size. */
bool ctl_parse_size(const char *s, int64_t *out);
/* --speed B: the "speed" member of obj, in bytes per second; false (said
 * on stderr) when B is not a size. */
bool ctl_add_speed(json_object *obj, const char *arg);

/* ---- exec's pieces, for other commands (cmd-exec.c) ----------------- */

/* qmp-shell's KEY=VALUE arguments as an object; NULL after printing why. */
json_object *ctl_simple_args(int argc, char **argv);
/* Print a reply (return on stdout, error on stderr); the exit code. */
int ctl_show_reply(json_object *reply);

/* ---- the traffic tap (tapstream.c) --------------------------------- */

struct ctl_tap;
struct ctl_entry;

/* One line of the tap, with the command a reply answers. */
struct ctl_tap_msg {
    json_object *line;        /* owned: the whole line */
    const char *time;         /* borrowed from line */
    int64_t t_us;             /* time, microseconds since the epoch */
    bool in;                  /* from a client */
    long client;              /* -1: none (an event to everyone) */
    const char *from, *kind;  /* "command", "reply", "event", "greeting", "note" */
    json_object *msg;         /* borrowed; NULL if not an object */
    char *command;            /* owned: the command (of a reply too) */
    const char *event;        /* an event's name */
    int64_t latency_us;       /* a reply's; < 0: unknown */
    const char *error_class, *error_desc;  /* an error reply's */
};

/* --tap, else $QMPROXY_TAP, else -s. */
const char *ctl_tap_socket(void);
/* The options every tap reader (watch, top) takes, from its getopt loop:
 * --tap SOCKET ('t') and --count N ('n', a whole number above 0).  False
 * for any other option or a bad count. */
bool ctl_tap_option(int opt, const char **tap, long *count);
/* Once a tap reader's options are read: no argument may be left (else
 * its usage), then the tap opened.  NULL with *exit_code set. */
struct ctl_tap *ctl_tap_open(const struct ctl_entry *e, int argc,
                             const char *spec, int *exit_code);
void ctl_tap_close(struct ctl_tap *t);
/* As ctl_read; *m is cleared with ctl_tap_msg_clear. */
int ctl_tap_next(struct ctl_tap *t, uint64_t deadline, struct ctl_tap_msg *m);
void ctl_tap_msg_clear(struct ctl_tap_msg *m);

/* ---- commands ------------------------------------------------------- */

struct ctl_entry {
    const char *name;
    const char *usage;    /* arguments, after the name */
    const char *summary;  /* one line */
    bool no_monitor;      /* does not talk to a QMP monitor (-s optional) */
    /* argv[0] is the command's name; returns the exit code */
    int (*exec)(int argc, char **argv);
};

extern const struct ctl_entry ctl_exec_entry, ctl_chain_entry,
    ctl_snapshot_mirror_entry, ctl_snapshot_mirror_xml_entry,
    ctl_block_copy_entry, ctl_reopen_entry, ctl_snapshot_reopen_entry,
    ctl_abort_entry, ctl_ops_entry, ctl_policy_entry, ctl_watch_entry,
    ctl_top_entry, ctl_shell_entry, ctl_migrate_entry;

extern const struct ctl_entry *const ctl_table[];
const struct ctl_entry *ctl_find(const char *name);
/* "usage: qmproxyctl NAME USAGE" on stderr; returns CTL_EXIT_USAGE. */
int ctl_usage(const struct ctl_entry *e);

#endif
