-- depends: users_0001_users
-- Customers' birthdays, kept only with their consent (SetCustomerBirthday), for the BIRTHDAY
-- earning rule. Personal data, so nothing in clear: the date ("1990-12-06", "--12-06" without
-- a year) is an AES-256-GCM ciphertext bound to (merchant, customer), and the day celebrated is
-- found through a keyed blind index of "MM-DD" (per merchant), which is all ListBirthdays
-- needs. customer_id is the storefront's customer (Shopify's id), as Points' ledgers name it.
CREATE TABLE customer_birthdays (
    merchant_id         text        NOT NULL,
    customer_id         text        NOT NULL,
    -- Its own id: the audit row names it, not the customer (whose id an erasure removes).
    birthday_id         uuid        NOT NULL UNIQUE,
    -- Keyset position of ListBirthdays.
    seq                 bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    birthday_ciphertext bytea       NOT NULL,
    day_index           bytea       NOT NULL,
    consent_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_id)
);
CREATE INDEX customer_birthdays_day ON customer_birthdays (merchant_id, day_index, seq);

CREATE TRIGGER customer_birthdays_audit AFTER INSERT OR UPDATE OR DELETE ON customer_birthdays
    FOR EACH ROW EXECUTE FUNCTION audit_row_change(
        'birthday_id', '', 'customer_id', 'birthday_ciphertext', 'day_index');
