/* index: normalisation, keys and lookups of secondary indexes (see index.h). */
#include "index.h"
#include "rm_err.h"

#include <string.h>

int index_normalize(view_norm_t norm, const char *value, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    if (cap < INDEX_VALUE_MAX_BYTES + 1)
        return -1;
    if (norm == VIEW_NORM_E164) {
        size_t i = 0;
        while (i < len && value[i] == ' ')
            i++;
        if (i + 1 < len && value[i] == '0' && value[i + 1] == '0')
            i += 2;
        else if (i < len && value[i] == '+')
            i++;
        else
            return -1;
        out[n++] = '+';
        for (; i < len; i++) {
            char c = value[i];
            if (c >= '0' && c <= '9') {
                if (n > 15)
                    return -1;
                out[n++] = c;
            } else if (c != ' ' && c != '.' && c != '-' && c != '(' && c != ')') {
                return -1;
            }
        }
        if (n < 9) /* '+' and at least 8 digits */
            return -1;
        out[n] = '\0';
        return (int)n;
    }
    size_t start = 0, end = len;
    if (norm == VIEW_NORM_LOWERCASE) {
        while (start < end && (value[start] == ' ' || value[start] == '\t'))
            start++;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
    }
    if (end - start == 0 || end - start > INDEX_VALUE_MAX_BYTES ||
        memchr(value + start, '\0', end - start))
        return -1;
    for (size_t i = start; i < end; i++) {
        char c = value[i];
        out[n++] = norm == VIEW_NORM_LOWERCASE && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[n] = '\0';
    return (int)n;
}

size_t index_key(char *out, size_t cap, const char *name, const char *value, size_t value_len,
                 const char *view_key, size_t view_key_len)
{
    size_t name_len = strlen(name);
    size_t len = name_len + 1 + value_len + 1 + view_key_len;
    if (len > cap || len > 511)
        return 0;
    memcpy(out, name, name_len);
    out[name_len] = '\0';
    memcpy(out + name_len + 1, value, value_len);
    out[name_len + 1 + value_len] = '\0';
    if (view_key_len)
        memcpy(out + name_len + 2 + value_len, view_key, view_key_len);
    return len;
}

int index_lookup(const view_t *view, store_t *store, MDB_txn *txn, const char *name,
                 const char *value, size_t value_len, size_t limit, index_cb cb, void *ctx)
{
    const view_index_t *index = view_index_named(view, name);
    if (!index)
        return RM_ENOTFOUND;
    char norm[INDEX_VALUE_MAX_BYTES + 1];
    int norm_len = index_normalize(index->vi_norm, value, value_len, norm, sizeof(norm));
    if (norm_len < 0)
        return RM_EINVAL;
    char key[512];
    if (index->vi_link >= 0) { /* the link table: link \0 foreign_id -> view_key */
        const char *link = view->v_links[index->vi_link];
        size_t link_len = strlen(link);
        if (link_len + 1 + (size_t)norm_len > sizeof(key))
            return RM_EINVAL;
        memcpy(key, link, link_len);
        key[link_len] = '\0';
        memcpy(key + link_len + 1, norm, (size_t)norm_len);
        MDB_val k = {link_len + 1 + (size_t)norm_len, key}, v;
        int rc = mdb_get(txn, store_dbi(store, STORE_DB_LINK), &k, &v);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc)
            return rm_err_from_mdb(rc);
        if (v.mv_size == 1 && ((const char *)v.mv_data)[0] == '\0')
            return 0; /* an erased customer's link */
        return limit ? cb(ctx, v.mv_data, v.mv_size) : 0;
    }
    size_t plen = index_key(key, sizeof(key), name, norm, (size_t)norm_len, NULL, 0);
    if (!plen)
        return RM_EINVAL;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store_dbi(store, STORE_DB_IDX), &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    MDB_val k = {plen, key}, v;
    size_t found = 0;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && found < limit;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= plen || memcmp(k.mv_data, key, plen) != 0)
            break;
        found++;
        ret = cb(ctx, (const char *)k.mv_data + plen, k.mv_size - plen);
        if (ret)
            break;
    }
    mdb_cursor_close(cur);
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = rm_err_from_mdb(rc);
    return ret;
}
