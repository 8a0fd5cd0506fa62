-- 0021_external_users.sql: one place for the rows a token user gets on first use.
--
-- A token from an outside issuer (Supabase, via KB_JWT_JWKS_FILE or its HS256
-- secret) names a user this database may not have yet. POST /keys, the billing
-- routes and GET /billing/status each wrote that users insert themselves; they
-- now call these functions (lib/keys.c, lib/users.c, lib/billing.c).

-- The users row for token user p_id: created when missing, with its email
-- (or '<id>@external.invalid' when the token has none) and a password hash
-- that never verifies. True when the row exists afterwards; false when the
-- email already belongs to another account, so p_id can own nothing. Two
-- statements, so the second sees a row a concurrent first use committed while
-- the insert waited on it (each statement of a VOLATILE function takes a new
-- snapshot in READ COMMITTED).
CREATE FUNCTION kb_user_ensure(p_id uuid, p_email text) RETURNS boolean
    LANGUAGE sql VOLATILE
    AS $$
    INSERT INTO users (id, email, password_hash)
    VALUES (p_id, lower(coalesce(nullif(p_email, ''), p_id::text || '@external.invalid')),
            '!external')
    ON CONFLICT DO NOTHING;
    SELECT EXISTS (SELECT 1 FROM users WHERE id = p_id);
$$;

-- The billing account of token user p_id (kb_user_ensure, then the account
-- with the free tier's defaults when missing), as stored: callers roll the
-- cycle with kb_roll_cycle(). No row when the user cannot exist.
CREATE FUNCTION kb_account_ensure(p_id uuid, p_email text) RETURNS SETOF billing_accounts
    LANGUAGE sql VOLATILE
    AS $$
    INSERT INTO billing_accounts (user_id)
    SELECT p_id WHERE kb_user_ensure(p_id, p_email)
    ON CONFLICT DO NOTHING;
    SELECT * FROM billing_accounts WHERE user_id = p_id;
$$;
