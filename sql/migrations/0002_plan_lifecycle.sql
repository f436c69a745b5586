-- The plan lifecycle (lpmon.lifecycle): every promotion, who made it and what it
-- changed (for the cool-down and the history), and the layers a user pinned.

CREATE TABLE plan_events (
    model_id      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    logical_date  TEXT NOT NULL,
    origin        TEXT NOT NULL,
    forced        BIGINT NOT NULL DEFAULT 0,
    units_json    TEXT NOT NULL DEFAULT '[]',
    reason        TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    PRIMARY KEY (model_id, version),
    FOREIGN KEY (model_id, version) REFERENCES plans (model_id, version)
);

-- A pinned layer is served exactly as in the plan it was pinned from: lpmon
-- never changes its precision or ranges.
CREATE TABLE plan_pins (
    model_id    TEXT NOT NULL,
    layer       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    layer_json  TEXT NOT NULL,
    pinned_at   TEXT NOT NULL,
    PRIMARY KEY (model_id, layer)
);
