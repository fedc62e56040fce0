-- clv_model: the BG/NBD and Gamma-Gamma models fitted by maximum likelihood per
-- clv.segment_by group, on the customers' RFM summary (views_customers.sql: cust_rfm). The
-- fits run on the driver after the SQL (crm_kpi_spark.py: clv_model), which turns these rows
-- into one row per segment, model and parameter.
-- post: clv_model
SELECT account_id, segment, frequency, recency, t, monetary_value
FROM cust_rfm
