-- clv_historical: each account with a non-refund order at or before as_of, its first and last
-- order dates, orders, revenue net of refunds, mean order value, tenure and acquisition cohort,
-- and the source of its first converted lead (see views_customers.sql: cust_values).
SELECT account_id, first_order_date, last_order_date, orders, revenue, mean_order_value,
       tenure_days, cohort_start, source
FROM cust_values
