-- The shared ledger, version 1: the book's entries in the embedded store's
-- key layout, each stamped with the version of the write that set it, and
-- the gateways' leases on the reservations they hold.
CREATE TABLE padnet_ledger (
    key bytea PRIMARY KEY,
    -- NULL: removed; kept a while so every gateway sees the removal.
    value bytea,
    version bigint NOT NULL,
    written timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX padnet_ledger_by_version ON padnet_ledger (version);
CREATE SEQUENCE padnet_ledger_versions;
CREATE TABLE padnet_gateways (
    name text PRIMARY KEY,
    alive_until timestamptz NOT NULL
);
