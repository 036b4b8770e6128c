-- The sandbox answers small requests (a page of at most 500 rows), but a matter listing's
-- estimated cost (two title subqueries per row) is high enough for PostgreSQL to JIT-compile
-- it: about a second per `GET /matters` page, against some 20 ms of execution, which made the
-- stand-in far slower than the API it stands for (`scripts/bench import`). Its database runs
-- without JIT; plans and answers are unchanged.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
END
$$;
