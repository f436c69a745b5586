-- Alerts not (yet) delivered, newest first.
SELECT model_id, logical_date, event, channel, recipients, status, error, attempts
FROM alerts
WHERE status <> 'sent'
ORDER BY logical_date DESC, model_id, event
