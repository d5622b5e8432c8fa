-- The W3C trace context of the event that made a delivery due, so its sends join the allocation's trace.
ALTER TABLE deliveries ADD COLUMN traceparent text;
