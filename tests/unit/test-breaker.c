/* Tests of breaker.c: the circuit breaker's state machine, driven by a fake clock. */
#include "breaker.h"
#include "tsupport.h"

#include <check.h>
#include <pthread.h>

/* N consecutive failures open it; a success in between resets the count. */
START_TEST(test_opens_after_consecutive_failures)
{
    breaker_t *br = breaker_new(3, 1000);
    int64_t now = 5000;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(breaker_allow(br, now), BREAKER_CALL);
            breaker_record(br, BREAKER_CALL, false, now);
        }
        ck_assert_int_eq(breaker_allow(br, now), BREAKER_CALL);
        breaker_record(br, BREAKER_CALL, true, now); /* resets: 2 + 2 failures never open it */
    }
    uint64_t opened = 99;
    ck_assert_int_eq(breaker_state(br, &opened), BREAKER_CLOSED);
    ck_assert_uint_eq(opened, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(breaker_allow(br, now), BREAKER_CALL);
        breaker_record(br, BREAKER_CALL, false, now);
    }
    ck_assert_int_eq(breaker_state(br, &opened), BREAKER_OPEN);
    ck_assert_uint_eq(opened, 1);
    ck_assert_int_eq(breaker_allow(br, now), BREAKER_REFUSED);
    ck_assert_int_eq(breaker_allow(br, now + 999), BREAKER_REFUSED); /* still cooling down */
    breaker_destroy(br);
}
END_TEST

/* After the cool-down exactly one caller gets the trial; its success closes the breaker. */
START_TEST(test_half_open_trial_success_closes)
{
    breaker_t *br = breaker_new(1, 1000);
    ck_assert_int_eq(breaker_allow(br, 0), BREAKER_CALL);
    breaker_record(br, BREAKER_CALL, false, 10); /* opens at 10 */
    ck_assert_int_eq(breaker_allow(br, 1009), BREAKER_REFUSED);
    ck_assert_int_eq(breaker_allow(br, 1010), BREAKER_TRIAL);
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_HALF_OPEN);
    ck_assert_int_eq(breaker_allow(br, 1011), BREAKER_REFUSED); /* one trial at a time */
    ck_assert_int_eq(breaker_allow(br, 99999), BREAKER_REFUSED);
    breaker_record(br, BREAKER_TRIAL, true, 1100);
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_CLOSED);
    ck_assert_int_eq(breaker_allow(br, 1101), BREAKER_CALL);
    breaker_record(br, BREAKER_CALL, true, 1101);
    breaker_destroy(br);
}
END_TEST

/* A failed trial opens it for a whole new cool-down, counted from the failure. */
START_TEST(test_half_open_trial_failure_reopens)
{
    breaker_t *br = breaker_new(2, 500);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(breaker_allow(br, 0), BREAKER_CALL);
        breaker_record(br, BREAKER_CALL, false, 0);
    }
    ck_assert_int_eq(breaker_allow(br, 500), BREAKER_TRIAL);
    breaker_record(br, BREAKER_TRIAL, false, 650);
    uint64_t opened;
    ck_assert_int_eq(breaker_state(br, &opened), BREAKER_OPEN);
    ck_assert_uint_eq(opened, 2);
    ck_assert_int_eq(breaker_allow(br, 1149), BREAKER_REFUSED);
    ck_assert_int_eq(breaker_allow(br, 1150), BREAKER_TRIAL);
    breaker_record(br, BREAKER_TRIAL, true, 1160);
    /* closed again with a fresh count: one failure does not reopen a threshold of 2 */
    ck_assert_int_eq(breaker_allow(br, 1200), BREAKER_CALL);
    breaker_record(br, BREAKER_CALL, false, 1200);
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_CLOSED);
    breaker_destroy(br);
}
END_TEST

/* Calls allowed before it opened and finishing afterwards decide nothing: a late success
 * does not close an open breaker, a late failure does not re-arm a half-open one. */
START_TEST(test_late_outcomes_are_ignored)
{
    breaker_t *br = breaker_new(1, 100);
    ck_assert_int_eq(breaker_allow(br, 0), BREAKER_CALL); /* in flight: the late one */
    ck_assert_int_eq(breaker_allow(br, 0), BREAKER_CALL);
    breaker_record(br, BREAKER_CALL, false, 1); /* opens */
    breaker_record(br, BREAKER_CALL, true, 2);  /* the late success */
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_OPEN);
    ck_assert_int_eq(breaker_allow(br, 101), BREAKER_TRIAL);
    breaker_record(br, BREAKER_CALL, false, 102); /* another late one, while half-open */
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_HALF_OPEN);
    breaker_record(br, BREAKER_TRIAL, true, 103);
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_CLOSED);
    breaker_destroy(br);
}
END_TEST

/* Many threads at once: the failure count is exact (opens on the Nth failure, not
 * before) and exactly one thread wins the trial. */
#define RACE_THREADS 8
#define RACE_CALLS 1000

typedef struct race {
    breaker_t *br;
    int trials;
    int refused;
} race_t;

static void *fail_calls(void *arg)
{
    breaker_t *br = arg;
    for (int i = 0; i < RACE_CALLS; i++) {
        breaker_ticket_t t = breaker_allow(br, 0);
        if (t != BREAKER_REFUSED)
            breaker_record(br, t, false, 0);
    }
    return NULL;
}

static void *take_trial(void *arg)
{
    race_t *race = arg;
    breaker_ticket_t t = breaker_allow(race->br, 1000000);
    __atomic_fetch_add(t == BREAKER_TRIAL ? &race->trials : &race->refused, 1, __ATOMIC_RELAXED);
    return NULL;
}

START_TEST(test_threads)
{
    breaker_t *br = breaker_new(RACE_THREADS * RACE_CALLS, 1000);
    pthread_t threads[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_create(&threads[i], NULL, fail_calls, br);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(threads[i], NULL);
    uint64_t opened;
    ck_assert_int_eq(breaker_state(br, &opened), BREAKER_OPEN); /* the last failure opened it */
    ck_assert_uint_eq(opened, 1);
    race_t race = {br, 0, 0};
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_create(&threads[i], NULL, take_trial, &race);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(threads[i], NULL);
    ck_assert_int_eq(race.trials, 1);
    ck_assert_int_eq(race.refused, RACE_THREADS - 1);
    breaker_destroy(br);

    br = breaker_new(RACE_THREADS * RACE_CALLS + 1, 1000);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_create(&threads[i], NULL, fail_calls, br);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(threads[i], NULL);
    ck_assert_int_eq(breaker_state(br, NULL), BREAKER_CLOSED); /* one short of the threshold */
    breaker_destroy(br);
}
END_TEST

START_TEST(test_state_names)
{
    ck_assert_str_eq(breaker_state_name(BREAKER_CLOSED), "closed");
    ck_assert_str_eq(breaker_state_name(BREAKER_OPEN), "open");
    ck_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half-open");
    breaker_destroy(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("breaker");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_opens_after_consecutive_failures);
    tcase_add_test(tc, test_half_open_trial_success_closes);
    tcase_add_test(tc, test_half_open_trial_failure_reopens);
    tcase_add_test(tc, test_late_outcomes_are_ignored);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_state_names);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
