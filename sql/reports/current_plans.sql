-- The active plan of every model, with the day it was made for and why.
SELECT model_id, version, logical_date, reason, created_at
FROM plans
WHERE status = 'active'
ORDER BY model_id
