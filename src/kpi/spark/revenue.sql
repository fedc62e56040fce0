-- revenue: order revenue by period of ordered_at, all and by region and channel (one grouping
-- set each). A refund counts -|amount_base| in its own period and is not an order; an order is
-- new-customer revenue when it falls in its account's first-order period (refunds of an
-- account without any order: recurring). customers counts distinct accounts of non-refund
-- orders.
WITH flagged AS (
    SELECT o.*,
           COALESCE(min(CASE WHEN NOT refund THEN period_start END) OVER (PARTITION BY account_id) = period_start,
                    false) AS is_new
    FROM cust_orders o)
SELECT period_start, dimension, dimension_value, orders, revenue, paid, unpaid, overdue, refunds, refunded,
       customers, revenue / NULLIF(CAST(customers AS DOUBLE), 0D) AS revenue_per_customer,
       new_customer_revenue, recurring_revenue
FROM (
    SELECT period_start,
           CASE WHEN grouping(region) = 0 THEN 'region'
                WHEN grouping(channel) = 0 THEN 'channel' ELSE 'all' END AS dimension,
           CASE WHEN grouping(region) = 0 THEN region
                WHEN grouping(channel) = 0 THEN channel END AS dimension_value,
           count_if(NOT refund)                                                            AS orders,
           COALESCE(sum(amt), 0D)                                                          AS revenue,
           COALESCE(sum(CASE WHEN NOT refund AND paid_at IS NOT NULL THEN amt END), 0D)    AS paid,
           COALESCE(sum(CASE WHEN NOT refund AND paid_at IS NULL THEN amt END), 0D)        AS unpaid,
           COALESCE(sum(CASE WHEN NOT refund AND paid_at IS NULL AND due_at < {{as_of_ts}}
                             THEN amt END), 0D)                                            AS overdue,
           count_if(refund)                                                                AS refunds,
           COALESCE(sum(CASE WHEN refund THEN -amt END), 0D)                               AS refunded,
           count(DISTINCT CASE WHEN NOT refund THEN account_id END)                        AS customers,
           COALESCE(sum(CASE WHEN is_new THEN amt END), 0D)                                AS new_customer_revenue,
           COALESCE(sum(CASE WHEN NOT is_new THEN amt END), 0D)                            AS recurring_revenue
    FROM flagged
    GROUP BY GROUPING SETS ((period_start), (period_start, region), (period_start, channel))
) g
