-- The relay is woken after the commit of a transaction that wrote events (chassis/outbox.py,
-- _relay_waker), no longer by a NOTIFY queued inside it: a transaction that queued a notification
-- holds a cluster-wide lock from its pre-commit until its commit is flushed, so these commits ran one
-- at a time across every service.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
