-- lpmon state store, version 1. Runs unchanged on SQLite and PostgreSQL:
-- portable types (TEXT, BIGINT, DOUBLE PRECISION), ISO-8601 dates as TEXT,
-- natural keys (model, logical date), one UPSERT syntax (ON CONFLICT).

CREATE TABLE models (
    model_id     TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    config_json  TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE snapshots (
    model_id       TEXT NOT NULL REFERENCES models (model_id),
    snapshot_id    TEXT NOT NULL,
    uri            TEXT NOT NULL,
    registered_at  TEXT NOT NULL,
    PRIMARY KEY (model_id, snapshot_id)
);

-- Quantization plans, versioned per model. The partial unique index makes
-- "at most one active plan per model" the database's job, not the code's.
CREATE TABLE plans (
    model_id      TEXT NOT NULL REFERENCES models (model_id),
    version       BIGINT NOT NULL,
    plan_json     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('candidate', 'active', 'retired', 'rejected')),
    logical_date  TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE UNIQUE INDEX plans_one_active ON plans (model_id) WHERE status = 'active';

CREATE TABLE runs (
    model_id      TEXT NOT NULL REFERENCES models (model_id),
    logical_date  TEXT NOT NULL,
    status        TEXT NOT NULL,
    message       TEXT NOT NULL DEFAULT '',
    plan_version  BIGINT,
    sample_size   BIGINT,
    positives     BIGINT,
    started_at    TEXT,
    finished_at   TEXT,
    timings_json  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (model_id, logical_date)
);

-- Everything lpmon.metrics.compare returns; segment '' is the whole sample.
CREATE TABLE run_metrics (
    model_id         TEXT NOT NULL,
    logical_date     TEXT NOT NULL,
    segment          TEXT NOT NULL DEFAULT '',
    n                BIGINT NOT NULL,
    positives        BIGINT NOT NULL,
    ne_ref           DOUBLE PRECISION,
    ne_q             DOUBLE PRECISION,
    dne_pct          DOUBLE PRECISION,
    dne_pct_lo       DOUBLE PRECISION,
    dne_pct_hi       DOUBLE PRECISION,
    calibration_ref  DOUBLE PRECISION,
    calibration_q    DOUBLE PRECISION,
    mean_abs_diff    DOUBLE PRECISION,
    max_abs_diff     DOUBLE PRECISION,
    kl_gap_pct       DOUBLE PRECISION,
    PRIMARY KEY (model_id, logical_date, segment),
    FOREIGN KEY (model_id, logical_date) REFERENCES runs (model_id, logical_date)
);

CREATE TABLE layer_metrics (
    model_id          TEXT NOT NULL,
    logical_date      TEXT NOT NULL,
    layer             TEXT NOT NULL,
    layer_precision   TEXT NOT NULL,
    sqnr_db           DOUBLE PRECISION,
    saturation_below  DOUBLE PRECISION,
    saturation_above  DOUBLE PRECISION,
    PRIMARY KEY (model_id, logical_date, layer),
    FOREIGN KEY (model_id, logical_date) REFERENCES runs (model_id, logical_date)
);

CREATE TABLE decisions (
    model_id          TEXT NOT NULL,
    logical_date      TEXT NOT NULL,
    action            TEXT NOT NULL,
    reasons_json      TEXT NOT NULL DEFAULT '[]',
    new_plan_version  BIGINT,
    PRIMARY KEY (model_id, logical_date),
    FOREIGN KEY (model_id, logical_date) REFERENCES runs (model_id, logical_date)
);

CREATE TABLE alerts (
    model_id      TEXT NOT NULL,
    logical_date  TEXT NOT NULL,
    event         TEXT NOT NULL,
    channel       TEXT NOT NULL,
    recipients    TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    error         TEXT NOT NULL DEFAULT '',
    attempts      BIGINT NOT NULL DEFAULT 0,
    sent_at       TEXT,
    PRIMARY KEY (model_id, logical_date, event, channel)
);

-- Mergeable calibration histograms per layer and day (lpmon.calibrate), so a
-- recalibration can combine several days without re-scoring old traffic.
CREATE TABLE calibration_histograms (
    model_id      TEXT NOT NULL,
    logical_date  TEXT NOT NULL,
    layer         TEXT NOT NULL,
    state_json    TEXT NOT NULL,
    PRIMARY KEY (model_id, logical_date, layer)
);

-- The fallback search's best plan so far: a crash or timeout resumes from here.
CREATE TABLE fallback_progress (
    model_id        TEXT NOT NULL,
    logical_date    TEXT NOT NULL,
    step            BIGINT NOT NULL,
    best_plan_json  TEXT NOT NULL,
    state_json      TEXT NOT NULL DEFAULT '{}',
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (model_id, logical_date)
);
