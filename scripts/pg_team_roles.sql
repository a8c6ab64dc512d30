-- Least-privilege roles for a team store on PostgreSQL (docs/deploying.md).
--
-- Run it as the role that owns the store (the evaluator's: it created the tables with `alembic upgrade head`),
-- connected to the store's database, after every upgrade:
--     psql "$EVAL_DB_URL_PSQL" -f scripts/pg_team_roles.sql
-- then give the two roles passwords (ALTER ROLE evalbench_read PASSWORD '...'), kept out of URLs in links and
-- logs: the dashboard reads them from its environment or secrets.
--
--   evalbench_read    the dashboard's read URL: SELECT on every table, nothing else.
--   evalbench_review  the dashboard's write URL: SELECT everywhere, and writes only to what the dashboard
--                     writes: reviewers' verdicts (annotations), saved views (review queues) and pass thresholds.
-- The evaluator keeps its own (owner) role: it alone writes datasets, runs, results, scores and judgments, and
-- migrates the schema.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'evalbench_read') THEN
        CREATE ROLE evalbench_read LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'evalbench_review') THEN
        CREATE ROLE evalbench_review LOGIN;
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO evalbench_read, evalbench_review', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO evalbench_read, evalbench_review;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM evalbench_read, evalbench_review;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO evalbench_read, evalbench_review;
-- Tables a later revision adds are readable too (revisions run as the owner, so their defaults apply).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO evalbench_read, evalbench_review;

GRANT INSERT, UPDATE, DELETE ON annotations, saved_views, pass_thresholds TO evalbench_review;
GRANT USAGE ON SEQUENCE annotations_id_seq, saved_views_id_seq, pass_thresholds_id_seq TO evalbench_review;
