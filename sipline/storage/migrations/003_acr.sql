-- The adaptive call router (acr/store.py): carriers, their gateways and rate
-- decks, routing profiles, inbound DIDs, CDRs, and the rows the database
-- rejected (error_queue). Carriers are referred to by name, as accounts are.

-- acr_version.version grows with every change to carriers, gateways, rates,
-- routing profiles or DIDs, so ACR nodes reload only when it moved.
CREATE TABLE acr_version (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) {table_options};

INSERT INTO acr_version (id, version) VALUES (1, 0);

-- capacity: concurrent calls, cps: new calls per second (NULL: no limit).
CREATE TABLE carriers (
    id {id},
    name VARCHAR(64) {ascii} NOT NULL,
    capacity INTEGER NULL,
    cps INTEGER NULL,
    enabled SMALLINT NOT NULL DEFAULT 1,
    created_at DOUBLE NOT NULL,
    CONSTRAINT carriers_name UNIQUE (name)
) {table_options};

-- One address is one carrier's: inbound calls are classified by it.
CREATE TABLE gateways (
    id {id},
    carrier VARCHAR(64) {ascii} NOT NULL,
    host VARCHAR(255) {ascii} NOT NULL,
    port INTEGER NOT NULL,
    transport VARCHAR(8) NOT NULL DEFAULT 'udp',
    weight INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT gateways_host_port UNIQUE (host, port)
) {table_options};

CREATE INDEX gateways_carrier ON gateways (carrier);

-- A rate deck row: price per minute, connect fee, billing increments in
-- seconds (first/next: 60/60, 6/6, 1/1), effective [from, to) in epoch seconds.
CREATE TABLE rates (
    id {id},
    carrier VARCHAR(64) {ascii} NOT NULL,
    prefix VARCHAR(32) {ascii} NOT NULL,
    rate DOUBLE NOT NULL,
    connect_fee DOUBLE NOT NULL DEFAULT 0,
    first_increment INTEGER NOT NULL DEFAULT 60,
    next_increment INTEGER NOT NULL DEFAULT 60,
    effective_from DOUBLE NULL,
    effective_to DOUBLE NULL
) {table_options};

CREATE INDEX rates_carrier ON rates (carrier);

-- Per destination prefix ('' = every number): score weights, floors, the
-- final SIP codes that end the hunt (comma-separated), carriers to try.
CREATE TABLE routing_profiles (
    id {id},
    prefix VARCHAR(32) {ascii} NOT NULL,
    weight_availability DOUBLE NOT NULL,
    weight_quality DOUBLE NOT NULL,
    weight_price DOUBLE NOT NULL,
    min_quality DOUBLE NULL,
    max_price DOUBLE NULL,
    final_codes VARCHAR(255) {ascii} NOT NULL,
    max_attempts INTEGER NOT NULL,
    CONSTRAINT routing_profiles_prefix UNIQUE (prefix)
) {table_options};

-- An inbound number, its home proxy and backups (HOST:PORT, comma-separated).
CREATE TABLE dids (
    id {id},
    number VARCHAR(32) {ascii} NOT NULL,
    proxy VARCHAR(300) {ascii} NOT NULL,
    backups VARCHAR(2000) {ascii} NOT NULL DEFAULT '',
    CONSTRAINT dids_number UNIQUE (number)
) {table_options};

-- One call that reached a carrier. (call_id, node, started_at) is unique so
-- that a batch replayed after a crash is not written twice.
CREATE TABLE cdrs (
    id {id},
    call_id VARCHAR(255) NOT NULL,
    account VARCHAR(64) NULL,
    caller VARCHAR(128) NOT NULL,
    callee VARCHAR(64) NOT NULL,
    prefix VARCHAR(32) NOT NULL,
    carrier VARCHAR(64) NOT NULL,
    gateway VARCHAR(300) NOT NULL,
    rate DOUBLE NOT NULL,
    connect_fee DOUBLE NOT NULL,
    first_increment INTEGER NOT NULL,
    next_increment INTEGER NOT NULL,
    started_at DOUBLE NOT NULL,
    answered_at DOUBLE NULL,
    ended_at DOUBLE NOT NULL,
    billed_seconds INTEGER NOT NULL,
    cost DOUBLE NOT NULL,
    final_code INTEGER NOT NULL,
    node VARCHAR(64) NOT NULL,
    extra TEXT NULL,
    CONSTRAINT cdrs_call UNIQUE (call_id, node, started_at)
) {table_options};

CREATE INDEX cdrs_started_at ON cdrs (started_at);

CREATE INDEX cdrs_carrier ON cdrs (carrier);

-- A row the database refused (source: the table it was meant for), with the
-- reason and the row as JSON, for an operator to fix and re-insert.
CREATE TABLE error_queue (
    id {id},
    source VARCHAR(64) NOT NULL,
    reason TEXT NOT NULL,
    payload MEDIUMTEXT NOT NULL,
    created_at DOUBLE NOT NULL
) {table_options};
