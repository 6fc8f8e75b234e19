/* risk: deterministic fraud holds per customer (risk.h). */
#include "risk.h"

#include <stdio.h>
#include <string.h>

#define DAY_MS INT64_C(86400000)

static const char *const reasons[] = {"chargeback review", "velocity check", "address mismatch",
                                      "manual review"};

/* FNV-1a 64 over le64(seed) || "holds" || 0x00 || id: independent of the fault hashes. */
static uint64_t hold_hash(uint64_t seed, const char *id)
{
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    for (int i = 0; i < 8; i++)
        hash = (hash ^ (unsigned char)(seed >> (8 * i))) * UINT64_C(0x100000001b3);
    static const char tag[] = "holds";
    for (size_t i = 0; i < sizeof(tag); i++) /* with its NUL: the separator */
        hash = (hash ^ (unsigned char)tag[i]) * UINT64_C(0x100000001b3);
    for (const char *p = id; *p; p++)
        hash = (hash ^ (unsigned char)*p) * UINT64_C(0x100000001b3);
    return hash;
}

int risk_holds(uint64_t seed, const char *id, int64_t registered_at_ms,
               risk_hold_t holds[RISK_MAX_HOLDS])
{
    uint64_t hash = hold_hash(seed, id);
    unsigned pick = (unsigned)(hash % 100);
    int count = pick < 80 ? 0 : pick < 95 ? 1 : 2;
    int64_t first_ms = registered_at_ms + (int64_t)((hash >> 16) % (uint64_t)(30 * DAY_MS));
    for (int i = 0; i < count; i++) {
        snprintf(holds[i].rh_id, sizeof(holds[i].rh_id), "H-%s-%d", id, i + 1);
        holds[i].rh_reason = reasons[((hash >> 8) + (uint64_t)i) % 4];
        holds[i].rh_placed_at_ms = first_ms + i * (DAY_MS / 24);
    }
    return count;
}
