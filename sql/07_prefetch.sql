--
-- 07_prefetch: row-by-row gnn_predict calls batched by QuiverPrefetch.
--
-- A query that calls gnn_predict on a column gets a QuiverPrefetch node
-- above the node that projected the call: it reads blocks of 1, 2, 4, ...
-- rows (up to quiver.prefetch_rows) and asks the engine for each block's ids
-- in one request.  Every result must be what the unbatched calls give
-- (quiver.prefetch_rows = 0 plans without the node), errors included.
--
\set SHOW_CONTEXT never

-- EXPLAIN ANALYZE without the sizes that depend on the platform.
CREATE FUNCTION explain_rows(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	ln		text;
BEGIN
	FOR ln IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || query LOOP
		RETURN NEXT regexp_replace(ln, 'Memory( Usage)?: \d+kB', 'Memory\1: NkB', 'g');
	END LOOP;
END $$;

-- A ring with chords, 300 nodes, features from the id; full neighbourhoods,
-- so predictions are deterministic and comparable call by call.
CREATE TABLE ring_node AS
	SELECT i::bigint AS id, ARRAY[(i % 7)::real, ((i * 3) % 11)::real] AS feat
	FROM generate_series(0, 299) AS i;
CREATE TABLE ring_edge AS
	SELECT i::bigint AS src, ((i + 1) % 300)::bigint AS dst FROM generate_series(0, 299) AS i
	UNION ALL
	SELECT i::bigint, ((i * 7) % 300)::bigint FROM generate_series(0, 299) AS i;
SELECT nodes, edges FROM gnn_create_graph('ring', 'SELECT src, dst FROM ring_edge',
										  'SELECT id, feat FROM ring_node');
SELECT gnn_create_model('ring_all', 'ring', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'));
SELECT gnn_create_model('ring_gcn', 'ring', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn2'));

-- The plan: the scan projects the column, QuiverPrefetch the call.
EXPLAIN (COSTS OFF) SELECT id, gnn_predict('ring_all', id) FROM ring_node;
EXPLAIN (VERBOSE, COSTS OFF)
	SELECT id, (gnn_predict('ring_all', id))[1] AS p FROM ring_node WHERE id % 2 = 0;

-- 300 rows in blocks of 1, 2, 4, ..., 128, then the last 45: 9 blocks, one
-- request each, every id fetched once.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT id, gnn_predict('ring_all', id) FROM ring_node;
-- quiver.prefetch_rows caps the block: 1+2+4+8+16 = 31, then 269 / 16 -> 17.
SET quiver.prefetch_rows = 16;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT id, gnn_predict('ring_all', id) FROM ring_node;
RESET quiver.prefetch_rows;
-- An id asked for by many rows is fetched once per block: ids 0,0,0,1,1,1,...
-- in the same 9 blocks make 1+1+2+3+6+11+22+43+15 = 104 distinct ids.
CREATE TEMP TABLE thrice AS SELECT (i / 3)::bigint AS id FROM generate_series(0, 299) AS i;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT gnn_predict('ring_all', id) FROM thrice;
-- gnn_embed and gnn_classify are batched the same way.  Per block, one
-- request for the model's output (gnn_predict and gnn_classify share it),
-- one per embedding layer asked (NULL and 1 are asked apart): 9 blocks x 3
-- requests, 900 ids.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT id, gnn_predict('ring_all', id), (gnn_classify('ring_all', id)).label,
		   gnn_embed('ring_all', id), gnn_embed('ring_all', id, 1)
	FROM ring_node;
-- An embedding layer given by an expression of the row is left to the calls.
EXPLAIN (COSTS OFF) SELECT gnn_embed('ring_all', id, (id % 2)::int) FROM ring_node;
-- A bad layer is left to the calls too, which raise their own error.
SELECT count(gnn_embed('ring_all', id, 2)) FROM ring_node;
-- An id computed by an expression is left to the calls: computing it ahead
-- could raise an error for a row that is never reached.
EXPLAIN (COSTS OFF) SELECT gnn_predict('ring_all', id % 3) FROM ring_node;

-- The same queries, batched and not; each pair must agree row for row.
CREATE TEMP TABLE q (name text, sql text);
INSERT INTO q VALUES
	('plain', 'SELECT id, gnn_predict(''ring_all'', id) AS p FROM ring_node'),
	('element', 'SELECT id, (gnn_predict(''ring_all'', id))[2] AS p FROM ring_node'),
	('two models', 'SELECT id, gnn_predict(''ring_all'', id) || gnn_predict(''ring_gcn'', id) AS p FROM ring_node'),
	('filter', 'SELECT id, gnn_predict(''ring_all'', id) AS p FROM ring_node WHERE (gnn_predict(''ring_all'', id))[1] > 0'),
	('integer ids', 'SELECT i, gnn_predict(''ring_all'', i) AS p FROM generate_series(0, 299) AS i'),
	('join', 'SELECT e.src, e.dst, gnn_predict(''ring_gcn'', e.dst) AS p FROM ring_edge e JOIN ring_node n ON n.id = e.src WHERE n.id < 50'),
	('lateral', 'SELECT v.x, s.p FROM generate_series(0, 40, 10) AS v(x), LATERAL (SELECT gnn_predict(''ring_all'', id) AS p FROM ring_node WHERE id BETWEEN v.x AND v.x + 3) s'),
	('order limit', 'SELECT id, gnn_predict(''ring_all'', id) AS p FROM ring_node ORDER BY id DESC LIMIT 7'),
	('lateral limit', 'SELECT v.x, s.id, s.p FROM generate_series(1, 4) AS v(x), LATERAL (SELECT id, gnn_predict(''ring_all'', id) AS p FROM ring_node ORDER BY id LIMIT v.x OFFSET v.x) s'),
	('nulls', 'SELECT id, gnn_predict(''ring_all'', CASE WHEN id % 3 = 0 THEN NULL ELSE id END) AS p FROM ring_node'),
	('null column', 'SELECT n.id, gnn_predict(''ring_all'', m.id) AS p FROM ring_node n LEFT JOIN ring_node m ON m.id = n.id AND n.id % 2 = 0'),
	('aggregate', 'SELECT count(*), sum((gnn_predict(''ring_all'', id))[1]), max((gnn_predict(''ring_gcn'', id))[2]) FROM ring_node'),
	('group by', 'SELECT id % 5 AS g, avg((gnn_predict(''ring_all'', id))[2]) AS a FROM ring_node GROUP BY 1 HAVING min((gnn_predict(''ring_all'', id))[1]) > -1e9'),
	('top by score', 'SELECT id FROM ring_node ORDER BY (gnn_predict(''ring_all'', id))[1] DESC, id LIMIT 5'),
	('case', 'SELECT id, CASE WHEN (gnn_predict(''ring_all'', id))[1] > 0 THEN ''positive'' WHEN (gnn_predict(''ring_gcn'', id))[1] > 0 THEN ''gcn'' ELSE ''other'' END AS label FROM ring_node'),
	('case in aggregate', 'SELECT sum(CASE WHEN (gnn_predict(''ring_all'', id))[1] > 0 THEN 1 ELSE 0 END), count(*) FILTER (WHERE coalesce((gnn_predict(''ring_gcn'', id))[1], 0) > 0) FROM ring_node'),
	('filtered aggregate', 'SELECT count(*) FILTER (WHERE (gnn_predict(''ring_all'', id))[1] > 0) FROM ring_node');
CREATE FUNCTION q_rows(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format('SELECT t::text FROM (%s) t', query);
END $$;
CREATE TEMP TABLE batched AS SELECT name, q_rows(sql) AS r FROM q;
SET quiver.prefetch_rows = 0;
CREATE TEMP TABLE unbatched AS SELECT name, q_rows(sql) AS r FROM q;
RESET quiver.prefetch_rows;
SELECT name, (SELECT count(*) FROM batched b WHERE b.name = q.name) AS n_rows,
	   (SELECT count(*) FROM ((SELECT r FROM batched b WHERE b.name = q.name
							   EXCEPT ALL SELECT r FROM unbatched u WHERE u.name = q.name)
							  UNION ALL
							  (SELECT r FROM unbatched u WHERE u.name = q.name
							   EXCEPT ALL SELECT r FROM batched b WHERE b.name = q.name)) d) AS differ
	FROM q ORDER BY name;
-- and the batched run really was batched
SELECT explain_rows($$SELECT n.id, gnn_predict('ring_all', m.id) AS p
	FROM ring_node n LEFT JOIN ring_node m ON m.id = n.id AND n.id % 2 = 0 WHERE n.id < 20$$);

-- Over a join, the join's projection moves up.
EXPLAIN (VERBOSE, COSTS OFF)
	SELECT e.src, gnn_predict('ring_gcn', e.dst) FROM ring_edge e JOIN ring_node n ON n.id = e.src;
-- A point lookup still makes one request.
CREATE INDEX ON ring_node (id);
SET enable_seqscan = off;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT gnn_predict('ring_all', id) FROM ring_node WHERE id = 17;
RESET enable_seqscan;
DROP INDEX ring_node_id_idx;

-- A LIMIT right above hands QuiverPrefetch its count and offset: reading
-- ahead stops where the limit does, and a sort below keeps its bound (top-N) ...
SELECT explain_rows($$SELECT id, gnn_predict('ring_all', id) FROM ring_node ORDER BY id DESC LIMIT 3$$);
-- ... so a filter that would fail on the 7th row is never run on it ...
SELECT id, (gnn_predict('ring_all', id))[1] > 0 AS pos FROM ring_node WHERE 10 / (6 - id) > -100 LIMIT 4;
-- ... and rows skipped by an OFFSET are still projected, with their calls.
SELECT explain_rows($$SELECT id, gnn_predict('ring_all', id) FROM ring_node ORDER BY id LIMIT 2 OFFSET 3$$);
CREATE TEMP TABLE unknown_in_offset AS
	SELECT i AS pos, CASE WHEN i = 2 THEN 99999 ELSE i END::bigint AS id FROM generate_series(1, 10) AS i;
SELECT pos, gnn_predict('ring_all', id) IS NOT NULL FROM unknown_in_offset ORDER BY pos LIMIT 2 OFFSET 3;
SET quiver.prefetch_rows = 0;
SELECT pos, gnn_predict('ring_all', id) IS NOT NULL FROM unknown_in_offset ORDER BY pos LIMIT 2 OFFSET 3;
RESET quiver.prefetch_rows;
-- Filters keep their order: the scan keeps those before the first that calls
-- gnn_predict, the rest run above it in the planner's order.  gnn_predict
-- costs 10 operators, so cheap filters come first ...
EXPLAIN (COSTS OFF) SELECT id FROM ring_node
	WHERE (gnn_predict('ring_all', id))[1] > 0 AND id % 2 = 0 AND id < 50;
SELECT count(*) FROM ring_node WHERE (gnn_predict('ring_all', id))[1] > 0 AND id % 2 = 0 AND id < 50;
-- ... but row security policies and security barriers come before any user
-- filter, whatever it costs: a leaky function sees only the visible rows.
CREATE TABLE acct AS SELECT id, 'secret ' || id AS secret FROM ring_node WHERE id < 6;
ALTER TABLE acct ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON acct USING ((gnn_predict('ring_all', id))[1] > (SELECT (gnn_predict('ring_all', 2))[1]));
CREATE ROLE prefetch_reader;
GRANT SELECT ON acct TO prefetch_reader;
GRANT USAGE ON SCHEMA public TO prefetch_reader;
CREATE FUNCTION leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN
	RAISE NOTICE 'leak sees %', $1;
	RETURN true;
END $$;
SET ROLE prefetch_reader;
SELECT count(*) AS visible FROM acct WHERE leak(secret);
SET quiver.prefetch_rows = 0;
SELECT count(*) AS visible FROM acct WHERE leak(secret);
RESET quiver.prefetch_rows;
RESET ROLE;
DROP TABLE acct;
DROP FUNCTION leak(text);
REVOKE USAGE ON SCHEMA public FROM prefetch_reader;
DROP ROLE prefetch_reader;

-- Aggregates over predictions: QuiverPrefetch under the Aggregate computes
-- the calls as extra input columns, which the aggregates read.
EXPLAIN (VERBOSE, COSTS OFF)
	SELECT id % 5 AS g, avg((gnn_predict('ring_all', id))[2]) FROM ring_node GROUP BY 1;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT count(*), sum((gnn_predict('ring_all', id))[1]) FROM ring_node;

-- The most likely nodes: every row's prediction is a sort key, batched.
SELECT explain_rows($$SELECT id FROM ring_node ORDER BY (gnn_predict('ring_all', id))[1] DESC, id LIMIT 5$$);

-- A CASE's first condition, and the first operand of COALESCE, AND, OR and
-- NOT, are evaluated for every row: their calls are read ahead, the others
-- (ring_gcn here) are not.
SELECT explain_rows($$SELECT id, CASE WHEN (gnn_predict('ring_all', id))[1] > 0 THEN 'positive'
	WHEN (gnn_predict('ring_gcn', id))[1] > 0 THEN 'gcn' ELSE 'other' END FROM ring_node$$);
SELECT explain_rows($$SELECT sum(CASE WHEN (gnn_predict('ring_all', id))[1] > 0 THEN 1 ELSE 0 END) FROM ring_node$$);

-- Calls that run only under a condition are not read ahead.
EXPLAIN (COSTS OFF)
	SELECT count(*) FILTER (WHERE id < 10), max(gnn_predict('ring_all', id)) FILTER (WHERE id < 10) FROM ring_node;
EXPLAIN (COSTS OFF)
	SELECT CASE WHEN id % 100 = 0 THEN gnn_predict('ring_all', id) END FROM ring_node;
-- Neither are statements that lock or update rows, nor cursors (they may go
-- backward, or UPDATE ... WHERE CURRENT OF their scan's row).
EXPLAIN (COSTS OFF) UPDATE ring_node SET feat = feat WHERE (gnn_predict('ring_all', id))[1] > 1e9;
EXPLAIN (COSTS OFF) SELECT gnn_predict('ring_all', id) FROM ring_node FOR UPDATE;
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT id, (gnn_predict('ring_all', id))[1] > 0 AS pos FROM ring_node ORDER BY id;
FETCH 2 FROM c;
FETCH BACKWARD 1 FROM c;
COMMIT;
CREATE TEMP TABLE cursor_target AS SELECT id, 0 AS seen FROM ring_node WHERE id < 5;
BEGIN;
DECLARE c2 CURSOR FOR SELECT id, gnn_predict('ring_all', id) IS NOT NULL AS p FROM cursor_target;
FETCH 2 FROM c2;
UPDATE cursor_target SET seen = 1 WHERE CURRENT OF c2;
COMMIT;
SELECT id, seen FROM cursor_target ORDER BY id;
-- An INSERT ... SELECT is batched.
CREATE TEMP TABLE scores (id bigint, p real[]);
EXPLAIN (COSTS OFF) INSERT INTO scores SELECT id, gnn_predict('ring_all', id) FROM ring_node;
INSERT INTO scores SELECT id, gnn_predict('ring_all', id) FROM ring_node;
SET quiver.prefetch_rows = 0;
SELECT count(*) AS n, count(*) FILTER (WHERE s.p IS DISTINCT FROM gnn_predict('ring_all', s.id)) AS differ
	FROM scores s;
RESET quiver.prefetch_rows;

-- A model named by a parameter, in a generic plan.
PREPARE pq(text) AS SELECT id, gnn_predict($1, id) FROM ring_node WHERE id < 10;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE pq('ring_gcn');
RESET plan_cache_mode;
-- The default model.
SET quiver.default_model = 'ring_all';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT gnn_predict(id) FROM ring_node WHERE id < 10;
SELECT count(*) AS differ FROM ring_node WHERE gnn_predict(id) IS DISTINCT FROM gnn_predict('ring_all', id);
RESET quiver.default_model;

-- Parallel workers batch their own rows.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT id, gnn_predict('ring_all', id) FROM ring_node;
SELECT count(*) AS n, count(*) FILTER (WHERE x.p IS DISTINCT FROM s.p) AS differ
	FROM (SELECT id, gnn_predict('ring_all', id) AS p FROM ring_node) x JOIN scores s USING (id);
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- Errors.  An unknown id in a block only fails the block's request: the
-- block's other rows are still answered, each by its own call, and a LIMIT
-- that stops before the bad row never sees it.  Here the LIMIT is above a
-- filter on the predictions, so QuiverPrefetch reads ahead: its third block
-- is rows 4 to 7, and row 6 has an unknown id ...
CREATE TEMP TABLE ids_with_unknown AS
	SELECT i AS pos, CASE WHEN i = 6 THEN 99999 ELSE i END::bigint AS id FROM generate_series(1, 10) AS i;
SELECT pos FROM (SELECT pos, (gnn_predict('ring_all', id))[1] AS p FROM ids_with_unknown) s
	WHERE p IS NOT NULL LIMIT 5;
SELECT explain_rows($$SELECT pos FROM (SELECT pos, (gnn_predict('ring_all', id))[1] AS p FROM ids_with_unknown) s
	WHERE p IS NOT NULL LIMIT 5$$);
-- ... and a row that reaches it gets the same error as without batching.
SELECT gnn_predict('ring_all', id) FROM ids_with_unknown;
SET quiver.prefetch_rows = 0;
SELECT gnn_predict('ring_all', id) FROM ids_with_unknown;
RESET quiver.prefetch_rows;
SELECT gnn_predict('no_such_model', id) FROM ring_node;
-- An error in a nested batched query, then a correct answer afterwards.
SELECT r.id, gnn_predict('ring_all', r.id) IS NOT NULL,
	   (SELECT gnn_predict('ring_all', u.id) FROM ids_with_unknown u WHERE u.pos = r.id) IS NOT NULL
	FROM ring_node r;
SELECT count(*) AS differ FROM scores s WHERE s.p IS DISTINCT FROM gnn_predict('ring_all', s.id);
-- An error caught inside a block leaves the next statements served right.
DO $$
DECLARE
	n int;
BEGIN
	BEGIN
		SELECT count(gnn_predict('ring_all', id)) INTO n FROM ids_with_unknown;
	EXCEPTION WHEN others THEN
		RAISE NOTICE 'caught: %', SQLERRM;
	END;
	SELECT count(*) INTO n FROM scores s WHERE s.p IS DISTINCT FROM gnn_predict('ring_all', s.id);
	RAISE NOTICE 'differ after the error: %', n;
END $$;
SET quiver.prefetch_rows = -1;
SET quiver.prefetch_rows = 65537;
SET quiver.prefetch_rows = 'many';
SHOW quiver.prefetch_rows;
SELECT count(*) AS still_served FROM ring_node WHERE (gnn_predict('ring_all', id))[1] IS NOT NULL;
SELECT gnn_drop_model('ring_all');
SELECT gnn_drop_model('ring_gcn');
SELECT gnn_drop_graph('ring');
