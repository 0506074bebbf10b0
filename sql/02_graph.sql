--
-- 02_graph: gnn_create_graph, id and feature types, undirected, replacement.
--
-- (load_ms is a timing: never printed)

-- Directed: 5 nodes, the 7 edges as given (duplicate and self loop kept).
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph('tiny', 'SELECT src, dst FROM tiny_edge',
						  'SELECT id, feat FROM tiny_node');

-- Undirected (to_undirected): a-c, b-c, c-c, d-a, b-a once each in both
-- directions, the self loop once: 2 * 4 + 1 = 9 edges.
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph('tiny_u', 'SELECT src, dst FROM tiny_edge',
						  'SELECT id, feat FROM tiny_node', undirected => true);

-- Ids of every integer type and double precision features; columns are
-- taken by position, extra columns ignored.  The 4 nodes other than e,
-- with the same edges: 03_predict checks that it predicts as "tiny" does.
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph('small',
		'SELECT src::smallint, dst::smallint, ''ignored'' FROM tiny_edge',
		'SELECT id::integer, feat::float8[], 42 AS ignored FROM tiny_node WHERE id < 100');

-- Named and positional arguments; a query that is not a plain SELECT.
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph(name => 'tmp',
						  edges => 'VALUES (1::bigint, 2::bigint), (2, 1)',
						  features => 'VALUES (1::bigint, ''{0.5}''::real[]), (2, ''{0.25}'')');

-- A graph without edges is a valid graph.
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph('no_edges', 'SELECT src, dst FROM tiny_edge WHERE false',
						  'SELECT id, feat FROM tiny_node');

-- Replacing a graph of the same name: "tmp" now has 3 nodes, 1 edge, dim 3.
SELECT nodes, edges, feature_dim
	FROM gnn_create_graph('tmp', 'VALUES (7::int, 8::int)',
						  'VALUES (6::int, ''{1,2,3}''::real[]), (7, ''{4,5,6}''), (8, ''{7,8,9}'')');

-- The definitions are stored (they are the source of truth).
SELECT name, edges_query, features_query, undirected
	FROM quiver_graph ORDER BY name;

-- What the engine holds.
SELECT name, undirected, state, nodes, edges, feature_dim, bytes > 0 AS has_bytes
	FROM gnn_graphs ORDER BY name;
SELECT kind, name, nodes, edges, feature_dim
	FROM gnn_resident() WHERE kind = 'graph' ORDER BY name;

SELECT gnn_drop_graph('tmp');
SELECT gnn_drop_graph('no_edges');
SELECT name FROM gnn_graphs ORDER BY name;
SELECT name FROM gnn_resident() WHERE kind = 'graph' ORDER BY name;
