-- Sources every SIP node drops (sipline/net/guard.py), shared through the
-- database when there is no [redis] (sipline/storage/bans.py): made by nodes
-- (flood, auth) and by operators (`sipline ban add`, reason manual).
-- address: an IPv4 address, or an IPv6 prefix such as 2001:db8:1:2::/64.
-- ends_at: epoch seconds; NULL = until removed. origin: the node, or operator.

-- ban_version.version grows with every change to bans, so nodes re-read the
-- table only when it moved.
CREATE TABLE ban_version (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) {table_options};

INSERT INTO ban_version (id, version) VALUES (1, 0);

CREATE TABLE bans (
    address VARCHAR(64) {ascii} NOT NULL PRIMARY KEY,
    ends_at DOUBLE NULL,
    reason VARCHAR(16) NOT NULL,
    origin VARCHAR(64) NOT NULL,
    created_at DOUBLE NOT NULL
) {table_options};

CREATE INDEX bans_ends_at ON bans (ends_at);
