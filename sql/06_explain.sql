--
-- 06_explain: PSGS per node, the CPU/GPU decision and the cost model.
--
\set SHOW_CONTEXT never

-- "tiny" again (05_drop dropped everything).  In-edges, from 01_setup:
--   a (-7): c, d, b           d_a = 3
--   c (9):  a, a, b, c        d_c = 4 (duplicate and self loop counted)
--   b (5), d (42), e (10^12): none
SELECT nodes, edges FROM gnn_create_graph('tiny', 'SELECT src, dst FROM tiny_edge',
										  'SELECT id, feat FROM tiny_node');
SELECT gnn_create_model('sage_all', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'));
SELECT gnn_create_model('sage_f2', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'),
						'{"fanout": [2, -1]}');

-- PSGS, DESIGN section 3, by hand.  Inner level (fanout[1] = -1 in both
-- models): T_1(v) = 1 + d_v, so T_1(a) = 4, T_1(c) = 5, T_1(b) = T_1(d) = 1.
-- Seed level, every neighbour:  T_0(a) = 1 + (5 + 1 + 1) = 8,
--                               T_0(c) = 1 + (4 + 4 + 1 + 5) = 15.
-- Seed level, fanout 2:  T_0(a) = 1 + 2/3 * (5 + 1 + 1) = 5.6667,
--                        T_0(c) = 1 + 2/4 * (4 + 4 + 1 + 5) = 8.
-- Nodes without in-edges: 1.
SELECT m, id, round(psgs::numeric, 4) AS psgs, path
	FROM (VALUES ('sage_all'), ('sage_f2')) AS models(m),
		 (VALUES (-7), (9), (5), (1000000000000)) AS ids(id),
		 LATERAL gnn_explain(m, id)
	ORDER BY m, id;

-- No GPU here: every batch runs on the CPU, θ is infinite and says why;
-- the engine timed probe batches when the model was created.
SELECT path, psgs_threshold, reason, cost_samples > 0 AS calibrated,
	   cpu_cost_a_us >= 0 AS a_ok, cpu_cost_b_us >= 0 AS b_ok,
	   predicted_cpu_us > 0 AS predicted
	FROM gnn_explain('sage_f2', 9);

-- Requests feed the seed histogram: after asking for a twice and c once,
-- a is 2/3 of the requested seeds.
SELECT count(*) FROM gnn_predict('sage_f2', '{-7,-7,9}'::bigint[]);
SELECT round(seed_share::numeric, 4) AS share_a FROM gnn_explain('sage_f2', -7);
SELECT round(seed_share::numeric, 4) AS share_d FROM gnn_explain('sage_f2', 42);

-- gnn_stats carries the same threshold and the cost model.
SELECT model, psgs_threshold, threshold_reason, cost_samples > 0 AS calibrated,
	   cpu_batches = batches AS all_cpu
	FROM gnn_stats() WHERE model IN ('sage_all', 'sage_f2') ORDER BY model;

-- errors
SELECT * FROM gnn_explain('no_such_model', 9);
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM gnn_explain('sage_f2', 12345);
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM gnn_explain('sage_f2', NULL);

SELECT gnn_drop_model('sage_all');
SELECT gnn_drop_model('sage_f2');
SELECT gnn_drop_graph('tiny');
