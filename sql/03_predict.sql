--
-- 03_predict: predictions computed by hand (graph and weights in 01_setup).
--
-- Notation: a=-7, b=5, c=9, d=42, e=1000000000000; x_a=(1,0), x_b=(0,2),
-- x_c=(4,4), x_d=(-1,3), x_e=(8,-8).  In-edges: a <- c, d, b;
-- c <- a, a, b, c; b, d, e have none.
--
SELECT gnn_create_model('sage1', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT gnn_create_model('sage2', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'),
						'{"fanout": [-1, -1]}');
SELECT gnn_create_model('gcn1', 'tiny', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'));
SELECT gnn_create_model('gcn2', 'tiny', 'GCN', (SELECT blob FROM weights WHERE name = 'gcn2'));
SELECT gnn_create_model('sage1_u', 'tiny_u', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage1'));
SELECT gnn_create_model('gcn1_u', 'tiny_u', 'gcn', (SELECT blob FROM weights WHERE name = 'gcn1'));
SELECT gnn_create_model('sage2_small', 'small', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'));

-- GraphSAGE, 1 layer: h = mean_in + (0,1) + swap(x)
--   a: mean(c,d,b) = (1,3)          + (0,1) + (0,1)  = (1,5)
--   b: 0                            + (0,1) + (2,0)  = (2,1)
--   c: mean(a,a,b,c) = (1.5,1.5)    + (0,1) + (4,4)  = (5.5,6.5)
--   d: 0                            + (0,1) + (3,-1) = (3,0)
--   e: 0                            + (0,1) + (-8,8) = (-8,9)
SELECT id, gnn_predict('sage1', id) FROM tiny_node ORDER BY id;

-- GraphSAGE, 2 layers: relu(h1) = a (1,5), b (2,1), c (5.5,6.5), d (3,0),
-- e (0,9); out = sum(mean_in(h1)) + h1[0] - h1[1]
--   a: mean(c,d,b) = (3.5,2.5) -> 6        + 1 - 5     = 2
--   b: 0                                    + 2 - 1     = 1
--   c: mean(a,a,b,c) = (2.375,4.375) -> 6.75 + 5.5 - 6.5 = 5.75
--   d: 0                                    + 3 - 0     = 3
--   e: 0                                    + 0 - 9     = -9
SELECT id, gnn_predict('sage2', id) FROM tiny_node ORDER BY id;

-- GCN, 1 layer, W = I, bias (0,1); degrees without self loops + 1:
-- a 4, b 1, c 4 (a, a, b; c's own loop replaced), d 1, e 1
--   a: x_a/4 + x_c/4 + x_d/2 + x_b/2 = (0.25,0)+(1,1)+(-0.5,1.5)+(0,1) + (0,1) = (0.75,4.5)
--   b: x_b + (0,1)                                                         = (0,3)
--   c: x_c/4 + 2 x_a/4 + x_b/2 = (1,1)+(0.5,0)+(0,1) + (0,1)                = (1.5,3)
--   d: x_d + (0,1)                                                         = (-1,4)
--   e: x_e + (0,1)                                                         = (8,-7)
SELECT id, gnn_predict('gcn1', id) FROM tiny_node ORDER BY id;

-- GCN, 2 layers: relu(h1) . (1,1) = a 5.25, b 3, c 4.5, d 4, e 8; bias 0.5
--   a: 5.25/4 + 4.5/4 + 4/2 + 3/2 + 0.5 = 6.4375
--   b: 3 + 0.5                          = 3.5
--   c: 4.5/4 + 2 * 5.25/4 + 3/2 + 0.5   = 5.75
--   d: 4 + 0.5 = 4.5;  e: 8 + 0.5 = 8.5
SELECT id, gnn_predict('gcn2', id) FROM tiny_node ORDER BY id;

-- Undirected: in-neighbours a {c,d,b}, b {c,a}, c {a,b,c}, d {a}, e {}.
-- GraphSAGE 1 layer:
--   a: (1,3) + (0,1) + (0,1)                  = (1,5)
--   b: mean(c,a) = (2.5,2) + (0,1) + (2,0)    = (4.5,3)
--   c: mean(a,b,c) = (5/3,2) + (0,1) + (4,4)  = (5.66667,7)
--   d: x_a + (0,1) + (3,-1)                   = (4,0)
--   e: (0,1) + (-8,8)                         = (-8,9)
SELECT id, (SELECT array_agg(round(v::numeric, 5)) FROM unnest(gnn_predict('sage1_u', id)) AS v)
	FROM tiny_node ORDER BY id;
-- GCN 1 layer, degrees a 4, b 3, c 3, d 2, e 1:
--   a: x_a/4 + x_c/sqrt(12) + x_d/sqrt(8) + x_b/sqrt(12) + (0,1)
--      = (0.25 + 1.154701 - 0.353553, 1.154701 + 1.060660 + 0.577350 + 1)
--      = (1.05115, 3.79271)
--   d: x_d/2 + x_a/sqrt(8) + (0,1) = (-0.5 + 0.353553, 1.5 + 1) = (-0.14645, 2.5)
--   e: x_e + (0,1) = (8,-7)
SELECT id, (SELECT array_agg(round(v::numeric, 5)) FROM unnest(gnn_predict('gcn1_u', id)) AS v)
	FROM tiny_node WHERE id IN (-7, 42, 1000000000000) ORDER BY id;

-- smallint/integer ids and float8 features: the same answers as "tiny"
-- (e, missing there, is isolated in "tiny").
SELECT id, gnn_predict('sage2_small', id) = gnn_predict('sage2', id) AS same
	FROM tiny_node WHERE id < 100 ORDER BY id;

-- Batches: one row per id, in input order, duplicates included.
SELECT * FROM gnn_predict('sage2', '{9,-7,9,1000000000000,5}'::bigint[]);
SELECT * FROM gnn_predict('gcn1', ARRAY[42::bigint]);
SELECT count(*) FROM gnn_predict('gcn1', '{}'::bigint[]);
-- A batch over a table agrees with single calls.
SELECT count(*) AS rows, bool_and(b.prediction = gnn_predict('gcn2', b.node_id)) AS agree
	FROM gnn_predict('gcn2', (SELECT array_agg(id ORDER BY id DESC) FROM tiny_node)) AS b;
SELECT string_agg(node_id::text, ',') AS order_kept
	FROM gnn_predict('sage1', (SELECT array_agg(id ORDER BY feat[2], id) FROM tiny_node));

-- The default model.
SET quiver.default_model = 'gcn2';
SELECT gnn_predict(-7), gnn_predict(9);
RESET quiver.default_model;

-- STRICT: a NULL argument gives NULL.
SELECT gnn_predict('sage1', NULL::bigint) IS NULL AS null_id,
	   gnn_predict(NULL::text, 9) IS NULL AS null_model;

-- Fanouts at least the largest in-degree (4) take every neighbour: the same
-- as full neighbourhoods.  With fanout 1, nodes without in-edges (b, d, e)
-- still have a single possible answer.
SELECT gnn_create_model('sage2_f4', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'),
						'{"fanout": [4, 10]}');
SELECT gnn_create_model('sage2_f1', 'tiny', 'graphsage', (SELECT blob FROM weights WHERE name = 'sage2'),
						'{"fanout": [1, 1]}');
SELECT id, gnn_predict('sage2_f4', id) FROM tiny_node ORDER BY id;
SELECT id, gnn_predict('sage2_f1', id) FROM tiny_node WHERE id IN (5, 42, 1000000000000) ORDER BY id;
-- Sampled answers for a and c are finite and of the right size.
SELECT id, (SELECT count(*) FILTER (WHERE v <> 'NaN' AND abs(v) < 'Infinity')
			FROM unnest(gnn_predict('sage2_f1', id)) AS v) AS finite_values
	FROM tiny_node WHERE id IN (-7, 9) ORDER BY id;

-- gnn_embed: the hidden layer of sage2 after its ReLU, relu(h1) above:
-- a (1,5), b (2,1), c (5.5,6.5), d (3,0), e (0,9); layer NULL is layer 1.
SELECT id, gnn_embed('sage2', id), gnn_embed('sage2', id, 1) AS layer1 FROM tiny_node ORDER BY id;
SELECT node_id, embedding FROM gnn_embed('sage2', '{1000000000000,-7,9,-7}'::bigint[]);
SELECT node_id, embedding FROM gnn_embed('sage2', '{42}'::bigint[], 1);
SELECT gnn_embed('sage2', NULL::bigint) IS NULL AS null_id, gnn_embed(NULL, 5::bigint) IS NULL AS null_model;
SELECT count(*) AS no_rows FROM gnn_embed(NULL, '{5}'::bigint[]);
-- Bad layers name the layer and the model's layers; a 1-layer model has none.
SELECT gnn_embed('sage2', 5, 2);
SELECT gnn_embed('sage2', 5, 0);
SELECT gnn_embed('sage2', 5, -1);
SELECT * FROM gnn_embed('sage2', '{5}'::bigint[], 7);
SELECT gnn_embed('sage1', 5);
SELECT gnn_embed('nosuch', 5);
SELECT gnn_embed('sage2', 4242);

-- The README's similarity search: a's embedding (1,5) is nearest to e's
-- (0,9), then c's (5.5,6.5).
CREATE TEMP TABLE tiny_embedding AS
	SELECT node_id AS id, embedding FROM gnn_embed('sage2', ARRAY(SELECT id FROM tiny_node));
CREATE FUNCTION pg_temp.cosine(a real[], b real[]) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
	SELECT sum(x * y) / nullif(sqrt(sum(x * x)) * sqrt(sum(y * y)), 0)
	FROM unnest(a, b) AS u(x, y) $$;
SELECT e.id, round(pg_temp.cosine(e.embedding, q.embedding)::numeric, 4) AS similarity
	FROM tiny_embedding e, (SELECT embedding FROM tiny_embedding WHERE id = -7) q
	WHERE e.id <> -7 ORDER BY similarity DESC LIMIT 2;

-- gnn_classify: argmax of sage1's (h0, h1) above and its softmax
-- probability 1 / (1 + exp(-|h0 - h1|)): a 1 (0.982), b 0 (0.731),
-- c 1 (0.731), d 0 (0.953), e 1 (1 - 4e-8).
SELECT id, (gnn_classify('sage1', id)).* FROM tiny_node ORDER BY id;
SELECT id, c.label, c.probability FROM tiny_node, LATERAL gnn_classify('sage1', id) c ORDER BY id;
-- One output: label 0 with probability 1.
SELECT * FROM gnn_classify('sage2', 9);
SELECT * FROM gnn_classify('sage1', 4242);
SELECT * FROM gnn_classify('nosuch', 5);

-- Models: definitions and resident state.
SELECT name, graph, arch, config, weights_bytes > 0 AS has_weights, state, layers, out_dim, fanout
	FROM gnn_models ORDER BY name;
SELECT kind, name, graph, arch, layers, out_dim, fanout
	FROM gnn_resident() WHERE kind = 'model' ORDER BY name;

-- Statistics: every model asked above has counted its requests.
SELECT model, requests > 0 AS requests, batches > 0 AS batches, seeds >= requests AS seeds,
	   cpu_batches + gpu_batches = batches AS split
	FROM gnn_stats() WHERE model IN ('sage1', 'sage2', 'gcn1', 'gcn2') ORDER BY model;
