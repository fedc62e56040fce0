-- loss_reasons: deals lost in each period (status at as_of, close cut in the configured
-- timezone) by loss_reason, a null reason reported as 'unspecified': lost deals, lost amount in
-- base currency (0 when no amount is known) and share of the period's lost deals.
SELECT period_start, loss_reason, lost, lost_amount,
       CAST(lost AS DOUBLE) / NULLIF(sum(lost) OVER (PARTITION BY period_start), 0) AS share
FROM (
    SELECT period_start, COALESCE(loss_reason, 'unspecified') AS loss_reason,
           count(*) AS lost, COALESCE(sum(amount_base), 0D) AS lost_amount
    FROM closed
    WHERE status = 'lost'
    GROUP BY period_start, COALESCE(loss_reason, 'unspecified')
) g
