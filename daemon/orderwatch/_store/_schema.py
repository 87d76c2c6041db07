"""Schema versions and migrations of both backends.

One script per schema version; a store at version N runs scripts N+1 … current in one
transaction when it is opened for writing. Never edit a released script: add the next one.
SQLite keeps its version in ``PRAGMA user_version``, PostgreSQL in ``orderwatch_schema``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "POSTGRES_MIGRATIONS", "POSTGRES_SCHEMA_VERSION", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 3

MIGRATIONS: Final = {
    1: """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    number            INTEGER NOT NULL,
    status            TEXT NOT NULL,
    is_final          INTEGER NOT NULL,
    status_since      REAL NOT NULL,
    since_exact       INTEGER NOT NULL,
    first_seen        REAL NOT NULL,
    anchor            INTEGER,
    created_date      TEXT,
    participant_login TEXT,
    total             TEXT
);
CREATE INDEX orders_open ON orders (number) WHERE is_final = 0;
CREATE TABLE events (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    kind                 TEXT NOT NULL,
    order_id             TEXT NOT NULL,
    previous_status      TEXT,
    status               TEXT NOT NULL,
    previous_since       REAL,
    previous_since_exact INTEGER NOT NULL,
    detected_at          REAL NOT NULL,
    after_gap            INTEGER NOT NULL,
    order_json           TEXT NOT NULL
);
CREATE TABLE deliveries (
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    done_at         REAL,
    PRIMARY KEY (event_seq, destination)
);
CREATE INDEX deliveries_pending
    ON deliveries (destination, event_seq) WHERE state = 'pending';
""",
    2: """
ALTER TABLE orders ADD COLUMN stuck_alerts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN stuck_last REAL;
ALTER TABLE events ADD COLUMN resolves_stuck INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN reminder INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN age_from REAL;
CREATE TABLE disabled_webhooks (
    destination TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    disabled_at REAL NOT NULL
);
CREATE INDEX events_order ON events (order_id, kind);
CREATE INDEX deliveries_dead ON deliveries (destination) WHERE state = 'dead';
""",
    3: """
ALTER TABLE events ADD COLUMN acknowledged TEXT;
ALTER TABLE events ADD COLUMN note_json TEXT;
CREATE INDEX events_time ON events (detected_at);
CREATE TABLE deliveries_v3 (
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'silenced')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    done_at         REAL,
    held            INTEGER NOT NULL DEFAULT 0,
    age_from        REAL,
    silenced_by     INTEGER,
    PRIMARY KEY (event_seq, destination)
);
INSERT INTO deliveries_v3 (event_seq, route, destination, state, attempts, next_attempt_at,
    last_error, done_at, held, age_from)
    SELECT event_seq, route, destination, state, attempts, next_attempt_at, last_error, done_at,
        held, age_from FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries;
CREATE INDEX deliveries_pending
    ON deliveries (destination, event_seq) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (destination) WHERE state = 'dead';
CREATE INDEX deliveries_silenced ON deliveries (event_seq) WHERE state = 'silenced';
CREATE TABLE acks (
    order_id TEXT NOT NULL,
    number   INTEGER NOT NULL,
    status   TEXT NOT NULL,
    since    REAL NOT NULL,
    at       REAL NOT NULL,
    until    REAL,
    by       TEXT,
    comment  TEXT,
    PRIMARY KEY (order_id, status, since)
);
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    statuses   TEXT,
    orders     TEXT,
    routes     TEXT,
    events     TEXT,
    created_at REAL NOT NULL,
    ends_at    REAL NOT NULL,
    comment    TEXT,
    created_by TEXT
);
CREATE TABLE summaries_sent (
    summary    TEXT PRIMARY KEY,
    period_end REAL NOT NULL
);
""",
}

POSTGRES_SCHEMA_VERSION: Final = 2

# The same tables as SQLite's (version 1: SQLite's schema 2; version 2: SQLite's schema 3), so
# that a file migrates row for row, plus what instances sharing the database need: the leader
# lease, the instances, delivery claims.
POSTGRES_MIGRATIONS: Final = {
    1: """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    number            BIGINT NOT NULL,
    status            TEXT NOT NULL,
    is_final          INTEGER NOT NULL,
    status_since      DOUBLE PRECISION NOT NULL,
    since_exact       INTEGER NOT NULL,
    first_seen        DOUBLE PRECISION NOT NULL,
    anchor            BIGINT,
    created_date      TEXT,
    participant_login TEXT,
    total             TEXT,
    stuck_alerts      INTEGER NOT NULL DEFAULT 0,
    stuck_last        DOUBLE PRECISION
);
CREATE INDEX orders_open ON orders (number) WHERE is_final = 0;
CREATE TABLE events (
    seq                  BIGSERIAL PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    kind                 TEXT NOT NULL,
    order_id             TEXT NOT NULL,
    previous_status      TEXT,
    status               TEXT NOT NULL,
    previous_since       DOUBLE PRECISION,
    previous_since_exact INTEGER NOT NULL,
    detected_at          DOUBLE PRECISION NOT NULL,
    after_gap            INTEGER NOT NULL,
    order_json           TEXT NOT NULL,
    resolves_stuck       INTEGER NOT NULL DEFAULT 0,
    reminder             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_order ON events (order_id, kind);
CREATE TABLE deliveries (
    event_seq       BIGINT NOT NULL REFERENCES events (seq),
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error      TEXT,
    done_at         DOUBLE PRECISION,
    held            INTEGER NOT NULL DEFAULT 0,
    age_from        DOUBLE PRECISION,
    PRIMARY KEY (event_seq, destination)
);
CREATE INDEX deliveries_pending
    ON deliveries (destination, event_seq) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (destination) WHERE state = 'dead';
CREATE TABLE disabled_webhooks (
    destination TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    disabled_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE leader_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT,
    epoch      BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
INSERT INTO leader_lease (name, holder, epoch, expires_at) VALUES ('poller', NULL, 0, 0);
CREATE TABLE instances (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    last_seen  DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE destination_claims (
    destination TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL
);
""",
    2: """
ALTER TABLE events ADD COLUMN acknowledged TEXT;
ALTER TABLE events ADD COLUMN note_json TEXT;
CREATE INDEX events_time ON events (detected_at);
ALTER TABLE deliveries ADD COLUMN silenced_by BIGINT;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('pending', 'sent', 'dead', 'silenced'));
CREATE INDEX deliveries_silenced ON deliveries (event_seq) WHERE state = 'silenced';
CREATE TABLE acks (
    order_id TEXT NOT NULL,
    number   BIGINT NOT NULL,
    status   TEXT NOT NULL,
    since    DOUBLE PRECISION NOT NULL,
    at       DOUBLE PRECISION NOT NULL,
    until    DOUBLE PRECISION,
    by       TEXT,
    comment  TEXT,
    PRIMARY KEY (order_id, status, since)
);
CREATE TABLE silences (
    id         BIGSERIAL PRIMARY KEY,
    statuses   TEXT,
    orders     TEXT,
    routes     TEXT,
    events     TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    ends_at    DOUBLE PRECISION NOT NULL,
    comment    TEXT,
    created_by TEXT
);
CREATE TABLE summaries_sent (
    summary    TEXT PRIMARY KEY,
    period_end DOUBLE PRECISION NOT NULL
);
""",
}
