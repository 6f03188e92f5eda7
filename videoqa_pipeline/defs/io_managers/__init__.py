"""IO managers: where table assets live (PostgreSQL tables, or Parquet objects on S3)."""
