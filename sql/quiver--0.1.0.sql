-- quiver 0.1.0: graph neural network inference served by the quiver engine.
\echo Use "CREATE EXTENSION quiver" to load this file. \quit

-- Definitions: the source of truth.  The engine's resident state is a cache
-- of these tables, rebuilt after a restart or an engine crash.
-- Every write of a definition takes a new version from this sequence (the
-- trigger below), so the engine can tell which catalog state it holds.
CREATE SEQUENCE quiver_version_seq;
GRANT USAGE ON SEQUENCE quiver_version_seq TO PUBLIC;

CREATE TABLE quiver_graph (
    name           text PRIMARY KEY CHECK (name <> '' AND octet_length(name) < 64),
    edges_query    text NOT NULL,
    features_query text NOT NULL,
    undirected     boolean NOT NULL DEFAULT false,
    owner          regrole NOT NULL DEFAULT current_user::regrole,
    created_at     timestamptz NOT NULL DEFAULT now(),
    search_path    text NOT NULL DEFAULT current_setting('search_path'),
    live           boolean NOT NULL DEFAULT false,
    live_dim       int,     -- a live graph's feature dimension, kept when its tables empty
    version        bigint NOT NULL DEFAULT 0
);

CREATE TABLE quiver_model (
    name        text PRIMARY KEY CHECK (name <> '' AND octet_length(name) < 64),
    graph       text NOT NULL REFERENCES quiver_graph(name),
    arch        text NOT NULL CHECK (arch IN ('graphsage', 'gcn', 'gat')),
    weights     bytea NOT NULL,
    config      jsonb NOT NULL DEFAULT '{}',
    owner       regrole NOT NULL DEFAULT current_user::regrole,
    created_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint NOT NULL DEFAULT 0
);

-- Writes of definitions, by the gnn_* functions or by hand: a new version
-- each time, and only the owner (a member of the owning role, or a
-- superuser) may change or remove a definition, or give it to a role.
CREATE FUNCTION quiver_catalog_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT pg_catalog.pg_has_role(OLD.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % "%"', TG_ARGV[0], OLD.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NOT pg_catalog.pg_has_role(NEW.owner, 'USAGE') THEN
        RAISE EXCEPTION 'cannot make role % the owner of % "%"', NEW.owner, TG_ARGV[0], NEW.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.version := pg_catalog.nextval('@extschema@.quiver_version_seq');
    RETURN NEW;
END $$;

CREATE TRIGGER quiver_graph_write BEFORE INSERT OR UPDATE OR DELETE ON quiver_graph
    FOR EACH ROW EXECUTE FUNCTION quiver_catalog_write('graph');
CREATE TRIGGER quiver_model_write BEFORE INSERT OR UPDATE OR DELETE ON quiver_model
    FOR EACH ROW EXECUTE FUNCTION quiver_catalog_write('model');

-- Live graphs (DESIGN 1.4, docs/live.md).  For each query of a live graph:
-- the table it reads and how a row of that table becomes a graph row (its
-- select list and WHERE, deparsed at creation), for the capture triggers.
CREATE TABLE quiver_live_source (
    graph       text NOT NULL REFERENCES quiver_graph(name) ON DELETE CASCADE,
    role        "char" NOT NULL CHECK (role IN ('e', 'n')),    -- edges, nodes
    relid       oid NOT NULL,
    select_list text NOT NULL,
    qual        text,
    dim         int NOT NULL,
    PRIMARY KEY (graph, role)
);
CREATE INDEX quiver_live_source_relid ON quiver_live_source (relid);

-- The change log: written by the capture triggers in the user's
-- transaction (so it commits, rolls back and replicates with it), read by
-- the engine, pruned by the engine on the primary.  One row per statement,
-- graph, query and sign.
CREATE SEQUENCE quiver_live_seq;
CREATE TABLE quiver_live_log (
    seq     bigint NOT NULL DEFAULT nextval('quiver_live_seq'),
    graph   text NOT NULL,
    xid     xid8 NOT NULL DEFAULT pg_current_xact_id(),
    op      "char" NOT NULL CHECK (op IN ('e', 'n', 'E', 'N')),  -- rows of edges/nodes; E/N: truncate
    sign    smallint NOT NULL CHECK (sign IN (-1, 1)),
    a       bigint[],       -- src ids, or node ids
    b       bigint[],       -- dst ids
    f       real[]          -- features, rows x dim
);
CREATE INDEX ON quiver_live_log (graph, xid);
-- Log rows of graph older than pruned_below are gone: an engine that has
-- not applied them (a lagging standby) rebuilds the graph.
CREATE TABLE quiver_live_horizon (
    graph        text PRIMARY KEY,
    pruned_below xid8 NOT NULL
);
REVOKE ALL ON quiver_live_source, quiver_live_log, quiver_live_horizon, quiver_live_seq FROM PUBLIC;

-- Statement-level AFTER triggers that gnn_create_graph(live => true)
-- puts on the source tables (quiver_live_insert/update/delete/truncate).
CREATE FUNCTION quiver_live_capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'quiver_live_capture' LANGUAGE C;

SELECT pg_catalog.pg_extension_config_dump('quiver_graph', '');
SELECT pg_catalog.pg_extension_config_dump('quiver_model', '');
SELECT pg_catalog.pg_extension_config_dump('quiver_version_seq', '');

-- What gnn_create_graph reports (a type, since its argument "edges" and its
-- result column "edges" share a name).
CREATE TYPE gnn_graph_load AS (nodes bigint, edges bigint, feature_dim int, load_ms float8);

CREATE FUNCTION gnn_create_graph(name text, edges text, features text,
                                 undirected boolean DEFAULT false, live boolean DEFAULT false)
    RETURNS gnn_graph_load
    AS 'MODULE_PATHNAME', 'gnn_create_graph' LANGUAGE C VOLATILE;

CREATE FUNCTION gnn_create_model(name text, graph text, arch text, weights bytea,
                                 config jsonb DEFAULT '{}')
    RETURNS void
    AS 'MODULE_PATHNAME', 'gnn_create_model' LANGUAGE C VOLATILE;

-- COST 10 (ten simple operators): a call is a request to the engine, so the
-- planner runs cheap filters before filters on predictions.
CREATE FUNCTION gnn_predict(model text, node_id bigint)
    RETURNS real[]
    AS 'MODULE_PATHNAME', 'gnn_predict' LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 10;

CREATE FUNCTION gnn_predict(node_id bigint)
    RETURNS real[]
    AS 'MODULE_PATHNAME', 'gnn_predict_default' LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 10;

CREATE FUNCTION gnn_predict(model text, node_ids bigint[])
    RETURNS TABLE(node_id bigint, prediction real[])
    AS 'MODULE_PATHNAME', 'gnn_predict_batch' LANGUAGE C VOLATILE STRICT PARALLEL SAFE ROWS 100;

-- Hidden-layer outputs (1 .. L-1, after the activation; NULL = L-1), with
-- the sampling and semantics of gnn_predict.  Not STRICT because of the
-- layer's default; a NULL model or id gives NULL.
CREATE FUNCTION gnn_embed(model text, node_id bigint, layer int DEFAULT NULL)
    RETURNS real[]
    AS 'MODULE_PATHNAME', 'gnn_embed' LANGUAGE C VOLATILE PARALLEL SAFE COST 10;

CREATE FUNCTION gnn_embed(model text, node_ids bigint[], layer int DEFAULT NULL)
    RETURNS TABLE(node_id bigint, embedding real[])
    AS 'MODULE_PATHNAME', 'gnn_embed_batch' LANGUAGE C VOLATILE PARALLEL SAFE ROWS 100;

-- The argmax of the model's output and its softmax probability: one row
-- per call, so that it can stand in a select list and be batched there
-- like gnn_predict: SELECT id, (gnn_classify('m', id)).* FROM t.
CREATE FUNCTION gnn_classify(model text, node_id bigint, OUT label int, OUT probability real)
    RETURNS record
    AS 'MODULE_PATHNAME', 'gnn_classify' LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 10;

-- Train a model in the engine (DESIGN 1.6) and store it as gnn_create_model
-- would: replaced at commit, one row per epoch.
CREATE FUNCTION gnn_train(name text, graph text, arch text, labels text, config jsonb DEFAULT '{}')
    RETURNS TABLE(epoch int, loss float8, train_acc float8, val_acc float8, seconds float8)
    AS 'MODULE_PATHNAME', 'gnn_train' LANGUAGE C VOLATILE;

-- The training the engine runs, if any (gnn_progress).
CREATE FUNCTION gnn_training(OUT model text, OUT graph text, OUT pid int, OUT phase text,
                             OUT epoch int, OUT epochs int, OUT batches_done bigint,
                             OUT batches_total bigint, OUT loss float8, OUT started timestamptz,
                             OUT bytes bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'gnn_training' LANGUAGE C VOLATILE;

CREATE FUNCTION gnn_drop_graph(name text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'gnn_drop_graph' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION gnn_drop_model(name text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'gnn_drop_model' LANGUAGE C VOLATILE STRICT;

-- Re-run a graph's stored queries (with its owner's rights and the
-- search_path it was created with) and replace it at commit.
CREATE FUNCTION gnn_refresh_graph(name text)
    RETURNS gnn_graph_load
    AS 'MODULE_PATHNAME', 'gnn_refresh_graph' LANGUAGE C VOLATILE STRICT;

-- What the engine holds now, one row per graph and model of this database:
-- the catalog version it was built from, and when.
CREATE FUNCTION gnn_resident(OUT kind text, OUT name text, OUT state text,
                             OUT bytes bigint, OUT nodes bigint, OUT edges bigint,
                             OUT feature_dim int, OUT graph text, OUT arch text,
                             OUT layers int, OUT out_dim int, OUT fanout int[],
                             OUT detail text, OUT version bigint,
                             OUT loaded_at timestamptz, OUT dangling_edges bigint,
                             OUT precompute text, OUT precompute_bytes bigint,
                             OUT precompute_needed_bytes bigint, OUT precompute_progress float8)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'gnn_resident' LANGUAGE C VOLATILE;

CREATE FUNCTION gnn_stats(OUT model text, OUT requests bigint, OUT batches bigint,
                          OUT seeds bigint, OUT cpu_batches bigint, OUT gpu_batches bigint,
                          OUT psgs_threshold float8, OUT threshold_reason text,
                          OUT cpu_cost_a_us float8, OUT cpu_cost_b_us float8,
                          OUT cost_samples bigint,
                          OUT p50_ms float8, OUT p95_ms float8,
                          OUT p99_ms float8, OUT cache_hit_rate float8,
                          OUT gpu_cost_a_us float8, OUT gpu_cost_b_us float8,
                          OUT gpu_cost_samples bigint, OUT gpu_rows_local bigint,
                          OUT gpu_rows_peer bigint, OUT gpu_rows_host bigint,
                          OUT stale_rows bigint, OUT refresh_lag_ms float8,
                          OUT refreshed_rows bigint, OUT recomputed_rows bigint,
                          OUT variant_batches bigint[], OUT target_misses bigint,
                          OUT late_requests bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'gnn_stats' LANGUAGE C VOLATILE;

-- A model's variants (config "variants", DESIGN 1.7), variant 0 (the
-- model's own configuration) first: the configuration, the agreement with
-- variant 0 measured at install (share of equal argmax, mean relative
-- error, nodes sampled), the cost line (a + b x batch size, in
-- microseconds, refitted as batches run) and the batches served and missed.
CREATE FUNCTION gnn_variants(model text,
                             OUT variant int, OUT config jsonb, OUT agreement float8,
                             OUT mean_rel_error float8, OUT sampled bigint,
                             OUT cost_a_us float8, OUT cost_b_us float8,
                             OUT cost_samples bigint, OUT batches bigint, OUT misses bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'gnn_variants' LANGUAGE C VOLATILE STRICT;

-- The engine's GPUs: device number, name, memory, the bytes quiver holds
-- there (feature stores, CSR, models), whether it serves, and why not.
CREATE FUNCTION gnn_gpus(OUT device int, OUT name text, OUT total_bytes bigint,
                         OUT used_bytes bigint, OUT usable boolean, OUT detail text,
                         OUT batches bigint, OUT seeds bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'gnn_gpus' LANGUAGE C VOLATILE;

-- Why a node's batch would run where it runs: its PSGS, the threshold and
-- the CPU cost model (cost = a + b x PSGS, in microseconds); and the
-- variant a batch of it alone would get under this session's
-- quiver.latency_target and quiver.min_agreement, and why.
CREATE FUNCTION gnn_explain(model text, node_id bigint,
                            OUT psgs float8, OUT path text, OUT psgs_threshold float8,
                            OUT reason text, OUT cpu_cost_a_us float8,
                            OUT cpu_cost_b_us float8, OUT predicted_cpu_us float8,
                            OUT cost_samples bigint, OUT seed_share float8,
                            OUT variant int, OUT variant_reason text)
    RETURNS record
    AS 'MODULE_PATHNAME', 'gnn_explain' LANGUAGE C VOLATILE STRICT;

-- state: ready (the committed version is resident), loading (an older
-- version serves while the engine loads the committed one), stale (an
-- older version serves because the committed one could not be loaded:
-- detail says why; it is retried), failed (the committed version could not
-- be built and nothing serves: detail says why), not loaded.
CREATE VIEW gnn_graphs AS
    SELECT g.name, g.undirected, g.live, g.owner, g.created_at,
           CASE WHEN r.state IS NULL THEN 'not loaded'
                WHEN r.version <> g.version AND r.state = 'ready' AND r.detail IS NOT NULL THEN 'stale'
                WHEN r.version <> g.version AND r.state = 'ready' THEN 'loading'
                ELSE r.state END AS state,
           r.nodes, r.edges, r.dangling_edges, r.feature_dim, r.bytes, r.detail,
           g.version, r.version AS resident_version, r.loaded_at
    FROM quiver_graph g
    LEFT JOIN gnn_resident() r ON r.kind = 'graph' AND r.name = g.name;

CREATE VIEW gnn_models AS
    SELECT m.name, m.graph, m.arch, m.config, m.owner, m.created_at,
           octet_length(m.weights) AS weights_bytes,
           CASE WHEN r.state IS NULL THEN 'not loaded'
                WHEN r.version <> m.version AND r.state = 'ready' AND r.detail IS NOT NULL THEN 'stale'
                WHEN r.version <> m.version AND r.state = 'ready' THEN 'loading'
                ELSE r.state END AS state,
           r.layers, r.out_dim, r.fanout, r.bytes, r.detail,
           m.version, r.version AS resident_version, r.loaded_at,
           r.precompute, r.precompute_bytes, r.precompute_needed_bytes, r.precompute_progress
    FROM quiver_model m
    LEFT JOIN gnn_resident() r ON r.kind = 'model' AND r.name = m.name;

-- The definitions are written through the gnn_* functions (which check
-- rights first); anyone who may predict may see what exists.
REVOKE ALL ON quiver_graph, quiver_model FROM PUBLIC;
GRANT SELECT ON gnn_graphs, gnn_models TO PUBLIC;

CREATE VIEW gnn_progress AS SELECT * FROM gnn_training();
GRANT SELECT ON gnn_progress TO PUBLIC;

