/* engine_eval: the values of a view definition's expressions over the decoded event. */
#include "engine_int.h"

#include <stdio.h>
#include <string.h>

/* ---- expressions ---- */

int engine_eval(const engine_ev_t *ev, const view_expr_t *expr, engine_val_t *ret)
{
    if (expr->ve_kind == VIEW_EXPR_CONST) {
        if (expr->ve_const_is_int) {
            ret->ev_type = FRAG_INT;
            ret->ev_int = expr->ve_const_int;
        } else {
            ret->ev_type = FRAG_STR;
            ret->ev_str = expr->ve_const_str;
            ret->ev_len = strlen(expr->ve_const_str);
        }
        return 0;
    }
    avro_value_t field, branch;
    int found = avro_dec_field(ev->ev_dec, (size_t)expr->ve_field_index, &field);
    if (found < 0)
        return RM_EDECODE;
    if (found > 0) { /* an optional field this writer predates: null */
        ret->ev_type = FRAG_ABSENT;
        return 0;
    }
    avro_value_t *v = &field;
    if (expr->ve_src == VIEW_SRC_OPT_STRING || expr->ve_src == VIEW_SRC_OPT_LONG) {
        if (avro_value_get_current_branch(&field, &branch))
            return RM_EDECODE;
        if (avro_value_get_type(&branch) == AVRO_NULL) {
            ret->ev_type = FRAG_ABSENT;
            return 0;
        }
        v = &branch;
    }
    switch (expr->ve_src) {
    case VIEW_SRC_STRING:
    case VIEW_SRC_OPT_STRING: {
        const char *s;
        size_t size;
        if (avro_value_get_string(v, &s, &size))
            return RM_EDECODE;
        ret->ev_type = FRAG_STR;
        ret->ev_str = s;
        ret->ev_len = size ? size - 1 : 0; /* avro-c counts the NUL */
        return 0;
    }
    case VIEW_SRC_ENUM: {
        int symbol;
        if (avro_value_get_enum(v, &symbol))
            return RM_EDECODE;
        const char *name = avro_schema_enum_get(avro_value_get_schema(v), symbol);
        if (!name)
            return RM_EDECODE;
        ret->ev_type = FRAG_STR;
        ret->ev_str = name;
        ret->ev_len = strlen(name);
        return 0;
    }
    case VIEW_SRC_LONG:
    case VIEW_SRC_OPT_LONG:
        if (avro_value_get_type(v) == AVRO_INT32) {
            int32_t i;
            if (avro_value_get_int(v, &i))
                return RM_EDECODE;
            ret->ev_int = i;
        } else if (avro_value_get_long(v, &ret->ev_int)) {
            return RM_EDECODE;
        }
        ret->ev_type = FRAG_INT;
        return 0;
    case VIEW_SRC_INT: {
        int32_t i;
        if (avro_value_get_int(v, &i))
            return RM_EDECODE;
        ret->ev_type = FRAG_INT;
        ret->ev_int = i;
        return 0;
    }
    case VIEW_SRC_BOOL: {
        int b;
        if (avro_value_get_boolean(v, &b))
            return RM_EDECODE;
        ret->ev_type = FRAG_BOOL;
        ret->ev_int = b != 0;
        return 0;
    }
    case VIEW_SRC_ARRAY: {
        size_t n;
        if (avro_value_get_size(v, &n))
            return RM_EDECODE;
        ret->ev_type = FRAG_INT;
        ret->ev_int = (int64_t)n;
        return 0;
    }
    }
    return RM_EDECODE;
}

/* An id (view key, item id, link id): a non-empty string without NUL, bounded. */
int engine_eval_id(const engine_ev_t *ev, const view_expr_t *expr, const char **ret_str,
                   size_t *ret_len, engine_result_t *res, const char *what)
{
    engine_val_t val;
    if (engine_eval(ev, expr, &val) || val.ev_type != FRAG_STR || val.ev_len == 0 ||
        val.ev_len > VIEW_KEY_MAX_BYTES || memchr(val.ev_str, '\0', val.ev_len)) {
        res->er_outcome = ENGINE_REJECTED;
        res->er_error = RM_EVALIDATE;
        snprintf(res->er_reason, sizeof(res->er_reason),
                 "%s is missing, empty, longer than %d bytes or holds NUL", what,
                 VIEW_KEY_MAX_BYTES);
        return RM_EVALIDATE;
    }
    *ret_str = val.ev_str;
    *ret_len = val.ev_len;
    return 0;
}
