-- The location shared by every proxy (proxy/feed.py): each change to the
-- locations table carries a version, so a proxy reads what changed since the
-- last version it applied (catch-up after a gap or a reconnect) and nothing is
-- ever missed.

-- location_version.version grows by one with every committed batch of binding
-- changes; the row lock taken to bump it orders the commits, so the versions
-- committed are dense and a reader that sees version N has seen every one below.
CREATE TABLE location_version (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) {table_options};

INSERT INTO location_version (id, version) VALUES (1, 0);

-- version: the batch that last wrote the row. A removed binding stays a while
-- as a tombstone (expires_at = 0) so that other proxies learn of its removal.
ALTER TABLE locations ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- proxy: HOST:PORT of the proxy that holds the phone's flow (its TCP
-- connection, its NAT binding); other proxies reach the phone through it.
ALTER TABLE locations ADD COLUMN proxy VARCHAR(64) NULL;

CREATE INDEX locations_version ON locations (version);
