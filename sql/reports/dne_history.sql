-- Daily dNE with its interval, status and decision for one model (the model_id parameter), oldest first,
-- and what each day spent: examples scored, looks, why it stopped.
SELECT r.logical_date, r.status, d.action, m.dne_pct, m.dne_pct_lo, m.dne_pct_hi, m.kl_gap_pct,
       r.plan_version, d.new_plan_version, r.examples_scored, r.looks, r.stop_reason
FROM runs r
LEFT JOIN run_metrics m ON m.model_id = r.model_id AND m.logical_date = r.logical_date AND m.segment = ''
LEFT JOIN decisions d ON d.model_id = r.model_id AND d.logical_date = r.logical_date
WHERE r.model_id = :model_id
ORDER BY r.logical_date
