-- lost_reengagement: deals lost at as_of whose re-engagement window (lost_at + min_days ..
-- lost_at + max_days, lost_at the local date of the loss) is open on as_of's date (`due`) or
-- opens within the next 30 days (`upcoming`); other lost deals are left out.
SELECT opportunity_id, account_id, owner_id, loss_reason, lost_at, follow_up_from, follow_up_until, status
FROM (
    SELECT *,
           CASE WHEN follow_up_from <= {{as_of_date}} AND follow_up_until >= {{as_of_date}} THEN 'due'
                WHEN follow_up_from > {{as_of_date}} AND follow_up_from <= date_add({{as_of_date}}, 30) THEN 'upcoming'
           END AS status
    FROM (
        SELECT opportunity_id, account_id, owner_id, loss_reason, lost_at,
               date_add(lost_at, {{reengagement_min_days}}) AS follow_up_from,
               date_add(lost_at, {{reengagement_max_days}}) AS follow_up_until
        FROM (SELECT *, to_date(closed_at) AS lost_at FROM deals WHERE status = 'lost') l
    ) w
) s
WHERE status IS NOT NULL
