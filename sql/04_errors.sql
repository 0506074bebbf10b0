--
-- 04_errors: every bad input is an ERROR that names the offending value,
-- with an error code; after each one the engine still serves the old
-- answers (serving() in 01_setup), and nothing is half-created.
--
\set SHOW_CONTEXT never

--
-- gnn_create_graph
--
-- the queries themselves
SELECT gnn_create_graph('bad', 'SELEC src, dst FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM no_such_table', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge', 'SELECT 1/0, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- too few columns, wrong types
SELECT gnn_create_graph('bad', 'SELECT src FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge', 'SELECT id FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src::text, dst FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst::numeric FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge', 'SELECT id::float8, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge', 'SELECT id, feat::int[] FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge', 'SELECT id, feat[1] FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- NULLs
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT nullif(id, 9), feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT nullif(src, 5), dst FROM tiny_edge',
						'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, nullif(dst, 9) FROM tiny_edge',
						'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, CASE WHEN id = 42 THEN NULL ELSE feat END FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, CASE WHEN id = 42 THEN ''{1,NULL}''::real[] ELSE feat END FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph(NULL, 'SELECT src, dst FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', NULL, 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- ragged, empty and multi-dimensional feature rows
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, CASE WHEN id = 42 THEN ''{1,2,3}''::real[] ELSE feat END FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, ''{}''::real[] FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, ''{{1,2},{3,4}}''::real[] FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- duplicate node ids, edges to and from nodes without a feature row, no nodes
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, feat FROM tiny_node UNION ALL SELECT 42, ''{0,0}''');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge UNION ALL SELECT 5, 77',
						'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge UNION ALL SELECT -1000, 9',
						'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('bad', 'SELECT src, dst FROM tiny_edge WHERE false',
						'SELECT id, feat FROM tiny_node WHERE false');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- nothing of "bad" exists
SELECT count(*) FROM quiver_graph WHERE name = 'bad';
SELECT count(*) FROM gnn_resident() WHERE name = 'bad';

-- A failed replacement leaves the old graph serving, definition unchanged.
SELECT gnn_create_graph('tiny', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, feat FROM tiny_node UNION ALL SELECT 9, ''{0,0}''');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_graph('tiny', 'SELECT src, dst FROM tiny_edge',
						'SELECT id, feat || 1::real FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT features_query FROM quiver_graph WHERE name = 'tiny';
SELECT nodes, edges, feature_dim FROM gnn_graphs WHERE name = 'tiny';

--
-- gnn_create_model
--
SELECT gnn_create_model('bad', 'no_such_graph', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gin', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT :'SQLSTATE' AS sqlstate, serving();
-- GraphSAGE weights are not a GAT's: the error names the tensor
SELECT gnn_create_model('bad', 'tiny', 'gat', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage', NULL);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model(NULL, 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT :'SQLSTATE' AS sqlstate, serving();
-- not safetensors
SELECT gnn_create_model('bad', 'tiny', 'graphsage', '\x'::bytea);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage', '\x0102'::bytea);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage', convert_to('this is not a safetensors file', 'UTF8'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage', st_raw('{"convs.0.lin_l.weight": {"dtype": '));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage', st_raw('[1, 2]'));
SELECT :'SQLSTATE' AS sqlstate, serving();
-- offsets past the data, offsets that disagree with the shape, other dtypes
SELECT gnn_create_model('bad', 'tiny', 'graphsage',
	st_raw('{"convs.0.lin_l.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}',
		   '\x0000803f0000803f'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage',
	st_raw('{"convs.0.lin_l.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}',
		   '\x0000803f0000803f0000803f'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage',
	st_raw('{"convs.0.lin_l.weight": {"dtype": "I64", "shape": [2, 2], "data_offsets": [0, 32]}}',
		   '\x0000000000000000000000000000000000000000000000000000000000000000'));
SELECT :'SQLSTATE' AS sqlstate, serving();
-- missing tensors, the wrong architecture's tensors
SELECT gnn_create_model('bad', 'tiny', 'graphsage',
	st_f32('{"convs.0.lin_l.weight": [[1, 0], [0, 1]], "convs.0.lin_l.bias": [0, 1]}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'gcn1'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', st_f32('{}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
-- shapes: input dim 3 on a graph of dim 2, layers that do not chain, biases
SELECT gnn_create_model('bad', 'tiny', 'gcn',
	st_f32('{"convs.0.lin.weight": [[1, 0, 0], [0, 1, 0]], "convs.0.bias": [0, 1]}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn',
	st_f32('{"convs.0.lin.weight": [[1, 0], [0, 1]], "convs.0.bias": [0, 1],
			 "convs.1.lin.weight": [[1, 1, 1]], "convs.1.bias": [0]}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn',
	st_f32('{"convs.0.lin.weight": [[1, 0], [0, 1]], "convs.0.bias": [0, 1, 2]}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'graphsage',
	st_f32('{"convs.0.lin_l.weight": [[1, 0], [0, 1]], "convs.0.lin_l.bias": [0, 1],
			 "convs.0.lin_r.weight": [[1, 0, 0], [0, 1, 0]]}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', st_f32('{"convs.0.lin.weight": [1, 0], "convs.0.bias": [0]}'));
SELECT :'SQLSTATE' AS sqlstate, serving();
-- bad configs
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '{"fanout": [0]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '{"fanout": [-2]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '{"fanout": [1.5]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '{"fanout": "all"}');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '{"fanout": [5, 5]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '{"fanot": [5]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- a bad model variant (DESIGN 1.7) is refused, naming it, and not stored
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'),
						'{"variants": [{"fanout": [2]}, {"fanout": [2, 2, 2, 2, 2]}]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- latency targets and floors out of range name the GUC
SET quiver.latency_target = -5;
SELECT :'SQLSTATE' AS sqlstate;
SET quiver.min_agreement = 2;
SELECT :'SQLSTATE' AS sqlstate;
SET quiver.latency_target = 'never';
SELECT :'SQLSTATE' AS sqlstate;
SELECT gnn_create_model('bad', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'), '[5]');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT count(*) FROM quiver_model WHERE name = 'bad';
SELECT count(*) FROM gnn_resident() WHERE name = 'bad';

-- A failed replacement leaves the old model serving, definition unchanged.
SELECT gnn_create_model('sage2', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'gcn2'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('gcn2', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn2'), '{"fanout": [0, 0]}');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_create_model('gcn2', 'tiny', 'gat', (SELECT blob FROM weights WHERE name = 'gcn2'));
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT name, arch, config, weights = (SELECT blob FROM weights w WHERE w.name = m.name) AS same_weights
	FROM quiver_model m WHERE name IN ('sage2', 'gcn2') ORDER BY name;

--
-- gnn_predict
--
SELECT gnn_predict('no_such_model', 9);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_predict('sage1', 12345);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_predict('sage1', 1000000000001);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT * FROM gnn_predict('sage1', '{9,12345}'::bigint[]);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT * FROM gnn_predict('sage1', '{9,NULL}'::bigint[]);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT * FROM gnn_predict('no_such_model', '{9}'::bigint[]);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_predict(9);
SELECT :'SQLSTATE' AS sqlstate, serving();
SET quiver.default_model = 'no_such_model';
SELECT gnn_predict(9);
SELECT :'SQLSTATE' AS sqlstate, serving();
RESET quiver.default_model;
-- An error in the middle of a query over many rows.
SELECT id, gnn_predict('gcn1', CASE WHEN id = 42 THEN 43 ELSE id END) FROM tiny_node ORDER BY id;
SELECT :'SQLSTATE' AS sqlstate, serving();
-- In a transaction: the error aborts it, the next one works.
BEGIN;
SELECT gnn_predict('gcn2', -7);
SELECT gnn_predict('gcn2', -8);
SELECT gnn_predict('gcn2', -7);
ROLLBACK;
SELECT :'SQLSTATE' AS sqlstate, serving();

--
-- names and rights
--
SELECT gnn_create_graph(repeat('x', 64), 'SELECT src, dst FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
CREATE ROLE regress_quiver_user;
GRANT SELECT ON tiny_edge TO regress_quiver_user;
SET ROLE regress_quiver_user;
-- predictions need no rights on the catalog
SELECT gnn_predict('sage2', 9);
-- creating needs rights on the catalog tables (revoked from PUBLIC)
SELECT gnn_create_graph('mine', 'SELECT src, dst FROM tiny_edge WHERE src = 5 AND dst = 9',
						'VALUES (5::bigint, ''{1,2}''::real[]), (9, ''{3,4}'')');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT count(*) FROM gnn_resident() WHERE name = 'mine';
SELECT gnn_drop_model('sage2');
SELECT :'SQLSTATE' AS sqlstate, serving();
RESET ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON quiver_graph, quiver_model TO regress_quiver_user;
SET ROLE regress_quiver_user;
-- the queries run with the caller's rights: no SELECT on tiny_node
SELECT gnn_create_graph('mine', 'SELECT src, dst FROM tiny_edge', 'SELECT id, feat FROM tiny_node');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT nodes, edges FROM gnn_create_graph('mine', 'SELECT src, dst FROM tiny_edge WHERE src = 5 AND dst = 9',
										  'VALUES (5::bigint, ''{1,2}''::real[]), (9, ''{3,4}'')');
SELECT gnn_drop_graph('mine');
RESET ROLE;
REVOKE ALL ON quiver_graph, quiver_model, tiny_edge FROM regress_quiver_user;
DROP ROLE regress_quiver_user;
-- GUCs refuse bad values, naming them; nothing is written and the engine serves
ALTER SYSTEM SET quiver.replan_drift = 2;
SELECT :'SQLSTATE' AS sqlstate, serving();
ALTER SYSTEM SET quiver.psgs_threshold = -5;
SELECT :'SQLSTATE' AS sqlstate, serving();
ALTER SYSTEM SET quiver.gpu_cache_size = -1;
SELECT :'SQLSTATE' AS sqlstate, serving();
ALTER SYSTEM SET quiver.gpu_allow_tf32 = 'maybe';
SELECT :'SQLSTATE' AS sqlstate, serving();
-- the threshold is server-wide, not per session
SET quiver.psgs_threshold = 10;
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT current_setting('quiver.psgs_threshold') AS psgs_threshold;
