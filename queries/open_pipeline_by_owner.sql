-- Current open pipeline per owner straight from the store (current status fields, not as-of).
SELECT owner_id,
       COUNT(*) AS open_deals,
       SUM(amount_base) AS open_amount
FROM opportunities
WHERE status = 'open'
GROUP BY owner_id
ORDER BY open_amount DESC, owner_id
