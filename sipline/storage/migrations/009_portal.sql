-- The web portal (portal/): who may log in, and what they changed.

-- role: 'admin' (operators: every account) or 'customer' (account users: the
-- one account named). password_hash: argon2id, in its own encoded form.
CREATE TABLE portal_users (
    id {id},
    username VARCHAR(64) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(16) NOT NULL,
    account VARCHAR(64) NULL,
    created_at DOUBLE NOT NULL,
    CONSTRAINT portal_users_username UNIQUE (username)
) {table_options};

-- Every change made through the portal (and portal-user commands): who, when,
-- from where, what (action and target), and the values before and after as JSON.
CREATE TABLE portal_audit (
    id {id},
    at DOUBLE NOT NULL,
    username VARCHAR(64) NOT NULL,
    account VARCHAR(64) NULL,
    source VARCHAR(64) NOT NULL,
    action VARCHAR(64) NOT NULL,
    target VARCHAR(255) NOT NULL,
    before_json TEXT NULL,
    after_json TEXT NULL
) {table_options};

CREATE INDEX portal_audit_at ON portal_audit (at);
