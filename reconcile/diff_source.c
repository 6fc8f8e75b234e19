/* diff_source: store against source services, key by key (diff_source.h). */
#include "diff_source.h"
#include "buf.h"
#include "compare.h"
#include "fetch.h"
#include "frag.h"
#include "log.h"
#include "render.h"
#include "rm_err.h"
#include "rm_time.h"
#include "source.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DS_URL_MAX 2048
#define DS_MAX_PAGES 1000 /* a source that pages forever is a broken source */

typedef struct ds_run ds_run_t;
typedef struct ds_job ds_job_t;

/* One section of one key being fetched. */
typedef struct ds_part {
    ds_job_t *dp_job;
    int dp_section;
    char dp_base[DS_URL_MAX];
    char dp_url[DS_URL_MAX];  /* the first page's URL, for the report */
    json_t *dp_source;        /* single: mapped record or NULL; list: mapped items */
    int dp_pages;
    bool dp_failed;
    char dp_reason[160];
    int64_t dp_read_ms;
} ds_part_t;

struct ds_job {
    ds_run_t *dj_run;
    char *dj_key;
    json_t *dj_doc;           /* rendered document, or NULL when the store has no such key */
    size_t dj_pending;
    size_t dj_part_count;
    ds_part_t dj_parts[FRAG_MAX_SLOTS];
};

struct ds_run {
    const diff_source_opts_t *dr_opts;
    fetch_t *dr_fetch;
    MDB_txn *dr_txn;          /* a read txn, reset between keys */
    buf_t dr_buf;
    char **dr_keys;
    size_t dr_key_count;
    size_t dr_next_key;
    size_t dr_in_flight;
    size_t dr_max_in_flight;
    size_t dr_done;
    size_t dr_skipped;
    int dr_error;             /* first fatal error */
    char dr_errstr[256];
    int64_t dr_progress_ms;
};

/* Appends a copy of key (len bytes) to a growing array. Returns 0 or RM_ENOMEM. */
static int keys_push(char ***keys, size_t *count, size_t *cap, const char *key, size_t len)
{
    if (*count == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 1024;
        char **grown = realloc(*keys, grown_cap * sizeof(**keys));
        if (!grown)
            return RM_ENOMEM;
        *keys = grown;
        *cap = grown_cap;
    }
    if (!((*keys)[*count] = strndup(key, len)))
        return RM_ENOMEM;
    (*count)++;
    return 0;
}

static void keys_free(char **keys, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(keys[i]);
    free(keys);
}

int diff_store_keys(store_t *store, char ***ret_keys, size_t *ret_count)
{
    MDB_txn *txn;
    int rc = store_read_begin(store, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(store, STORE_DB_DOC), &cur));
    char **keys = NULL;
    size_t count = 0, cap = 0;
    char seek[VIEW_KEY_MAX_BYTES + 2];
    MDB_val k = {0, NULL}, v;
    int op = MDB_FIRST;
    while (!rc) {
        int mrc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        if (mrc == MDB_NOTFOUND)
            break;
        if (mrc) {
            rc = rm_err_from_mdb(mrc);
            break;
        }
        const char *nul = memchr(k.mv_data, '\0', k.mv_size);
        size_t len = nul ? (size_t)(nul - (const char *)k.mv_data) : k.mv_size;
        if (len == 0 || len > VIEW_KEY_MAX_BYTES) {
            rc = RM_ESTORE;
            break;
        }
        if ((rc = keys_push(&keys, &count, &cap, k.mv_data, len)))
            break;
        /* Skip the rest of this key: every doc key of it is "key \0 ...", and
         * "key \x01" sorts after all of them and before the next key. */
        memcpy(seek, k.mv_data, len);
        seek[len] = '\x01';
        k.mv_data = seek;
        k.mv_size = len + 1;
        op = MDB_SET_RANGE;
    }
    if (cur)
        mdb_cursor_close(cur);
    store_read_end(txn);
    if (rc) {
        keys_free(keys, count);
        return rc;
    }
    *ret_keys = keys;
    *ret_count = count;
    return 0;
}

static int read_keys_file(const char *path, char ***ret_keys, size_t *ret_count, char *errstr,
                          size_t errlen)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        snprintf(errstr, errlen, "%s: cannot open: %s", path, strerror(errno));
        return RM_EIO;
    }
    char **keys = NULL;
    size_t count = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &line_cap, in)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        if (n > VIEW_KEY_MAX_BYTES) {
            snprintf(errstr, errlen, "%s:%zu: key longer than %d bytes", path, lineno,
                     VIEW_KEY_MAX_BYTES);
            rc = RM_EINVAL;
            break;
        }
        if ((rc = keys_push(&keys, &count, &cap, line, (size_t)n)))
            break;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    if (rc) {
        keys_free(keys, count);
        return rc;
    }
    *ret_keys = keys;
    *ret_count = count;
    return 0;
}

/* Keeps a uniform sample of n keys (reservoir sampling, seeded: reproducible). */
static void sample_keys(char **keys, size_t *count, size_t n, uint64_t seed)
{
    if (n == 0 || n >= *count)
        return;
    uint64_t s = seed ? seed : 0x9e3779b97f4a7c15ULL;
    for (size_t i = n; i < *count; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t j = (size_t)(s % (i + 1));
        if (j < n) {
            char *t = keys[j];
            keys[j] = keys[i];
            keys[i] = t;
        }
    }
    for (size_t i = n; i < *count; i++)
        free(keys[i]);
    *count = n;
}

static void fail(ds_run_t *run, int rc, const char *what)
{
    if (!run->dr_error) {
        run->dr_error = rc;
        snprintf(run->dr_errstr, sizeof(run->dr_errstr), "%s: %s", what, rm_strerror(rc));
    }
}

static int publish_fix(void *ctx, const char *key, const char *section, compare_op_t op,
                       const char *item, json_t *fields, const char *url, const char *reason)
{
    ds_part_t *part = ctx;
    repair_t *repair = part->dp_job->dj_run->dr_opts->dso_repair;
    int rc = repair_publish(repair, key, section, op, item, fields, url, reason, part->dp_read_ms);
    if (!rc)
        report_repaired(part->dp_job->dj_run->dr_opts->dso_report);
    return rc;
}

static int64_t section_event_ms(json_t *doc, const char *section)
{
    json_t *at =
        json_object_get(json_object_get(json_object_get(doc, "freshness"), section), "event_time");
    return json_is_integer(at) ? json_integer_value(at) : 0;
}

static void start_next_keys(ds_run_t *run);

static void job_finish(ds_job_t *job)
{
    ds_run_t *run = job->dj_run;
    const diff_source_opts_t *opts = run->dr_opts;
    const view_t *view = opts->dso_app->ap_view;
    report_checked(opts->dso_report, NULL);
    for (size_t i = 0; i < job->dj_part_count && !run->dr_error; i++) {
        ds_part_t *part = &job->dj_parts[i];
        const char *name = view->v_sections[part->dp_section].vs_name;
        report_checked(opts->dso_report, name);
        int rc;
        if (part->dp_failed) {
            report_finding_t f = {.rf_class = REPORT_UNKNOWN,
                                  .rf_key = job->dj_key,
                                  .rf_section = name,
                                  .rf_reason = part->dp_reason,
                                  .rf_url = part->dp_url,
                                  .rf_store_event_ms = section_event_ms(job->dj_doc, name)};
            rc = report_add(opts->dso_report, &f);
        } else {
            compare_ctx_t cc = {.cc_view = view,
                                .cc_report = opts->dso_report,
                                .cc_now_ms = part->dp_read_ms,
                                .cc_budget_ms =
                                    cfg_int(opts->dso_app->ap_cfg, "reconcile.freshness_budget_ms"),
                                .cc_fix = opts->dso_repair ? publish_fix : NULL,
                                .cc_fix_ctx = part};
            json_t *store = json_object_get(json_object_get(job->dj_doc, "sections"), name);
            rc = compare_section(&cc, job->dj_key, part->dp_section, store, part->dp_source,
                                 section_event_ms(job->dj_doc, name), part->dp_url);
        }
        if (rc)
            fail(run, rc, "cannot record a finding");
    }
    for (size_t i = 0; i < job->dj_part_count; i++)
        json_decref(job->dj_parts[i].dp_source);
    json_decref(job->dj_doc);
    free(job->dj_key);
    free(job);
    run->dr_in_flight--;
    run->dr_done++;
    start_next_keys(run);
}

static void part_done(ds_part_t *part)
{
    ds_job_t *job = part->dp_job;
    if (--job->dj_pending == 0)
        job_finish(job);
}

static void on_answer(void *ctx, const char *url, const fetch_result_t *res);

static void part_fetch(ds_part_t *part, const char *url)
{
    int rc = fetch_get(part->dp_job->dj_run->dr_fetch, url, on_answer, part);
    if (rc) {
        fail(part->dp_job->dj_run, rc, "cannot queue a request");
        part->dp_failed = true;
        snprintf(part->dp_reason, sizeof(part->dp_reason), "cannot queue the request");
        part_done(part);
    }
}

/* The reason is cut to fit: it is a short label, the log has the detail. */
static void part_unknown(ds_part_t *part, const char *prefix, const char *detail)
{
    part->dp_failed = true;
    size_t n = strlen(prefix);
    if (n >= sizeof(part->dp_reason))
        n = sizeof(part->dp_reason) - 1;
    memcpy(part->dp_reason, prefix, n);
    size_t room = sizeof(part->dp_reason) - 1 - n;
    size_t d = strlen(detail);
    memcpy(part->dp_reason + n, detail, d < room ? d : room);
    part->dp_reason[n + (d < room ? d : room)] = '\0';
}

static void on_answer(void *ctx, const char *url, const fetch_result_t *res)
{
    ds_part_t *part = ctx;
    ds_run_t *run = part->dp_job->dj_run;
    const view_t *view = run->dr_opts->dso_app->ap_view;
    const view_source_t *src = view_source_for(view, part->dp_section);
    bool list = view->v_sections[part->dp_section].vs_kind == VIEW_LIST;
    part->dp_read_ms = res->fr_done_ms;
    part->dp_pages++;
    if (res->fr_status == 404) {
        /* The source has no such record: a single section is absent, a list is empty
         * (pages already read stay: a 404 after page 1 is a broken source). */
        if (part->dp_pages > 1)
            part_unknown(part, "", "404 on a later page");
        part_done(part);
        return;
    }
    if (res->fr_status < 200 || res->fr_status >= 300) {
        char what[160];
        if (res->fr_status)
            snprintf(what, sizeof(what), "http %ld after %d attempts", res->fr_status,
                     res->fr_attempts);
        else
            snprintf(what, sizeof(what), "%s after %d attempts",
                     res->fr_error ? res->fr_error : "no answer", res->fr_attempts);
        part_unknown(part, "", what);
        part_done(part);
        return;
    }
    json_error_t jerr;
    json_t *answer = json_loadb(res->fr_body, res->fr_len, 0, &jerr);
    if (!answer) {
        part_unknown(part, "unreadable answer: ", jerr.text);
        part_done(part);
        return;
    }
    if (!list) {
        part->dp_source = json_is_object(answer) ? source_map_record(view, src, answer) : NULL;
        if (!part->dp_source)
            part_unknown(part, "", "answer is not a JSON object");
        json_decref(answer);
        part_done(part);
        return;
    }
    json_t *items;
    long next_page;
    const char *next_url;
    if (source_page(src, answer, &items, &next_page, &next_url)) {
        part_unknown(part,
                     "answer lacks its items array or has a bad next page: ", src->vsrc_items);
        json_decref(answer);
        part_done(part);
        return;
    }
    if (!part->dp_source)
        part->dp_source = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (json_is_object(item))
            json_array_append_new(part->dp_source, source_map_record(view, src, item));
    }
    char next[DS_URL_MAX];
    next[0] = '\0';
    if (next_url)
        snprintf(next, sizeof(next), "%s%s", next_url[0] == '/' ? part->dp_base : "", next_url);
    else if (next_page &&
             source_url(src, part->dp_base, part->dp_job->dj_key, next_page, next, sizeof(next)))
        next[0] = '\0';
    json_decref(answer);
    if (next[0] && part->dp_pages >= DS_MAX_PAGES) {
        part_unknown(part, "", "more than 1000 pages");
    } else if (next[0] && strcmp(next, url) != 0) {
        part_fetch(part, next);
        return;
    }
    part_done(part);
}

static void progress(ds_run_t *run, bool last)
{
    if (!run->dr_opts->dso_progress)
        return;
    int64_t now = rm_mono_ms();
    if (!last && now - run->dr_progress_ms < 200)
        return;
    run->dr_progress_ms = now;
    report_t *r = run->dr_opts->dso_report;
    fprintf(stderr, "\r\033[Kkeys %zu/%zu  drift %llu  pending %llu  unknown %llu%s", run->dr_done,
            run->dr_key_count, (unsigned long long)report_count(r, REPORT_DRIFT),
            (unsigned long long)report_count(r, REPORT_PENDING),
            (unsigned long long)report_count(r, REPORT_UNKNOWN), last ? "\n" : "");
}

/* Renders key from the store into a fresh job; NULL when the key is filtered out. */
static ds_job_t *job_new(ds_run_t *run, char *key)
{
    const diff_source_opts_t *opts = run->dr_opts;
    const view_t *view = opts->dso_app->ap_view;
    buf_reset(&run->dr_buf);
    int rc = run->dr_txn ? store_read_renew(opts->dso_store, &run->dr_txn)
                         : store_read_begin(opts->dso_store, &run->dr_txn);
    if (!rc)
        rc = render_view(view, opts->dso_store, run->dr_txn, key, strlen(key), &run->dr_buf);
    store_read_reset(run->dr_txn);
    json_t *doc = NULL;
    if (rc == 0) {
        json_error_t jerr;
        doc = json_loadb(run->dr_buf.b_data, run->dr_buf.b_len, 0, &jerr);
        if (!doc)
            rc = RM_ESTORE;
    } else if (rc == RM_ENOTFOUND || rc == RM_EINVAL) {
        rc = 0; /* the store has no such key: everything the source has is missing */
    }
    if (rc) {
        fail(run, rc, "cannot read the store");
        return NULL;
    }
    if (opts->dso_since_ms > 0) {
        int64_t newest = 0;
        for (size_t s = 0; s < view->v_section_count; s++) {
            int64_t at = section_event_ms(doc, view->v_sections[s].vs_name);
            newest = at > newest ? at : newest;
        }
        if (newest < opts->dso_since_ms) {
            json_decref(doc);
            run->dr_skipped++;
            return NULL;
        }
    }
    ds_job_t *job = calloc(1, sizeof(*job));
    if (!job) {
        json_decref(doc);
        fail(run, RM_ENOMEM, "out of memory");
        return NULL;
    }
    job->dj_run = run;
    job->dj_key = key;
    job->dj_doc = doc;
    return job;
}

static void job_start(ds_run_t *run, ds_job_t *job)
{
    const diff_source_opts_t *opts = run->dr_opts;
    const view_t *view = opts->dso_app->ap_view;
    const char *urls = cfg_str(opts->dso_app->ap_cfg, "reconcile.source_urls");
    for (size_t i = 0; i < view->v_source_count; i++) {
        const view_source_t *src = &view->v_sources[i];
        ds_part_t *part = &job->dj_parts[job->dj_part_count++];
        part->dp_job = job;
        part->dp_section = src->vsrc_section;
        /* main.c checked every service has a base URL before the run started */
        if (remote_base_url(urls, src->vsrc_service, part->dp_base, sizeof(part->dp_base)) ||
            source_url(src, part->dp_base, job->dj_key, 1, part->dp_url, sizeof(part->dp_url)))
            part_unknown(part, "", "no usable URL for this key");
    }
    job->dj_pending = job->dj_part_count;
    run->dr_in_flight++;
    for (size_t i = 0; i < job->dj_part_count; i++) {
        ds_part_t *part = &job->dj_parts[i];
        if (part->dp_failed)
            part_done(part);
        else
            part_fetch(part, part->dp_url);
    }
}

static void start_next_keys(ds_run_t *run)
{
    progress(run, false);
    while (!run->dr_error && run->dr_in_flight < run->dr_max_in_flight &&
           run->dr_next_key < run->dr_key_count) {
        char *key = run->dr_keys[run->dr_next_key];
        run->dr_keys[run->dr_next_key++] = NULL; /* the job owns it now */
        ds_job_t *job = job_new(run, key);
        if (!job) {
            free(key);
            run->dr_done++;
            continue;
        }
        job_start(run, job);
    }
}

int diff_source_run(const diff_source_opts_t *opts, char *errstr, size_t errlen)
{
    const app_t *app = opts->dso_app;
    const view_t *view = app->ap_view;
    const char *urls = cfg_str(app->ap_cfg, "reconcile.source_urls");
    if (view->v_source_count == 0) {
        snprintf(errstr, errlen, "%s: the view declares no sources", view->v_path);
        return RM_ECONFIG;
    }
    for (size_t i = 0; i < view->v_source_count; i++) {
        char base[DS_URL_MAX];
        int rc = remote_base_url(urls, view->v_sources[i].vsrc_service, base, sizeof(base));
        if (rc) {
            snprintf(errstr, errlen,
                     "reconcile.source_urls: %s for service '%s' (section %s); expected "
                     "name=URL,... e.g. %s=http://host:port",
                     rc == RM_ENOTFOUND ? "no URL" : "malformed", view->v_sources[i].vsrc_service,
                     view->v_sections[view->v_sources[i].vsrc_section].vs_name,
                     view->v_sources[i].vsrc_service);
            return RM_ECONFIG;
        }
    }
    ds_run_t run = {.dr_opts = opts};
    int rc =
        opts->dso_keys_file
            ? read_keys_file(opts->dso_keys_file, &run.dr_keys, &run.dr_key_count, errstr, errlen)
            : diff_store_keys(opts->dso_store, &run.dr_keys, &run.dr_key_count);
    if (rc) {
        if (!opts->dso_keys_file)
            snprintf(errstr, errlen, "cannot list the store's keys: %s", rm_strerror(rc));
        return rc;
    }
    sample_keys(run.dr_keys, &run.dr_key_count, opts->dso_sample, opts->dso_seed);
    fetch_opts_t fo = {
        .fo_concurrency = (int)cfg_int(app->ap_cfg, "reconcile.concurrency"),
        .fo_rate_per_s = (int)cfg_int(app->ap_cfg, "reconcile.rate_limit"),
        .fo_timeout_ms = (int)cfg_int(app->ap_cfg, "reconcile.timeout_ms"),
        .fo_retries = (int)cfg_int(app->ap_cfg, "reconcile.retries"),
    };
    run.dr_fetch = fetch_new(&fo);
    buf_init(&run.dr_buf);
    run.dr_max_in_flight = (size_t)fo.fo_concurrency * 2;
    if (!run.dr_fetch) {
        snprintf(errstr, errlen, "cannot initialise libcurl");
        rc = RM_ENOMEM;
    } else {
        log_info("diff-source started", LOG_I("keys", run.dr_key_count),
                 LOG_I("sections", view->v_source_count), LOG_I("concurrency", fo.fo_concurrency),
                 LOG_I("rate_limit", fo.fo_rate_per_s));
        start_next_keys(&run);
        rc = fetch_run(run.dr_fetch);
        if (rc)
            snprintf(errstr, errlen, "HTTP client failed: %s", rm_strerror(rc));
        progress(&run, true);
        fetch_stats_t st = fetch_stats(run.dr_fetch);
        log_info("diff-source finished", LOG_I("keys", run.dr_done - run.dr_skipped),
                 LOG_I("skipped_by_since", run.dr_skipped), LOG_I("requests", st.fs_requests),
                 LOG_I("retries", st.fs_retries), LOG_I("failed_requests", st.fs_failed));
    }
    if (!rc && run.dr_error) {
        rc = run.dr_error;
        snprintf(errstr, errlen, "%s", run.dr_errstr);
    }
    if (run.dr_txn)
        store_read_end(run.dr_txn);
    fetch_destroy(run.dr_fetch);
    buf_free(&run.dr_buf);
    keys_free(run.dr_keys, run.dr_key_count); /* keys handed to jobs are NULL already */
    return rc;
}
