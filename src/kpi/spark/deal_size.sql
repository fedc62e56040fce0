-- deal_size: deals won in each period (status at as_of, close cut in the configured timezone),
-- all and by owner_id and pipeline (one grouping set each): count, mean and median base amount, and the
-- bucket mix small < first threshold <= medium < last threshold <= large. A deal without a
-- base amount counts in won_deals but in no bucket (a null comparison counts nowhere); with a
-- single threshold there is no medium.
SELECT period_start,
       CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' WHEN grouping(pipeline) = 0 THEN 'pipeline' ELSE 'all' END AS dimension,
       CASE WHEN grouping(owner_id) = 0 THEN owner_id WHEN grouping(pipeline) = 0 THEN pipeline END AS dimension_value,
       count(*) AS won_deals,
       avg(amount_base) AS mean_amount,
       percentile(amount_base, 0.5D) AS median_amount,
       count_if(amount_base < lo) AS small,
       count_if(amount_base >= lo AND amount_base < hi) AS medium,
       count_if(amount_base >= hi) AS large
FROM (SELECT period_start, owner_id, pipeline, amount_base,
             {{deal_size_medium_from}} AS lo,
             {{deal_size_large_from}} AS hi
      FROM closed
      WHERE status = 'won') w
GROUP BY GROUPING SETS ((period_start), (period_start, owner_id), (period_start, pipeline))
