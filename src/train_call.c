/*
 * train_call.c — gnn_train and gnn_progress: training in SQL (DESIGN 1.6).
 *
 * gnn_train checks first what gnn_create_model checks (the server serves
 * this database and is not a standby, the name, the caller's rights on the
 * model: nothing is read before), reads the labels query as the caller and
 * asks the engine to train (REQ_TRAIN, train_job.c).  It waits,
 * cancellably, with a NOTICE per epoch; a cancel stops the training and
 * stores nothing.  When the engine is done, the call fetches the weights
 * (REQ_TRAIN_FETCH) and stores them as gnn_create_model would: written to
 * the catalog and staged in this transaction, published when it commits,
 * discarded if it rolls back (1.3).  It returns one row per epoch.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "model.h"
#include "train.h"
#include "quiver.h"

PG_FUNCTION_INFO_V1(gnn_train);
PG_FUNCTION_INFO_V1(gnn_training);

/* What the wait's NOTICEs have said. */
typedef struct TrainTick
{
	int32		noticed;		/* the last epoch reported */
} TrainTick;

/* The NOTICE of one finished epoch. */
static void
epoch_notice(const char *model, int32 epoch, int32 epochs, double loss, double train_acc,
			 double val_acc, double seconds)
{
	ereport(NOTICE,
			(errmsg("model \"%s\": epoch %d of %d, loss %.4f, train accuracy %.4f, validation accuracy %.4f, %.1f s",
					model, epoch, epochs, loss, train_acc, val_acc, seconds)));
}

/* While the call waits: a NOTICE for each epoch the job finished since the
 * last look, while gnn_progress still holds its figures (the rest are
 * reported, in order, when the call returns). */
static void
train_notice_tick(void *arg)
{
	TrainTick  *tick = arg;
	QuiverTrainStatus st;

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	st = quiver_shared->train;
	LWLockRelease(quiver_shared->lock);
	if (!st.active || st.pid != MyProcPid || st.last_epoch - tick->noticed > QUIVER_TRAIN_RECENT)
		return;
	for (int32 e = tick->noticed + 1; e <= st.last_epoch; e++)
	{
		int			k = (e - 1) % QUIVER_TRAIN_RECENT;

		epoch_notice(st.model, e, st.epochs, st.recent[k].loss, st.recent[k].train_acc,
					 st.recent[k].val_acc, st.recent[k].seconds);
	}
	tick->noticed = Max(tick->noticed, st.last_epoch);
}

/* Train in the engine; the epoch rows are copied to *rows (palloc'd), the
 * sizes of the weights and config returned in *blob_len, *config_len. */
static int
train_request(const char *name, const char *graph, QvArch arch, const char *config,
			  const int64 *ids, const int32 *labels, int64 n, QvTrainEpoch **rows,
			  Size *blob_len, Size *config_len)
{
	dsm_handle	handle;
	dsm_segment *seg = transfer_train(qv_arch_name(arch), config, ids, labels, n, &handle);
	QuiverSlot *slot = queue_begin(REQ_TRAIN, name);
	TrainTick	tick = {0};
	uint32		n_rows;

	strlcpy(slot->graph, graph, NAMEDATALEN);
	slot->dsm = handle;
	queue_submit_and_wait_long(slot, train_notice_tick, &tick);
	queue_raise(slot);
	memcpy(&n_rows, slot->payload, sizeof(n_rows));
	*rows = palloc(sizeof(QvTrainEpoch) * Max(n_rows, 1));
	memcpy(*rows, slot->payload + sizeof(double), sizeof(QvTrainEpoch) * n_rows);
	*blob_len = (Size) slot->result[0];
	*config_len = (Size) slot->result[1];
	queue_finish(slot);
	dsm_detach(seg);
	for (uint32 i = 0; i < n_rows; i++)
		if ((*rows)[i].epoch > tick.noticed)
			epoch_notice(name, (*rows)[i].epoch, (int32) n_rows, (*rows)[i].loss,
						 (*rows)[i].train_acc, (*rows)[i].val_acc, (*rows)[i].seconds);
	return (int) n_rows;
}

/* Fetch the trained weights (a bytea) and the stored config. */
static bytea *
train_fetch(const char *name, Size blob_len, Size config_len, char **config)
{
	dsm_segment *seg = dsm_create(blob_len + config_len, 0);
	QuiverSlot *slot = queue_begin(REQ_TRAIN_FETCH, name);
	bytea	   *weights = palloc(VARHDRSZ + blob_len);

	slot->dsm = dsm_segment_handle(seg);
	queue_submit_and_wait(slot);
	queue_raise(slot);
	queue_finish(slot);
	SET_VARSIZE(weights, VARHDRSZ + blob_len);
	memcpy(VARDATA(weights), dsm_segment_address(seg), blob_len);
	*config = pstrdup((char *) dsm_segment_address(seg) + blob_len);
	dsm_detach(seg);
	return weights;
}

static void
put_epoch_rows(FunctionCallInfo fcinfo, const QvTrainEpoch *rows, int n)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int32GetDatum(rows[i].epoch);
		values[1] = Float8GetDatum(rows[i].loss);
		values[2] = Float8GetDatum(rows[i].train_acc);
		values[3] = Float8GetDatum(rows[i].val_acc);
		nulls[3] = isnan(rows[i].val_acc);
		values[4] = Float8GetDatum(rows[i].seconds);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* gnn_train(name, graph, arch, labels, config): train a model in the
 * engine and store it as gnn_create_model would. */
Datum
gnn_train(PG_FUNCTION_ARGS)
{
	char	   *name = arg_text(fcinfo, 0, "name");
	char	   *graph = arg_text(fcinfo, 1, "graph");
	char	   *arch_in = arg_text(fcinfo, 2, "arch");
	char	   *labels_sql = arg_text(fcinfo, 3, "labels");
	char	   *config = "{}";
	char	   *stored_config;
	QvArch		arch;
	int64	   *ids;
	int32	   *labels;
	int64		n;
	QvTrainEpoch *rows;
	int			n_rows;
	Size		blob_len, config_len;
	bytea	   *weights;

	if (!PG_ARGISNULL(4))
		config = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(4)));
	arch = model_create_check("gnn_train", name, graph, arch_in);
	n = catalog_read_labels(labels_sql, &ids, &labels);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("labels query returned no rows: there is no labelled node to train on"),
				 errdetail("Query: %s", labels_sql)));

	n_rows = train_request(name, graph, arch, config, ids, labels, n, &rows, &blob_len,
						   &config_len);
	weights = train_fetch(name, blob_len, config_len, &stored_config);
	model_create_staged(name, graph, arch, weights, stored_config);

	InitMaterializedSRF(fcinfo, 0);
	put_epoch_rows(fcinfo, rows, n_rows);
	return (Datum) 0;
}

/* gnn_progress: the training the engine runs, if any. */
Datum
gnn_training(PG_FUNCTION_ARGS)
{
	static const char *const phases[] = {
		[QV_TRAIN_PREPARING] = "preparing",
		[QV_TRAIN_TRAINING] = "training",
		[QV_TRAIN_VALIDATING] = "validating",
		[QV_TRAIN_DONE] = "done",
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QuiverTrainStatus st;
	Datum		values[11];
	bool		nulls[11] = {0};

	InitMaterializedSRF(fcinfo, 0);
	if (quiver_shared == NULL || !quiver_serves_this_database())
		return (Datum) 0;
	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	st = quiver_shared->train;
	LWLockRelease(quiver_shared->lock);
	if (!st.active)
		return (Datum) 0;
	values[0] = CStringGetTextDatum(st.model);
	values[1] = CStringGetTextDatum(st.graph);
	values[2] = Int32GetDatum(st.pid);
	values[3] = CStringGetTextDatum(st.phase >= 0 && st.phase <= QV_TRAIN_DONE ? phases[st.phase] : "?");
	values[4] = Int32GetDatum(st.epoch);
	values[5] = Int32GetDatum(st.epochs);
	values[6] = Int64GetDatum(st.batches_done);
	values[7] = Int64GetDatum(st.batches_total);
	values[8] = Float8GetDatum(st.loss);
	values[9] = TimestampTzGetDatum(st.started);
	values[10] = Int64GetDatum(st.bytes);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
