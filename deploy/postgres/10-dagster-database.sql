-- Run once by the postgres image on an empty data directory: the Dagster instance keeps its runs
-- and event logs in a database of its own, next to the pipeline's `videoqa` database.
CREATE DATABASE dagster OWNER videoqa;
\connect videoqa
CREATE EXTENSION IF NOT EXISTS vector;
