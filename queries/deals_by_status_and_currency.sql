-- Deals by status and currency in the store: a quick sanity check after an ingest.
SELECT status, currency, COUNT(*) AS deals, SUM(amount_base) AS amount_base
FROM opportunities
GROUP BY status, currency
ORDER BY status, currency
