-- Expand: blue does not notice either change (a nullable column, a new table).
SET lock_timeout = '5s';
SET statement_timeout = '60s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS gift_wrap boolean;
CREATE TABLE IF NOT EXISTS coupons (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL,
    percent_off integer NOT NULL DEFAULT 10
);
