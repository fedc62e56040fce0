-- new_vs_existing: deals by customer type. A deal is an `existing` customer's when its account,
-- strictly before the deal's creation, had a deal won (status at as_of) or a paid non-refund
-- order (paid at or before as_of); otherwise `new`. deals count by creation period, won_deals
-- and won_amount by close period, both typed at creation.
WITH first_won AS (
    SELECT account_id, min(closed_at) AS first_won
    FROM deals WHERE status = 'won'
    GROUP BY account_id),
first_paid AS (
    SELECT account_id, min(paid_at) AS first_paid
    FROM cust_orders WHERE NOT refund AND paid_at IS NOT NULL
    GROUP BY account_id),
typed AS (
    SELECT d.created_at, d.closed_at, d.status, d.amount_base,
           CASE WHEN w.first_won < d.created_at OR p.first_paid < d.created_at
                THEN 'existing' ELSE 'new' END AS customer_type
    FROM deals d
    LEFT JOIN first_won w  ON w.account_id = d.account_id
    LEFT JOIN first_paid p ON p.account_id = d.account_id),
-- One row per created deal and one per won deal, each in its own period.
counted AS (
    SELECT {{period(created_at)}} AS period_start, customer_type, 1 AS created, 0 AS won, CAST(NULL AS DOUBLE) AS amount
    FROM typed
    UNION ALL
    SELECT {{period(closed_at)}}, customer_type, 0, 1, amount_base
    FROM typed WHERE status = 'won')
SELECT period_start, customer_type,
       CAST(sum(created) AS BIGINT) AS deals,
       CAST(sum(won) AS BIGINT)     AS won_deals,
       COALESCE(sum(amount), 0D)    AS won_amount
FROM counted
GROUP BY period_start, customer_type
