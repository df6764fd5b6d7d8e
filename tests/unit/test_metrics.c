/*
 * The metrics registry's text format: counters, histograms (cumulative
 * buckets, +Inf, _sum, _count), escaping, collectors, and the cap that
 * folds label values into "other".  The format as a whole is checked by
 * promtool in tests/integration/test_metrics.py.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "metrics.h"

static char *scrape(struct metrics *m)
{
    size_t len;
    char *text = metrics_format(m, &len);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

#define HAS(text, line) \
    ck_assert_msg(strstr(text, line "\n"), "missing '%s' in:\n%s", line, text)

START_TEST(test_counter)
{
    struct metrics *m = metrics_new();
    struct metric *f = metrics_counter(m, "x_total", "Things.", "a,b");
    const char *v1[] = { "p", "q" }, *v2[] = { "quote\"back\\slash\nnl", "" };
    char *text;

    metric_series(f, v1)->value += 3;
    metric_series(f, v1)->value += 1;
    metric_series(f, v2)->value = 0.5;
    ck_assert_ptr_eq(metric_find(f, v1), metric_series(f, v1));
    text = scrape(m);
    HAS(text, "# HELP x_total Things.");
    HAS(text, "# TYPE x_total counter");
    HAS(text, "x_total{a=\"p\",b=\"q\"} 4");
    HAS(text, "x_total{a=\"quote\\\"back\\\\slash\\nnl\",b=\"\"} 0.5");
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(test_histogram)
{
    static const double bounds[] = { 0.001, 0.01 };
    struct metrics *m = metrics_new();
    struct metric *f = metrics_histogram(m, "t_seconds", "Time.", "c",
                                         bounds, 2);
    const char *v[] = { "k" };
    struct metric_series *s = metric_series(f, v);
    char *text;

    metric_observe(f, s, 0.0005);
    metric_observe(f, s, 0.001);    /* on the bound: le is inclusive */
    metric_observe(f, s, 0.005);
    metric_observe(f, s, 3);
    text = scrape(m);
    HAS(text, "# TYPE t_seconds histogram");
    HAS(text, "t_seconds_bucket{c=\"k\",le=\"0.001\"} 2");
    HAS(text, "t_seconds_bucket{c=\"k\",le=\"0.01\"} 3");
    HAS(text, "t_seconds_bucket{c=\"k\",le=\"+Inf\"} 4");
    HAS(text, "t_seconds_sum{c=\"k\"} 3.0065");
    HAS(text, "t_seconds_count{c=\"k\"} 4");
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(test_cap_folds_into_other)
{
    struct metrics *m = metrics_new();
    struct metric *f = metrics_counter(m, "n_total", "N.", "name");
    char name[32], *text;
    const char *v[] = { name };
    size_t lines = 0;

    for (int i = 0; i < METRICS_MAX_SERIES + 500; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        metric_series(f, v)->value++;
    }
    text = scrape(m);
    for (char *p = text; (p = strchr(p, '\n')); p++) {
        lines++;
    }
    /* HELP, TYPE, the series under the cap, and one "other" for the rest
     * (the cap counts it too) */
    ck_assert_uint_eq(lines, 2 + METRICS_MAX_SERIES + 1);
    HAS(text, "n_total{name=\"other\"} 500");
    free(text);
    metrics_free(m);
}
END_TEST

static void collect(void *opaque, struct metrics_out *out)
{
    metrics_out_family(out, "g", "A gauge.", "gauge");
    metrics_out_sample(out, *(double *)opaque, "g", "l", "v", NULL);
    metrics_out_sample(out, 7, "g", NULL);
}

START_TEST(test_collector_and_values)
{
    struct metrics *m = metrics_new();
    struct metric *f = metrics_counter(m, "big_total", "Big.", NULL);
    double g = 0.1;
    char *text;

    metric_single(f)->value = 1e18;
    metrics_add_collector(m, collect, &g);
    text = scrape(m);
    HAS(text, "big_total 1e+18");
    HAS(text, "# TYPE g gauge");
    HAS(text, "g{l=\"v\"} 0.1");
    HAS(text, "g 7");
    /* the registry's families come before the collectors' */
    ck_assert(strstr(text, "big_total") < strstr(text, "# HELP g"));
    free(text);
    metrics_free(m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_counter);
    tcase_add_test(tc, test_histogram);
    tcase_add_test(tc, test_cap_folds_into_other);
    tcase_add_test(tc, test_collector_and_values);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(metrics_suite)
