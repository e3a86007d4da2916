-- The nodes of the cluster (sipline/cluster/registry.py) and the version of
-- the configuration the operator commands change (sipline/cluster/changes.py).

-- Every node records itself at start: where it serves and where its admin
-- endpoint listens, so `sipline status` and config pushes find it without
-- Redis. stopped_at is set when it stops cleanly (NULL while it runs, or
-- after it died).
CREATE TABLE nodes (
    id {id},
    name VARCHAR(64) NOT NULL,
    role VARCHAR(16) NOT NULL,
    address VARCHAR(64) NOT NULL,
    admin VARCHAR(64) NOT NULL,
    version VARCHAR(32) NOT NULL,
    started_at DOUBLE NOT NULL,
    stopped_at DOUBLE NULL,
    CONSTRAINT nodes_name UNIQUE (name)
) {table_options};

-- Grows with every change an operator command makes (subscribers, accounts,
-- carriers, gateways, rates, profiles, DIDs); each node reports the version
-- it has applied.
CREATE TABLE config_version (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    changed_at DOUBLE NOT NULL
) {table_options};

INSERT INTO config_version (id, version, changed_at) VALUES (1, 0, 0);
