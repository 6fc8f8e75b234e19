/* people: deterministic names, emails and phone numbers from fixed tables. */
#include "people.h"

#include <stdio.h>
#include <string.h>

typedef struct people_name {
    const char *pn_display; /* UTF-8, may carry diacritics or an apostrophe */
    const char *pn_ascii; /* lower-case ASCII form for email local parts */
} people_name_t;

/* Mixed on purpose: diacritics and apostrophes exercise UTF-8 and JSON escaping
 * everywhere downstream. */
static const people_name_t people_first_names[] = {
    {"Anna", "anna"},     {"Lukas", "lukas"},     {"Zoë", "zoe"},         {"José", "jose"},
    {"Chloé", "chloe"},   {"Søren", "soren"},     {"Björn", "bjorn"},     {"Olivia", "olivia"},
    {"Noah", "noah"},     {"Emma", "emma"},       {"Liam", "liam"},       {"Sofia", "sofia"},
    {"Mateo", "mateo"},   {"Giulia", "giulia"},   {"Léa", "lea"},         {"Hugo", "hugo"},
    {"Amelia", "amelia"}, {"Oliver", "oliver"},   {"Mia", "mia"},         {"Elias", "elias"},
    {"Fatima", "fatima"}, {"Yusuf", "yusuf"},     {"Priya", "priya"},     {"Arjun", "arjun"},
    {"Mei", "mei"},       {"Hiroshi", "hiroshi"}, {"Ana", "ana"},         {"João", "joao"},
    {"Sven", "sven"},     {"Ingrid", "ingrid"},   {"Daan", "daan"},       {"Sanne", "sanne"},
    {"Grace", "grace"},   {"Ethan", "ethan"},     {"Chiara", "chiara"},   {"Marco", "marco"},
    {"Jürgen", "jurgen"}, {"Renée", "renee"},     {"Siobhán", "siobhan"}, {"Kofi", "kofi"},
};

static const people_name_t people_last_names[] = {
    {"Müller", "muller"},     {"Schmidt", "schmidt"},     {"García", "garcia"},
    {"Martínez", "martinez"}, {"Dubois", "dubois"},       {"Lefèvre", "lefevre"},
    {"Rossi", "rossi"},       {"Bianchi", "bianchi"},     {"Smith", "smith"},
    {"Johnson", "johnson"},   {"O'Brien", "obrien"},      {"Murphy", "murphy"},
    {"de Vries", "devries"},  {"Jansen", "jansen"},       {"Núñez", "nunez"},
    {"Kowalski", "kowalski"}, {"Nowak", "nowak"},         {"Andersson", "andersson"},
    {"Nielsen", "nielsen"},   {"Weber", "weber"},         {"Fischer", "fischer"},
    {"Brown", "brown"},       {"Taylor", "taylor"},       {"Williams", "williams"},
    {"Moreau", "moreau"},     {"Fontaine", "fontaine"},   {"Romano", "romano"},
    {"Costa", "costa"},       {"Sato", "sato"},           {"Chen", "chen"},
    {"Patel", "patel"},       {"Okafor", "okafor"},       {"Yılmaz", "yilmaz"},
    {"Novák", "novak"},       {"Lindqvist", "lindqvist"}, {"Ó Súilleabháin", "osullivan"},
};

/* Weighted by repetition: most customers in the euro area, then the UK and the US. */
static const people_country_t people_countries[] = {
    {"DE", "EUR", "+49", "15", 9}, {"DE", "EUR", "+49", "17", 8}, {"FR", "EUR", "+33", "6", 8},
    {"ES", "EUR", "+34", "6", 8},  {"IT", "EUR", "+39", "3", 9},  {"NL", "EUR", "+31", "6", 8},
    {"GB", "GBP", "+44", "7", 9},  {"GB", "GBP", "+44", "7", 9},  {"US", "USD", "+1", "", 10},
    {"US", "USD", "+1", "", 10},
};

static const char *const people_domains[] = {
    "example.com", "example.org", "example.net", "mail.example.com", "post.example.org",
};

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

void people_draw(prng_t *prng, people_person_t *ret_person)
{
    const people_name_t *first =
        &people_first_names[prng_below(prng, COUNT_OF(people_first_names))];
    const people_name_t *last = &people_last_names[prng_below(prng, COUNT_OF(people_last_names))];
    snprintf(ret_person->pp_name, sizeof(ret_person->pp_name), "%s %s", first->pn_display,
             last->pn_display);
    ret_person->pp_first = first->pn_ascii;
    ret_person->pp_last = last->pn_ascii;
    ret_person->pp_country = &people_countries[prng_below(prng, COUNT_OF(people_countries))];
}

void people_email(prng_t *prng, const people_person_t *person, unsigned variant, char *email)
{
    const char *domain = people_domains[prng_below(prng, COUNT_OF(people_domains))];
    unsigned number = (unsigned)prng_below(prng, 1000);
    switch ((prng_below(prng, 3) + variant) % 3) {
    case 0:
        snprintf(email, PEOPLE_EMAIL_MAX, "%s.%s%u@%s", person->pp_first, person->pp_last, number,
                 domain);
        break;
    case 1:
        snprintf(email, PEOPLE_EMAIL_MAX, "%c%s%u@%s", person->pp_first[0], person->pp_last, number,
                 domain);
        break;
    default:
        snprintf(email, PEOPLE_EMAIL_MAX, "%s_%s.%u@%s", person->pp_last, person->pp_first, number,
                 domain);
        break;
    }
}

void people_phone(prng_t *prng, const people_country_t *country, char *phone)
{
    int n = snprintf(phone, PEOPLE_PHONE_MAX, "%s%s", country->pc_dial, country->pc_mobile);
    for (int i = 0; i < country->pc_subscriber_digits && n + 1 < PEOPLE_PHONE_MAX; i++) {
        /* North American numbers cannot start an area code or exchange with 0 or 1. */
        bool nanp_lead = country->pc_mobile[0] == '\0' && (i == 0 || i == 3);
        phone[n++] = (char)(nanp_lead ? '2' + prng_below(prng, 8) : '0' + prng_below(prng, 10));
    }
    phone[n] = '\0';
}
