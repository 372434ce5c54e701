-- depends: 0001_rights
-- What the rights service's metrics report for alerting (README, runbook): how many
-- requests are open, and how many of those are past their statutory deadline, across
-- every tenant. Counts only: no tenant, no request, no participant leaves the function.
CREATE INDEX requests_open_deadline ON requests (deadline) WHERE status = 'in_progress';

CREATE FUNCTION open_requests_summary(at timestamptz, OUT open bigint, OUT overdue bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT count(*), count(*) FILTER (WHERE deadline < at) FROM requests WHERE status = 'in_progress'
$$;
