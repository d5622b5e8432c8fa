"""Signed webhooks for downstream systems that do not read Kafka (DESIGN.md §5 "Webhooks"): `domain`
(rules, signature, address policy), `repository` (SQL), `handlers` (status topics in), `sending`
(the workers), `transport` (the guarded HTTP client), `api` (HTTP in)."""
