-- 0008_admin_audit: every change an operator makes with `kbctl user` leaves a row.
CREATE TABLE admin_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    action     text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_user ON admin_audit (user_id, at DESC);
