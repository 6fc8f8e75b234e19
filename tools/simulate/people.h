/* people: plausible, deterministic customer identities — names, emails, E.164 phones.
 *
 * Everything is drawn from the caller's prng, so a customer's identity depends only on
 * the seed. Emails use the RFC 2606 reserved domains (example.com, ...) and names come
 * from small fixed tables: the data looks real but can never be anybody's real contact. */
#ifndef SIM_PEOPLE_H
#define SIM_PEOPLE_H

#include "prng.h"

#include <stddef.h>

/* Sizes that fit every value the tables can produce (longest name pair plus digits). */
#define PEOPLE_NAME_MAX 64
#define PEOPLE_EMAIL_MAX 96
#define PEOPLE_PHONE_MAX 20

typedef struct people_country {
    const char *pc_code; /* ISO 3166 alpha-2, e.g. "DE" */
    const char *pc_currency; /* ISO 4217, e.g. "EUR" */
    const char *pc_dial; /* country calling code with '+', e.g. "+49" */
    const char *pc_mobile; /* leading digits of mobile numbers, e.g. "15" */
    int pc_subscriber_digits; /* digits after pc_mobile */
} people_country_t;

typedef struct people_person {
    char pp_name[PEOPLE_NAME_MAX]; /* "Zoë Müller" (UTF-8) */
    const char *pp_first; /* lower-case ASCII forms used to build emails (static) */
    const char *pp_last;
    const people_country_t *pp_country;
} people_person_t;

/* Draws a person: name and country. */
void people_draw(prng_t *prng, people_person_t *ret_person);
/* Writes an email for person into email (PEOPLE_EMAIL_MAX bytes). variant makes later
 * addresses of the same person differ from the first one (0 = first address). */
void people_email(prng_t *prng, const people_person_t *person, unsigned variant, char *email);
/* Writes a mobile number in E.164 form ("+4915112345678") into phone (PEOPLE_PHONE_MAX). */
void people_phone(prng_t *prng, const people_country_t *country, char *phone);

#endif
