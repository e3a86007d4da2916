-- The initial schema (DESIGN.md "State"): accounts, subscribers, locations.

-- A customer account: its concurrent-call licence and the grace period
-- (hours over licence tolerated, and when the current one began; NULL: none).
CREATE TABLE accounts (
    id {id},
    name VARCHAR(64) NOT NULL,
    licence INTEGER NOT NULL DEFAULT 0,
    grace_hours INTEGER NOT NULL DEFAULT 0,
    grace_started_at DOUBLE NULL,
    created_at DOUBLE NOT NULL,
    CONSTRAINT accounts_name UNIQUE (name)
) {table_options};

-- A subscriber is username@domain; the realm of its digest HA1 is the domain.
-- account names an accounts row by name (NULL: no account).
CREATE TABLE subscribers (
    id {id},
    username VARCHAR(128) NOT NULL,
    domain VARCHAR(255) NOT NULL,
    ha1_md5 CHAR(32) NOT NULL,
    ha1_sha256 CHAR(64) NOT NULL,
    account VARCHAR(64) NULL,
    created_at DOUBLE NOT NULL,
    CONSTRAINT subscribers_username_domain UNIQUE (username, domain)
) {table_options};

CREATE INDEX subscribers_account ON subscribers (account);

-- A registrar binding (RFC 3261 section 10, RFC 5626 outbound): one row per AOR and contact.
-- received: the source ip:port the REGISTER came from (NAT); connection_id: the
-- TCP connection to reuse; path: the Path header values (RFC 3327), comma-separated;
-- instance, reg_id: +sip.instance and reg-id; node: the proxy node holding the connection.
CREATE TABLE locations (
    id {id},
    aor VARCHAR(255) NOT NULL,
    contact VARCHAR(2000) {ascii} NOT NULL,
    received VARCHAR(64) NULL,
    transport VARCHAR(8) NOT NULL,
    connection_id VARCHAR(64) NULL,
    path TEXT NULL,
    expires_at DOUBLE NOT NULL,
    q DOUBLE NULL,
    call_id VARCHAR(255) NOT NULL,
    cseq BIGINT NOT NULL,
    user_agent VARCHAR(255) NULL,
    instance VARCHAR(255) NULL,
    reg_id INTEGER NULL,
    node VARCHAR(64) NOT NULL,
    updated_at DOUBLE NOT NULL,
    CONSTRAINT locations_aor_contact UNIQUE (aor, contact)
) {table_options};

CREATE INDEX locations_expires_at ON locations (expires_at);

CREATE INDEX locations_node ON locations (node);
