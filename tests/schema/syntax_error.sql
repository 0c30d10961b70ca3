-- a syntax error on line 2
ALTER TABLE orders ADD COLUMN ok text;
ALTER TABLE orders DRP COLUMN note;
