-- Breaks blue: blue still reads orders.note. The expand/contract way: add `remark`, write both
-- from green, backfill, and drop `note` in a later release.
SET lock_timeout = '5s';
SET statement_timeout = '60s';
ALTER TABLE orders RENAME COLUMN note TO remark;
