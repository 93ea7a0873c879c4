-- sqlite-workload.sql -- a deterministic in-memory database of ~80 MB and queries on it.
--
-- Run with `sqlite3 :memory: < sqlite-workload.sql`: every page of the
-- database lives in the heap.  Values derive from the row number only (no
-- random()), so the output is the same on every run.
PRAGMA cache_size = -400000;
PRAGMA temp_store = MEMORY;

CREATE TABLE customers (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	city TEXT NOT NULL,
	score INTEGER NOT NULL
);
CREATE TABLE orders (
	id INTEGER PRIMARY KEY,
	customer INTEGER NOT NULL REFERENCES customers(id),
	item TEXT NOT NULL,
	quantity INTEGER NOT NULL,
	price INTEGER NOT NULL,
	note TEXT
);

BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50000)
INSERT INTO customers
SELECT x,
       printf('customer-%06d-%08x', x, (x * 2654435761) % 4294967296),
       printf('city-%03d', (x * 7919) % 499),
       (x * 104729) % 10007
FROM n;

WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 400000)
INSERT INTO orders
SELECT x,
       1 + (x * 48271) % 50000,
       printf('item-%05d', (x * 16807) % 25013),
       1 + (x * 31) % 17,
       100 + (x * 997) % 99901,
       printf('%s/%s/%d', substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 7),
              hex(x * 40503), x % 1000) || substr(printf('%.80c', '*'), 1, x % 80)
FROM n;
COMMIT;

CREATE INDEX orders_customer ON orders(customer);
CREATE INDEX orders_item ON orders(item, price);
CREATE INDEX customers_city ON customers(city, score);

SELECT 'customers', count(*), sum(score), min(name), max(name) FROM customers;
SELECT 'orders', count(*), sum(quantity), sum(quantity * price), sum(length(note)) FROM orders;

-- Aggregates over a join, sorted.
SELECT c.city, count(*) AS n, sum(o.quantity * o.price) AS revenue, max(o.price)
FROM orders o JOIN customers c ON c.id = o.customer
GROUP BY c.city ORDER BY revenue DESC, c.city LIMIT 25;

-- Top customers: a sort over a large intermediate result.
SELECT o.customer, c.name, count(*) AS n, sum(o.quantity) AS q
FROM orders o JOIN customers c ON c.id = o.customer
GROUP BY o.customer ORDER BY q DESC, o.customer LIMIT 25;

-- Index use and string functions.
SELECT item, count(*), avg(price), group_concat(DISTINCT quantity)
FROM orders WHERE item BETWEEN 'item-01000' AND 'item-01010'
GROUP BY item ORDER BY item;

-- A sort of every row without an index (a large sorter in memory).
SELECT sum(rn * price) % 1000000007 FROM (
	SELECT row_number() OVER (ORDER BY note, id) AS rn, price FROM orders);

-- Updates and deletes, then the totals again.
BEGIN;
UPDATE orders SET note = upper(note) || note WHERE id % 5 = 0;
DELETE FROM orders WHERE id % 7 = 0;
COMMIT;
SELECT 'after', count(*), sum(length(note)), sum(price) FROM orders;
SELECT city, count(*) FROM customers WHERE score > 5000 GROUP BY city ORDER BY 2 DESC, 1 LIMIT 10;
PRAGMA integrity_check;
