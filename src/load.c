/*
 * load.c — putting graphs and models into the engine: from a backend's
 * request (rows or weights in DSM) or from the extension's catalog tables
 * (after a restart, or to undo the effect of an aborted transaction).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/dsm.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include <math.h>
#include <unistd.h>

#include "device.h"
#include "engine.h"
#include "graph.h"
#include "model.h"
#include "psgs.h"
#include "registry.h"

/* Build a graph from rows and install it; false with err on failure. */
static bool
load_graph_rows(const char *name, const GraphRows *rows, QvError *err)
{
	QvGraphInput in;
	QvGraph    *g = NULL;

	in.n_nodes = rows->n_nodes;
	in.dim = rows->dim;
	in.ids = rows->ids;
	in.feat = rows->feat;
	in.n_edges = rows->n_edges;
	in.src = rows->src;
	in.dst = rows->dst;
	in.undirected = rows->undirected;
	if (!registry_check_memory(name, graph_rows_bytes(rows), err))
		return false;
	if (qv_graph_build(&in, &g, err) != QV_OK)
		return false;
	if (!registry_install_graph(name, g, engine_pool, err))
	{
		qv_graph_free(g);
		return false;
	}
	device_graph_replaced(registry_graph(name));
	return true;
}

#define PROBE_BUDGET_US 300000.0	/* stop probing a path after this long */

/* Time the CPU path, and the GPU path when the model is on a GPU, on the
 * same probe batches of random seeds (1 to 1024), so that both cost lines
 * and θ exist before the first request; a failure only ends that path's
 * probing. */
static void
calibrate(ResModel *rm, ResGraph *rg)
{
	static const int sizes[] = {1, 4, 16, 64, 256, 1024};
	double		spent_cpu = 0,
				spent_gpu = rm->dev ? 0 : PROBE_BUDGET_US;
	uint64		rng = 0x9e3779b97f4a7c15ULL ^ (uint64) rg->g->n_nodes;

	for (int s = 0; s < lengthof(sizes); s++)
		for (int rep = 0; rep < 2; rep++)
		{
			int			n = (int) Min(sizes[s], rg->g->n_nodes);
			int64	   *ids = palloc(sizeof(int64) * n);
			int32	   *dense = palloc(sizeof(int32) * n);
			float	   *out = palloc(sizeof(float) * n * rm->m->out_dim);
			QvError		err = {0};
			double		us,
						psgs;

			for (int i = 0; i < n; i++)
			{
				rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
				dense[i] = (int32) ((rng >> 33) % (uint64) rg->g->n_nodes);
				ids[i] = rg->g->ids[dense[i]];
			}
			psgs = qv_psgs_sum(rm->psgs, dense, n);
			if (spent_cpu < PROBE_BUDGET_US)
			{
				us = engine_time_batch(rm, rg, ids, dense, n, psgs, out, rng, &err);
				spent_cpu = us < 0 ? PROBE_BUDGET_US : spent_cpu + us;
			}
			if (spent_gpu < PROBE_BUDGET_US)
			{
				us = device_time_probe(rm, rg, dense, n, psgs, out, rng);
				spent_gpu = us < 0 ? PROBE_BUDGET_US : spent_gpu + us;
			}
			pfree(ids);
			pfree(dense);
			pfree(out);
		}
	registry_forget_seeds(rg);	/* probes are not requests */
	registry_publish_cost(rm);
}

/* Build a model from weights and install it; false with err on failure. */
static bool
load_model_blob(const char *name, const char *graph, const char *arch_name,
				const char *config, const uint8 *weights, size_t len, QvError *err)
{
	ResGraph   *rg = registry_graph(graph);
	QvArch		arch;
	QvModel    *m = NULL;
	ResModel   *rm;

	if (rg == NULL)
	{
		char		detail[QUIVER_DETAIL_LEN];

		if (registry_failure('g', graph, detail, sizeof(detail)))
			qv_error(err, QV_ENOTFOUND, "graph \"%s\" is not loaded: %s", graph, detail);
		else
			qv_error(err, QV_ENOTFOUND, "graph \"%s\" does not exist", graph);
		return false;
	}
	if (qv_arch_parse(arch_name, &arch, err) != QV_OK)
		return false;
	if (qv_model_load(arch, weights, len, config, rg->g->dim, &m, err) != QV_OK)
		return false;
	if ((rm = registry_install_model(name, graph, m, engine_pool, err)) == NULL)
	{
		qv_model_free(m);
		return false;
	}
	device_attach_model(rm, rg);
	calibrate(rm, rg);
	return true;
}

static void *
attach_payload(QuiverSlot *slot, dsm_segment **seg)
{
	*seg = dsm_attach(slot->dsm);
	if (*seg == NULL)
		return NULL;
	return dsm_segment_address(*seg);
}

/* Serve a load or drop request from a backend. */
void
engine_serve_admin(QuiverSlot *slot)
{
	QvError		err = {0};
	dsm_segment *seg = NULL;
	void	   *base = NULL;
	bool		ok = true;

	device_drain();				/* no GPU batch may see a change */
	if ((slot->kind == REQ_LOAD_GRAPH || slot->kind == REQ_LOAD_MODEL) &&
		(base = attach_payload(slot, &seg)) == NULL)
	{
		/* the backend gave up and its segment is gone */
		queue_fail(slot, ERRCODE_QUERY_CANCELED, "request was abandoned");
		return;
	}
	switch (slot->kind)
	{
		case REQ_LOAD_GRAPH:
			{
				GraphRows	rows;

				transfer_graph_view(base, &rows);
				ok = load_graph_rows(slot->name, &rows, &err);
				if (ok)
				{
					const QvGraph *g = registry_graph(slot->name)->g;

					slot->result[0] = g->n_nodes;
					slot->result[1] = g->n_edges;
					slot->result[2] = g->dim;
					slot->result[3] = qv_graph_bytes(g);
				}
				break;
			}
		case REQ_LOAD_MODEL:
			{
				const char *arch, *config;
				const uint8 *weights;
				size_t		len;

				transfer_model_view(base, &arch, &config, &weights, &len);
				ok = load_model_blob(slot->name, slot->graph, arch, config, weights, len, &err);
				break;
			}
		case REQ_DROP_GRAPH:
			registry_drop_graph(slot->name);
			break;
		case REQ_DROP_MODEL:
			registry_drop_model(slot->name);
			break;
		default:
			ok = false;
			qv_error(&err, QV_EINTERNAL, "unknown request kind %d", (int) slot->kind);
	}
	if (seg)
		dsm_detach(seg);
	if (ok)
		queue_complete(slot);
	else
		queue_fail_qv(slot, &err);
}

/* Answer gnn_explain: the node's PSGS, the path a batch of it alone would
 * take, and why. */
void
engine_explain(QuiverSlot *slot)
{
	ResModel   *rm = registry_model(slot->name);
	ResGraph   *rg = rm ? registry_graph(rm->graph) : NULL;
	int64		id = *(int64 *) slot->payload;
	ExplainResult res;
	const char *why;
	QvCostFit	fit;
	int32		v;

	if (rm == NULL || rg == NULL)
	{
		queue_fail(slot, ERRCODE_UNDEFINED_OBJECT, "model \"%s\" does not exist", slot->name);
		return;
	}
	if ((v = qv_graph_find(rg->g, id)) < 0)
	{
		queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
				   "node id " INT64_FORMAT " does not exist in graph \"%s\"", id, rg->name);
		return;
	}
	memset(&res, 0, sizeof(res));
	res.psgs = rm->psgs[v];
	res.psgs_threshold = device_threshold(rm, &why);
	fit = qv_costmodel_fit(&rm->cpu_cost);
	res.cost_a_us = fit.a;
	res.cost_b_us = fit.b;
	res.cost_samples = rm->cpu_cost.n_samples;
	res.predicted_cpu_us = qv_costmodel_predict(&rm->cpu_cost, res.psgs);
	res.seed_share = rg->hist.total > 0 ? rg->hist.counts[v] / rg->hist.total : 0;
	if (res.psgs > res.psgs_threshold)
	{
		strlcpy(res.path, "gpu", sizeof(res.path));
		snprintf(res.reason, sizeof(res.reason), "PSGS %.1f is above the threshold %.1f (%s)",
				 res.psgs, res.psgs_threshold, why);
	}
	else
	{
		strlcpy(res.path, "cpu", sizeof(res.path));
		if (isinf(res.psgs_threshold))
			snprintf(res.reason, sizeof(res.reason), "CPU for every batch: %s", why);
		else
			snprintf(res.reason, sizeof(res.reason), "PSGS %.1f is not above the threshold %.1f",
					 res.psgs, res.psgs_threshold);
	}
	memcpy(slot->payload, &res, sizeof(res));
	queue_complete(slot);
}

/* ---- from the catalog ----------------------------------------------------- */

/* Run a catalog query returning at most one row; values as text. */
static bool
catalog_row(const char *sql, const char *name, int natts, char **values, bytea **blob)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	int			rc = SPI_execute_with_args(sql, 1, argtypes, args, NULL, true, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "quiver: catalog query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;
	for (int i = 0; i < natts; i++)
		values[i] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1);
	if (blob)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, natts + 1, &isnull);

		*blob = isnull ? NULL : DatumGetByteaPCopy(d);
	}
	return true;
}

/* Reload graph `name` from the catalog (drop it if the catalog lacks it).
 * Runs inside a transaction with SPI connected. */
static void
sync_graph(const char *schema, const char *name)
{
	char	   *v[4];
	char	   *sql = psprintf("SELECT edges_query, features_query, undirected::text, owner::oid::text "
							   "FROM %s.quiver_graph WHERE name = $1", quote_identifier(schema));
	GraphRows	rows;
	QvError		err = {0};
	Oid			save_user;
	int			save_sec;

	if (!catalog_row(sql, name, 4, v, NULL))
	{
		registry_drop_graph(name);
		return;
	}
	/* re-run the stored queries with the rights of the graph's owner */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(atooid(v[3]), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	catalog_read_graph_rows(v[0], v[1], &rows);
	SetUserIdAndSecContext(save_user, save_sec);
	rows.undirected = strcmp(v[2], "true") == 0;
	if (!load_graph_rows(name, &rows, &err))
		registry_publish_failed('g', name, err.msg);
}

/* Reload model `name` from the catalog (drop it if the catalog lacks it). */
static void
sync_model(const char *schema, const char *name)
{
	char	   *v[3];
	bytea	   *weights;
	char	   *sql = psprintf("SELECT graph, arch, config::text, weights "
							   "FROM %s.quiver_model WHERE name = $1", quote_identifier(schema));
	QvError		err = {0};

	if (!catalog_row(sql, name, 3, v, &weights))
	{
		registry_drop_model(name);
		return;
	}
	if (!load_model_blob(name, v[0], v[1], v[2], (const uint8 *) VARDATA_ANY(weights),
						 VARSIZE_ANY_EXHDR(weights), &err))
		registry_publish_failed('m', name, err.msg);
}

/* Sync one object in a transaction of its own; a PostgreSQL error (a stored
 * query that fails now) marks the object failed instead of ending the engine. */
static void
sync_object(char kind, const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool in_xact = false;

	PG_TRY();
	{
		char	   *schema;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		in_xact = true;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, kind == 'g' ? "quiver: loading graph" : "quiver: loading model");
		schema = catalog_extension_schema();
		if (schema == NULL)
		{
			/* extension dropped: nothing may stay resident */
			if (kind == 'g')
				registry_drop_graph(name);
			else
				registry_drop_model(name);
		}
		else if (kind == 'g')
			sync_graph(schema, name);
		else
			sync_model(schema, name);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (in_xact)
			AbortCurrentTransaction();
		ereport(LOG, (errmsg("quiver engine: could not load %s \"%s\": %s",
							 kind == 'g' ? "graph" : "model", name, edata->message)));
		registry_publish_failed(kind, name, edata->message);
		FreeErrorData(edata);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

/* Names of all graphs or models in the catalog (in cxt). */
static List *
catalog_names(const char *table)
{
	List	   *names = NIL;
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		char	   *schema = catalog_extension_schema();

		if (schema != NULL &&
			SPI_execute(psprintf("SELECT name FROM %s.%s ORDER BY name",
								 quote_identifier(schema), table), true, 0) == SPI_OK_SELECT)
		{
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
				MemoryContext old = MemoryContextSwitchTo(cxt);

				names = lappend(names, pstrdup(v));
				MemoryContextSwitchTo(old);
			}
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return names;
}

/* Rebuild every graph, then every model, from the catalog. */
void
engine_rebuild_all(void)
{
	ListCell   *lc;
	List	   *graphs = catalog_names("quiver_graph");
	List	   *models = catalog_names("quiver_model");

	foreach(lc, graphs)
		sync_object('g', lfirst(lc));
	foreach(lc, models)
		sync_object('m', lfirst(lc));
	if (graphs != NIL || models != NIL)
		ereport(LOG, (errmsg("quiver engine: rebuilt %d graphs and %d models from the catalog",
							 list_length(graphs), list_length(models))));
}

/* Re-sync objects touched by transactions that aborted after changing the
 * engine (see functions.c). */
void
engine_process_resync(void)
{
	char		todo[QUIVER_RESYNC_MAX][NAMEDATALEN + 1];
	int			n;
	bool		all;

	SpinLockAcquire(&quiver_shared->mutex);
	n = quiver_shared->n_resync;
	all = quiver_shared->resync_all;
	memcpy(todo, quiver_shared->resync, sizeof(todo[0]) * n);
	quiver_shared->n_resync = 0;
	quiver_shared->resync_all = false;
	SpinLockRelease(&quiver_shared->mutex);

	if (all)
	{
		engine_rebuild_all();
		return;
	}
	/* graphs before models, so a model finds the graph it needs */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < n; i++)
			if (todo[i][0] == (pass == 0 ? 'g' : 'm'))
				sync_object(todo[i][0], todo[i] + 1);
}
