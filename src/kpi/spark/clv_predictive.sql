-- clv_predictive: each customer's RFM summary (views_customers.sql: cust_rfm) with its
-- P(alive), expected purchases over the horizon, expected spend per purchase and discounted CLV
-- from its segment's BG/NBD and Gamma-Gamma fits, computed on the driver after the SQL
-- (crm_kpi_spark.py: clv_predictive; the fits are clv_model's, made once per run).
-- post: clv_predictive
SELECT account_id, segment, frequency, recency, t, monetary_value
FROM cust_rfm
