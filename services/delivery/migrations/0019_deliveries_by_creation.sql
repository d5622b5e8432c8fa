-- The delivery charts count the deliveries created in a period (GET /v1/deliveries/stats): an index on
-- the creation time keeps that a range read instead of a scan of every delivery ever made.
CREATE INDEX deliveries_created ON deliveries (created_at);
