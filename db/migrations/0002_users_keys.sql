-- 0002_users_keys: local accounts and API keys (API.md §2, §5.3-5.5, §8).
--
-- Users sign up here (argon2id hashes from libsodium). API keys are stored
-- as SHA-256 hex plus a 7-character display prefix only: the raw key is
-- shown once at creation and can never be read back (API.md §7.8).

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 320),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash     text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    key_prefix   text NOT NULL CHECK (length(key_prefix) = 7),
    name         text NOT NULL DEFAULT 'Default' CHECK (length(name) <= 100),
    key_type     text NOT NULL DEFAULT 'dev' CHECK (key_type IN ('dev', 'prod')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- GET /keys: a user's live keys, newest first.
CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at DESC) WHERE revoked_at IS NULL;
