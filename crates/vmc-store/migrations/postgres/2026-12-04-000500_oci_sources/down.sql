ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_oci_allow;
ALTER TABLE subscriptions DROP COLUMN oci_allow;
ALTER TABLE subscriptions DROP COLUMN kind;
