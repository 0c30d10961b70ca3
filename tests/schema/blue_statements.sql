-- What blue runs, as pg_stat_statements keeps it ($n for every value).
SELECT id, qty, total, status, note FROM orders WHERE customer_id = $1;
INSERT INTO orders (customer_id, total, status) VALUES ($1, $2, $3);
UPDATE orders SET qty = $1 WHERE id = $2;
INSERT INTO customers (email, name) VALUES ($1, $2);
SELECT name FROM customers WHERE id = $1;
SELECT total FROM order_totals WHERE customer_id = $1;
SELECT order_total($1);
