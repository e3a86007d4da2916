-- Account licences at the B2BUA (b2bua/licences.py, b2bua/grace.py).

-- 001 made accounts.grace_hours NOT NULL DEFAULT 0, so "this account's own
-- grace period" and "the config's b2bua.grace_hours" need telling apart:
-- grace_own = 1 when grace_hours was set for this account (0 hours included).
ALTER TABLE accounts ADD COLUMN grace_own SMALLINT NOT NULL DEFAULT 0;

-- Every call that found its account at or over its licence: count is the
-- concurrent calls the account had with this one, licence the licence then;
-- allowed = 1 when it went ahead in the grace period, 0 when it was refused.
CREATE TABLE audit (
    id {id},
    account VARCHAR(64) NOT NULL,
    at DOUBLE NOT NULL,
    count INTEGER NOT NULL,
    licence INTEGER NOT NULL,
    allowed SMALLINT NOT NULL,
    call_id VARCHAR(255) NULL,
    node VARCHAR(64) NOT NULL
) {table_options};

CREATE INDEX audit_account_at ON audit (account, at);
