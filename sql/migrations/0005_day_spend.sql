-- What a day spent on its verdict (lpmon.pipeline.adaptive): the examples it
-- scored over its looks, how many looks it took, and why it stopped
-- (decided, cap: max_sample_size scored, traffic_exhausted: the day's rows
-- scored). NULL on days that scored nothing, and on days run before this.
ALTER TABLE runs ADD COLUMN examples_scored BIGINT;
ALTER TABLE runs ADD COLUMN looks BIGINT;
ALTER TABLE runs ADD COLUMN stop_reason TEXT CHECK (stop_reason IN ('decided', 'cap', 'traffic_exhausted'));
