-- Runs once, when the compose Postgres volume is first initialised
-- (/docker-entrypoint-initdb.d). Same DDL as deploy/local/demo.sh: the outbox table
-- exactly as Debezium's Outbox Event Router expects it.
CREATE TABLE IF NOT EXISTS outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregatetype varchar(255) NOT NULL,
  aggregateid varchar(255) NOT NULL,
  type varchar(255) NOT NULL,
  payload jsonb,
  timestamp timestamptz NOT NULL DEFAULT now(),
  tracingspancontext varchar(512));
