-- Blue's database in the schema tests: a shop's customers and orders.
CREATE TYPE order_status AS ENUM ('new', 'paid', 'cancelled');
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    name varchar(50)
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    qty integer NOT NULL DEFAULT 1,
    total numeric(10, 2),
    status order_status NOT NULL DEFAULT 'new',
    note text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW order_totals AS
    SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;
CREATE FUNCTION order_total(bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT total FROM orders WHERE id = $1 $$;
INSERT INTO customers (email, name) VALUES
    ('ada@example.com', 'Ada'), ('bob@example.com', NULL), ('cy@example.com', 'Cy');
INSERT INTO orders (customer_id, qty, total, status, note) VALUES
    (1, 2, 20.00, 'paid', 'gift'), (2, 0, 0.00, 'cancelled', NULL), (3, 1, 9.50, 'new', NULL);
