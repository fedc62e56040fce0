-- stage_duration_survival: the Kaplan-Meier table of time in stage behind stage_duration, per
-- non-terminal stage, all and by owner_id: the event table stage_km_t (views_funnel.sql: one
-- row per distinct visit duration with at_risk, events, censored); the entry point's
-- `kaplan_meier` step adds S(t) and its exponential Greenwood (log-log) 95% band.
-- post: kaplan_meier
SELECT pipeline, stage, dimension, dimension_value, t_days, at_risk, events, censored
FROM stage_km_t
