-- Serving's copy of each model's active plan (plans_dir/<model>/active.json):
-- what the last export attempt wrote or failed to write, so that the store
-- and serving never disagree silently (lpmon.export).
CREATE TABLE exports (
    model_id          TEXT PRIMARY KEY REFERENCES models (model_id),
    target            TEXT NOT NULL,
    version           BIGINT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    serving_version   BIGINT,
    error             TEXT NOT NULL DEFAULT '',
    updated_at        TEXT NOT NULL
);
