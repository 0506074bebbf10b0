/*
 * loader.c — the "quiver loader": a dynamic background worker the engine
 * starts to read one committed graph or model from the catalog, so that the
 * engine's serving loop never waits on a table (a lock, a long scan).
 *
 * It connects to quiver.database, reads the definition, re-runs a graph's
 * stored queries as its owner with its stored search_path and a lock
 * timeout (quiver.load_lock_timeout), and hands the rows or weights to the
 * engine through its own request slot and a DSM segment, as a backend's
 * gnn_create_* does.  A failure is reported to the engine, which keeps an
 * older resident version serving and retries later.  It shows in
 * pg_stat_activity as backend_type "quiver loader".
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "quiver.h"
#include "live_capture.h"

/* What the engine asked for: kind in bgw_main_arg, name in bgw_extra. */
static ObjKind load_kind;
static char load_name[NAMEDATALEN];

/* Hand a request to the engine and wait for it to be taken care of. */
static void
submit(RequestKind kind, const char *graph, int64 version, dsm_handle dsm, const char *message)
{
	QuiverSlot *slot = queue_begin(kind, load_name);

	slot->graph[0] = '\0';
	if (graph)
		strlcpy(slot->graph, graph, NAMEDATALEN);
	slot->version = version;
	slot->dsm = dsm;
	if (message)
		strlcpy(slot->payload, message, QUIVER_SLOT_PAYLOAD);
	queue_submit_and_wait(slot);
	queue_finish(slot);
}

static void
load_graph(void)
{
	GraphDef	def;
	GraphRows	rows;
	dsm_handle	handle;
	dsm_segment *seg;

	if (!catalog_get_graph(load_name, &def))
		return;					/* dropped meanwhile: the engine's next look */
	catalog_read_graph_def(&def, &rows, quiver_load_lock_timeout_ms);
	if (def.live)
		live_from_snapshot(&rows.from, false);	/* the snapshot both queries read */
	seg = transfer_graph_rows(&rows, &handle);
	submit(REQ_LOAD_GRAPH, NULL, def.version, handle, NULL);
	dsm_detach(seg);
}

static void
load_model(void)
{
	ModelDef	def;
	dsm_handle	handle;
	dsm_segment *seg;

	if (!catalog_get_model(load_name, &def))
		return;
	seg = transfer_model(def.arch, def.config, def.weights, &handle);
	submit(REQ_LOAD_MODEL, def.graph, def.version, handle, NULL);
	dsm_detach(seg);
}

static void
load_tx(const char *name, void *arg)
{
	if (load_kind == OBJ_GRAPH)
		load_graph();
	else
		load_model();
}

void
quiver_loader_main(Datum arg)
{
	char	   *error;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	load_kind = (ObjKind) DatumGetInt32(arg);
	memcpy(load_name, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	load_name[NAMEDATALEN - 1] = '\0';
	BackgroundWorkerInitializeConnection(quiver_database, NULL, 0);

	error = catalog_in_transaction(load_tx, load_name, NULL,
								   psprintf("quiver: loading %s \"%s\"",
											load_kind == OBJ_GRAPH ? "graph" : "model", load_name));
	if (error != NULL)
	{
		/* the engine keeps what it holds and tries again later */
		StartTransactionCommand();
		submit(REQ_LOAD_FAILED, NULL, 0, DSM_HANDLE_INVALID, error);
		CommitTransactionCommand();
	}
	proc_exit(0);
}
