/* test_stripe.c - Stripe client and webhook pieces that need no network: form encoding of
 * nested parameters, Stripe-Signature verification (secrets, rotation, several v1, tolerance,
 * malformed headers), and the no-key answer. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kb_config.h"
#include "kb_stripe.h"
#include "kb_webhook.h"
#include "kb_banned.h"

START_TEST(form_encodes_nested_keys_and_escapes_values)
{
    kb_stripe_form f = {KB_BUF_INIT};
    kb_stripe_form_add(&f, "line_items[0][price]", "price_1");
    kb_stripe_form_addf(&f, "1", "line_items[%d][quantity]", 0);
    kb_stripe_form_add(&f, "metadata[kalshibook_user_id]", "u 1&x=y");
    kb_stripe_form_add(&f, "success_url", "https://a.example/billing?success=true");
    ck_assert_str_eq(kb_buf_cstr(&f.body),
                     "line_items%5B0%5D%5Bprice%5D=price_1&line_items%5B0%5D%5Bquantity%5D=1"
                     "&metadata%5Bkalshibook_user_id%5D=u%201%26x%3Dy"
                     "&success_url=https%3A%2F%2Fa.example%2Fbilling%3Fsuccess%3Dtrue");
    kb_stripe_form_release(&f);
}
END_TEST

static void
sign(const char *secret, long t, const char *body, char out[65])
{
    char in[512];
    snprintf(in, sizeof(in), "%ld.%s", t, body);
    unsigned char mac[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)in, strlen(in), mac, &n);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

typedef struct sig_case {
    const char *name;
    const char *header_tpl; /* T = t, V = v1 of secret A over the body */
    long t_offset;
    const char *secrets;
    kb_webhook_verdict want;
} sig_case;

static const sig_case sig_cases[] = {
    {"valid", "t=T,v1=V", 0, "whsec_A", KB_WEBHOOK_OK},
    {"second secret (rotation)", "t=T,v1=V", 0, "whsec_B, whsec_A", KB_WEBHOOK_OK},
    {"wrong secret", "t=T,v1=V", 0, "whsec_B", KB_WEBHOOK_MISMATCH},
    {"several v1, one good", "t=T,v1=00,v1=V,v0=ff", 0, "whsec_A", KB_WEBHOOK_OK},
    {"old timestamp", "t=T,v1=V", -301, "whsec_A", KB_WEBHOOK_TOO_OLD},
    {"at the tolerance", "t=T,v1=V", -300, "whsec_A", KB_WEBHOOK_OK},
    {"no v1", "t=T,v0=V", 0, "whsec_A", KB_WEBHOOK_MISSING},
    {"no t", "v1=V", 0, "whsec_A", KB_WEBHOOK_MISSING},
    {"bad t", "t=xT,v1=V", 0, "whsec_A", KB_WEBHOOK_MISSING},
};

START_TEST(webhook_signature_cases)
{
    const sig_case *c = &sig_cases[_i];
    const char *body = "{\"id\":\"evt_1\"}";
    long now = 1700000000;
    char v1[65];
    sign("whsec_A", now + c->t_offset, body, v1);
    kb_buf h = KB_BUF_INIT;
    for (const char *p = c->header_tpl; *p; p++) {
        if (*p == 'T')
            kb_buf_printf(&h, "%ld", now + c->t_offset);
        else if (*p == 'V')
            kb_buf_puts(&h, v1);
        else
            kb_buf_putc(&h, *p);
    }
    char header[256];
    snprintf(header, sizeof(header), "%s", kb_buf_cstr(&h));
    kb_buf_release(&h);
    kb_webhook_verdict v = kb_webhook_verify(kb_str_c(header), kb_str_c(body), c->secrets, 300,
                                             now);
    ck_assert_msg(v == c->want, "%s: got %s", c->name, kb_webhook_verdict_str(v));
}
END_TEST

START_TEST(webhook_without_header_or_secret_is_refused)
{
    ck_assert_int_eq(kb_webhook_verify(KB_STR_NULL, kb_str_c("{}"), "whsec_A", 300, 1),
                     KB_WEBHOOK_MISSING);
    ck_assert_int_eq(kb_webhook_verify(kb_str_c("t=1,v1=00"), kb_str_c("{}"), NULL, 300, 1),
                     KB_WEBHOOK_MISSING);
}
END_TEST

START_TEST(stripe_call_without_key_is_billing_not_configured)
{
    kb_cfg.stripe_secret_key = NULL;
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_stripe_res r;
    ck_assert_int_eq(kb_stripe_call(NULL, &a, "POST", "/v1/customers", NULL, NULL, &r),
                     KB_E_BILLING_NOT_CONFIGURED);
    ck_assert_int_eq(r.attempts, 0);
    kb_arena_release(&a);
}
END_TEST

START_TEST(config_refuses_a_stripe_key_without_webhook_secrets)
{
    setenv("KB_DATABASE_URL", "dbname=x", 1);
    setenv("KB_JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("STRIPE_SECRET_KEY", "sk_test_x", 1);
    unsetenv("STRIPE_WEBHOOK_SECRETS");
    kb_config cfg;
    kb_buf problems = KB_BUF_INIT;
    ck_assert_int_eq(kb_config_load(&cfg, &problems), 1);
    ck_assert_ptr_nonnull(strstr(kb_buf_cstr(&problems), "STRIPE_WEBHOOK_SECRETS"));
    kb_buf_reset(&problems);
    setenv("STRIPE_WEBHOOK_SECRETS", "whsec_a,whsec_b", 1);
    ck_assert_int_eq(kb_config_load(&cfg, &problems), 0);
    kb_buf_release(&problems);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("stripe");
    TCase *tc = tcase_create("stripe");
    tcase_add_test(tc, form_encodes_nested_keys_and_escapes_values);
    tcase_add_loop_test(tc, webhook_signature_cases, 0,
                        (int)(sizeof(sig_cases) / sizeof(sig_cases[0])));
    tcase_add_test(tc, webhook_without_header_or_secret_is_refused);
    tcase_add_test(tc, stripe_call_without_key_is_billing_not_configured);
    tcase_add_test(tc, config_refuses_a_stripe_key_without_webhook_secrets);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
