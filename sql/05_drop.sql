--
-- 05_drop: gnn_drop_model, gnn_drop_graph.
--
\set SHOW_CONTEXT never

SELECT gnn_drop_model('no_such_model');
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT gnn_drop_graph('no_such_graph');
SELECT :'SQLSTATE' AS sqlstate, serving();
-- a graph that models still use cannot go
SELECT gnn_drop_graph('tiny');
SELECT :'SQLSTATE' AS sqlstate, serving();

SELECT gnn_drop_model('sage1');
SELECT gnn_predict('sage1', 9);
SELECT :'SQLSTATE' AS sqlstate, serving();
SELECT name FROM gnn_models WHERE name LIKE 'sage1%' ORDER BY name;

-- dropping the models of "tiny_u" frees the graph
SELECT gnn_drop_model('sage1_u');
SELECT gnn_drop_model('gcn1_u');
SELECT gnn_drop_graph('tiny_u');
SELECT name FROM gnn_graphs ORDER BY name;
SELECT kind, name FROM gnn_resident() WHERE name LIKE '%\_u' ORDER BY kind, name;

-- a dropped name can be created again
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph('tiny_u', 'SELECT src, dst FROM tiny_edge',
						  'SELECT id, feat FROM tiny_node', true);
SELECT gnn_create_model('sage1', 'tiny_u', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT gnn_predict('sage1', 5);		-- (4.5, 3) as in 03_predict

-- everything
SELECT gnn_drop_model(name) FROM quiver_model ORDER BY name;
SELECT gnn_drop_graph(name) FROM quiver_graph ORDER BY name;
SELECT count(*) FROM gnn_graphs;
SELECT count(*) FROM gnn_models;
SELECT count(*) FROM gnn_resident();
SELECT gnn_predict('sage2', 9);
SELECT :'SQLSTATE' AS sqlstate;
