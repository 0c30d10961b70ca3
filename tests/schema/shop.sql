-- Blue's database in the schema tests: the sandbox's shop (bgkit/sandbox/data/shop.sql), and a
-- view and a function that blue also reads.
CREATE VIEW order_totals AS
    SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;
CREATE FUNCTION order_total(bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT total FROM orders WHERE id = $1 $$;
