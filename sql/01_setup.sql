--
-- 01_setup: the extension, the engine, and the fixtures the other files use.
--
-- The engine serves the database named by quiver.database
-- (test/quiver_test.conf: contrib_regression).  pg_regress creates that
-- database after the server has started, so wait for the engine to attach.
--
CREATE EXTENSION quiver;
ALTER DATABASE contrib_regression SET quiver.engine_start_timeout = 60000;
SET quiver.engine_start_timeout = 60000;

DO $$
BEGIN
	FOR i IN 1..600 LOOP
		PERFORM 1 FROM pg_stat_activity
			WHERE backend_type = 'quiver engine' AND datname = current_database();
		EXIT WHEN FOUND;
		PERFORM pg_sleep(0.1);
		PERFORM pg_stat_clear_snapshot();	-- else the view is frozen for the transaction
	END LOOP;
END $$;
SELECT count(*) AS engines FROM pg_stat_activity
	WHERE backend_type = 'quiver engine' AND datname = current_database();

-- The GUCs of DESIGN 1.1 and their defaults (engine_start_timeout is set
-- above, engine_threads and database in test/quiver_test.conf).
SELECT name, setting, unit, context FROM pg_settings
	WHERE name IN ('quiver.batch_wait_us', 'quiver.database', 'quiver.debug_engine_delay_ms',
				   'quiver.default_model', 'quiver.engine_start_timeout',
				   'quiver.engine_threads', 'quiver.max_batch')
	ORDER BY name;

--
-- Safetensors written in SQL, so that every weight below is visible here.
-- The format: 8-byte little-endian header length, a JSON header
-- {name: {dtype, shape, data_offsets}}, then little-endian data.
--
CREATE FUNCTION le_bytes(b bytea) RETURNS bytea
	LANGUAGE sql IMMUTABLE STRICT
	AS $$ SELECT coalesce(string_agg(substr(b, i, 1), ''::bytea ORDER BY i DESC), '')
		  FROM generate_series(1, length(b)) AS i $$;

-- header length, header, data: lets the error tests write broken files
CREATE FUNCTION st_raw(header text, data bytea DEFAULT '') RETURNS bytea
	LANGUAGE sql IMMUTABLE STRICT
	AS $$ SELECT le_bytes(int8send(octet_length(convert_to(header, 'UTF8'))))
				 || convert_to(header, 'UTF8') || data $$;

-- F32 safetensors from {"name": [[row], [row], ...] or [v, v, ...]}
CREATE FUNCTION st_f32(tensors jsonb) RETURNS bytea
	LANGUAGE plpgsql IMMUTABLE STRICT
	AS $$
DECLARE
	k		text;
	v		jsonb;
	shape	jsonb;
	vals	float4[];
	raw		bytea;
	hdr		jsonb := '{}';
	data	bytea := '';
BEGIN
	FOR k, v IN SELECT key, value FROM jsonb_each(tensors) ORDER BY key LOOP
		IF jsonb_typeof(v -> 0) = 'array' THEN
			shape := jsonb_build_array(jsonb_array_length(v), jsonb_array_length(v -> 0));
			SELECT array_agg(e::float4 ORDER BY r, c) INTO vals
				FROM jsonb_array_elements(v) WITH ORDINALITY AS rw(x, r),
					 jsonb_array_elements_text(rw.x) WITH ORDINALITY AS cl(e, c);
		ELSE
			shape := jsonb_build_array(jsonb_array_length(v));
			SELECT array_agg(e::float4 ORDER BY c) INTO vals
				FROM jsonb_array_elements_text(v) WITH ORDINALITY AS cl(e, c);
		END IF;
		SELECT coalesce(string_agg(le_bytes(float4send(x)), ''::bytea ORDER BY i), '')
			INTO raw FROM unnest(vals) WITH ORDINALITY AS u(x, i);
		hdr := hdr || jsonb_build_object(k, jsonb_build_object(
			'dtype', 'F32', 'shape', shape,
			'data_offsets', jsonb_build_array(octet_length(data),
											  octet_length(data) + octet_length(raw))));
		data := data || raw;
	END LOOP;
	RETURN st_raw(hdr::text, data);
END $$;

-- The builder itself: a 2x1 tensor [[1.5], [-2]] is 8 data bytes.
SELECT encode(st_f32('{"t": [[1.5], [-2]]}'), 'escape') AS file;
SELECT substr(st_f32('{"t": [[1.5], [-2]]}'), -7 + octet_length(st_f32('{"t": [[1.5], [-2]]}'))) = '\x0000c03f000000c0'::bytea AS data_le;

--
-- The fixture graph "tiny" (directed), drawn by hand:
--
--   node  id             feature   in-edges (src -> node)
--   a     -7             (1, 0)    c, d, b
--   b     5              (0, 2)    none
--   c     9              (4, 4)    a, a (duplicate), b, c (self loop)
--   d     42             (-1, 3)   none
--   e     1000000000000  (8, -8)   none, and no out-edge (isolated)
--
CREATE TABLE tiny_node (id bigint, feat real[]);
INSERT INTO tiny_node VALUES
	(-7, '{1,0}'), (5, '{0,2}'), (9, '{4,4}'), (42, '{-1,3}'),
	(1000000000000, '{8,-8}');
CREATE TABLE tiny_edge (src bigint, dst bigint);
INSERT INTO tiny_edge VALUES
	(-7, 9), (-7, 9), (5, 9), (9, 9), (9, -7), (42, -7), (5, -7);

-- Weights, in PyG's names (DESIGN 1.2).
CREATE TABLE weights (name text PRIMARY KEY, blob bytea NOT NULL);
INSERT INTO weights VALUES
	-- GraphSAGE, 1 layer 2 -> 2: h' = mean_in(h) + (0, 1) + swap(h)
	('sage1', st_f32('{"convs.0.lin_l.weight": [[1, 0], [0, 1]],
					   "convs.0.lin_l.bias": [0, 1],
					   "convs.0.lin_r.weight": [[0, 1], [1, 0]]}')),
	-- GraphSAGE, 2 layers 2 -> 2 -> 1; layer 2: h' = sum(mean_in(h)) + h0 - h1
	('sage2', st_f32('{"convs.0.lin_l.weight": [[1, 0], [0, 1]],
					   "convs.0.lin_l.bias": [0, 1],
					   "convs.0.lin_r.weight": [[0, 1], [1, 0]],
					   "convs.1.lin_l.weight": [[1, 1]],
					   "convs.1.lin_l.bias": [0],
					   "convs.1.lin_r.weight": [[1, -1]]}')),
	-- GCN, 1 layer 2 -> 2: W = I, bias (0, 1)
	('gcn1', st_f32('{"convs.0.lin.weight": [[1, 0], [0, 1]],
					  "convs.0.bias": [0, 1]}')),
	-- GCN, 2 layers 2 -> 2 -> 1; layer 2: W = (1, 1), bias 0.5
	('gcn2', st_f32('{"convs.0.lin.weight": [[1, 0], [0, 1]],
					  "convs.0.bias": [0, 1],
					  "convs.1.lin.weight": [[1, 1]],
					  "convs.1.bias": [0.5]}'));

-- A cheap check used after every error in 04_errors: the engine still
-- answers with the hand-computed values of 03_predict.
CREATE FUNCTION serving() RETURNS boolean
	LANGUAGE sql
	AS $$ SELECT gnn_predict('sage2', 9) = '{5.75}'::real[]
			 AND gnn_predict('gcn2', -7) = '{6.4375}'::real[]
			 AND (SELECT array_agg(prediction[1]) FROM gnn_predict('sage2', '{5,42}'::bigint[]))
				 = '{1,3}'::real[] $$;
