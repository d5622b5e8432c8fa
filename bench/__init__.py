"""`python -m bench`: our messaging layer against raw Kafka and Postgres, measured in one run."""
