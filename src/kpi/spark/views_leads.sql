-- The leads family's shared views: the leads known at as_of and each lead's conversion instant.

-- Leads created at or before as_of; their later milestones (qualified, disqualified, own
-- converted_at) are nulled when after as_of, as not yet known.
CACHE TABLE leads_asof AS
SELECT lead_id, created_at, source, campaign_id, owner_id, region, account_id,
       CASE WHEN qualified_at    <= {{as_of_ts}} THEN qualified_at    END AS qualified_at,
       CASE WHEN disqualified_at <= {{as_of_ts}} THEN disqualified_at END AS disqualified_at,
       CASE WHEN converted_at    <= {{as_of_ts}} THEN converted_at    END AS converted_at
FROM leads_all
WHERE created_at <= {{as_of_ts}};

-- Each lead's conversion instant by the configured lead_converted_event (null when it did not
-- convert at or before as_of), with days to it (fractional, negative when the conversion is
-- dated before the lead):
-- - won: the earliest close of the lead's deals won at as_of;
-- - opportunity: the earlier of the lead's own converted_at and its first opportunity's
--   created_at (either alone converts it);
-- - paid_order: the earliest paid_at (known at as_of) of a non-refund order of the lead's
--   account at or after the lead's creation (an order counts once ordered at or before as_of).
-- Only the branch of the configured event is evaluated (the others are filtered out by a
-- constant predicate).
CACHE TABLE leads_conv AS
WITH won_first AS (
    SELECT o.lead_id, min(d.closed_at) AS first_at
    FROM deals d
    JOIN opps o ON o.opportunity_id = d.opportunity_id
    WHERE {{lead_converted_event}} = 'won' AND d.status = 'won' AND o.lead_id IS NOT NULL
    GROUP BY o.lead_id),
opp_first AS (
    SELECT lead_id, min(created_at) AS first_at
    FROM opps
    WHERE {{lead_converted_event}} = 'opportunity' AND lead_id IS NOT NULL
    GROUP BY lead_id),
paid_orders AS (
    SELECT account_id, paid_at
    FROM orders_all
    WHERE {{lead_converted_event}} = 'paid_order'
      AND ordered_at <= {{as_of_ts}} AND paid_at <= {{as_of_ts}}
      AND account_id IS NOT NULL AND NOT COALESCE(is_refund, false)),
-- Keyed by the lead's (lead_id, account_id, created_at): the first paid order per lead row.
paid_first AS (
    SELECT l.lead_id, l.account_id, l.created_at, min(p.paid_at) AS first_at
    FROM leads_asof l
    JOIN paid_orders p ON p.account_id = l.account_id AND p.paid_at >= l.created_at
    GROUP BY l.lead_id, l.account_id, l.created_at),
conv AS (
    SELECT l.*,
           CASE {{lead_converted_event}}
               WHEN 'won'         THEN w.first_at
               WHEN 'opportunity' THEN CASE WHEN l.converted_at IS NULL THEN f.first_at
                                            WHEN f.first_at IS NULL     THEN l.converted_at
                                            ELSE least(l.converted_at, f.first_at) END
               WHEN 'paid_order'  THEN p.first_at
           END AS conv_at
    FROM leads_asof l
    LEFT JOIN won_first w ON w.lead_id = l.lead_id
    LEFT JOIN opp_first f ON f.lead_id = l.lead_id
    LEFT JOIN paid_first p ON p.lead_id = l.lead_id AND p.account_id = l.account_id
                          AND p.created_at = l.created_at)
SELECT lead_id, created_at, source, campaign_id, owner_id, region, qualified_at, disqualified_at,
       CASE WHEN conv_at <= {{as_of_ts}} THEN conv_at END AS converted_at,
       CASE WHEN conv_at <= {{as_of_ts}}
            THEN (unix_micros(conv_at) - unix_micros(created_at)) / 8.64e10 END AS days
FROM conv;
