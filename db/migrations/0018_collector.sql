-- 0018_collector: the live collector's gaps and bookkeeping (DESIGN.md "The collector").
--
-- Invariants:
--   * gaps: a span [start_at, end_at] of one market and channel ('orderbook': the
--     stored book may be wrong there; 'trade': trades may be missing) in which
--     messages were lost (seq jump, duplicate run, overflow, connection down, collector
--     stopped). end_at NULL = still open (no snapshot since). At most one open gap per
--     market and channel: one opened while another is open is already covered by it
--     (its start is earlier). Rows come from the collector's spool events, keyed by
--     where the event lies in the spool (source = instance/file/offset), so replaying a
--     spool stores nothing twice.
--   * collector_leader: one row, the instance holding the advisory lock
--     7274810018 and its epoch (+1 at every takeover). A leader whose heartbeat
--     UPDATE finds another epoch has lost the lock and stops.
--   * collector_progress: per instance, the spool position up to which everything
--     is committed; moved in the same transaction as the rows it covers.
--   * collector_markets: the markets a collector records (collecting: from their first
--     snapshot until they close or leave its scope). A collector that starts opens a
--     restart gap for each collecting market from its last stored data: markets that
--     only ever came from `kbctl import` get none.

CREATE TABLE gaps (
    id            bigserial PRIMARY KEY,
    market_ticker text NOT NULL,
    channel       text NOT NULL CHECK (channel IN ('orderbook', 'trade')),
    start_at      timestamptz NOT NULL,
    end_at        timestamptz CHECK (end_at IS NULL OR end_at >= start_at),
    reason        text NOT NULL CHECK (reason IN ('seq_jump', 'seq_duplicate', 'overflow',
                      'disconnect', 'heartbeat', 'error', 'frame_too_large', 'shutdown',
                      'restart', 'handover')),
    detail        jsonb,
    source        text NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    UNIQUE (source, market_ticker, channel)
);
CREATE INDEX gaps_market_start ON gaps (market_ticker, channel, start_at);
CREATE UNIQUE INDEX gaps_one_open ON gaps (market_ticker, channel) WHERE end_at IS NULL;

CREATE TABLE collector_leader (
    id           smallint PRIMARY KEY CHECK (id = 1),
    instance     text NOT NULL,
    epoch        bigint NOT NULL,
    since        timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);

CREATE TABLE collector_progress (
    instance    text PRIMARY KEY,
    file_no     bigint NOT NULL,
    file_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- What `kbctl status` shows per instance (leader or standby), refreshed every few seconds.
CREATE TABLE collector_status (
    instance     text PRIMARY KEY,
    role         text NOT NULL CHECK (role IN ('leader', 'standby')),
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    stats        jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE collector_markets (
    ticker     text PRIMARY KEY,
    collecting boolean NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
