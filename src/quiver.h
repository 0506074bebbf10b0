/*
 * quiver.h — declarations shared by the PostgreSQL glue of quiver.
 *
 * Backends talk to the one engine process through a shared-memory slot per
 * backend (indexed by pgprocno): the backend fills its slot and wakes the
 * engine; the engine answers in the slot and wakes the backend.  Both
 * sleep on futexes in shared memory (queue.c), not on latches: a wake-up
 * is one system call on each side.  Bulk inputs (graph rows, weights) travel in a DSM segment that the
 * backend creates and the engine attaches.
 */
#ifndef QUIVER_H
#define QUIVER_H

#include "postgres.h"

#include "port/atomics.h"
#include "storage/dsm.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "nodes/pg_list.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "model.h"
#include "variants.h"
#include "qv_error.h"

#define QUIVER_SLOT_PAYLOAD (64 * 1024)	/* inline ids + predictions */
#define QUIVER_RESULT_NEEDS_SEGMENT (-1)	/* result[0] of a predict answer whose
											 * rows do not fit the slot */
#define QUIVER_MAX_GRAPHS 128	/* resident graphs */
#define QUIVER_MAX_MODELS 256	/* resident models */
#define QUIVER_DIR_SIZE (QUIVER_MAX_GRAPHS + QUIVER_MAX_MODELS)
#define QUIVER_LAT_BUCKETS 96	/* latency histogram, 2^(1/4) steps from 1 us */
#define QUIVER_DETAIL_LEN 256
#define QUIVER_MAX_GPUS 16		/* = QV_DISPATCH_MAX_GPUS */
#define QUIVER_LIVE_PREPARED 64 /* prepared transactions with live changes */
#define QUIVER_TRAIN_RECENT 32	/* epochs gnn_progress keeps for NOTICEs */

/* GUCs */
extern char *quiver_database;
extern char *quiver_default_model;
extern int	quiver_engine_threads;
extern int	quiver_max_batch;
extern int	quiver_batch_wait_us;
extern int	quiver_engine_start_timeout;
extern int	quiver_debug_engine_delay_ms;
extern int	quiver_memory_limit_mb;
extern char *quiver_gpu_module;
extern int	quiver_gpu_cache_size_mb;
extern bool quiver_gpu_allow_tf32;
extern double quiver_psgs_threshold;
extern double quiver_replan_drift;
extern int	quiver_prefetch_rows;
extern int	quiver_catalog_poll_ms;
extern int	quiver_refresh_delay_ms;
extern int	quiver_load_lock_timeout_ms;
extern double quiver_latency_target_ms;
extern double quiver_min_agreement;
extern int	quiver_slice_size;

typedef enum SlotState
{
	SLOT_FREE = 0,
	SLOT_PENDING,				/* filled by the backend, not yet taken */
	SLOT_RUNNING,				/* the engine works on it */
	SLOT_DONE,					/* answer ready for the backend */
	SLOT_ABANDONED				/* backend gave up (cancel); engine frees it */
} SlotState;

typedef enum RequestKind
{
	REQ_PREDICT = 1,
	REQ_STAGE_GRAPH,			/* build a graph, staged in the caller's xact */
	REQ_STAGE_MODEL,
	REQ_STAGE_DROP_GRAPH,		/* a drop, staged likewise */
	REQ_STAGE_DROP_MODEL,
	REQ_EXPLAIN,
	REQ_LOAD_GRAPH,				/* a loader's rows of a committed version */
	REQ_LOAD_MODEL,				/* a loader's weights of a committed version */
	REQ_LOAD_FAILED,			/* a loader could not read a version */
	REQ_SYNC,					/* resolve staged changes before a look at
								 * the directory */
	REQ_TRAIN,					/* gnn_train: answered when training ends */
	REQ_TRAIN_FETCH				/* copy a finished training's weights */
} RequestKind;

/* What a predict request asks of each node: the model's output (for
 * gnn_predict and gnn_classify) or a hidden layer's (gnn_embed). */
typedef enum OutputKind
{
	OUTPUT_PREDICTION = 0,
	OUTPUT_EMBEDDING
} OutputKind;

typedef struct OutputSpec
{
	OutputKind	kind;
	bool		last_hidden;	/* embedding: layer NULL, i.e. L-1 */
	int32		layer;			/* embedding: 1 .. L-1 as the caller gave it */
} OutputSpec;

#define OUTPUT_SPEC_PREDICTION ((OutputSpec) {OUTPUT_PREDICTION, false, 0})

/* The two kinds of objects the engine holds. */
typedef enum ObjKind
{
	OBJ_GRAPH = 'g',
	OBJ_MODEL = 'm'
} ObjKind;

/* A model's precomputed hidden layers (config "precompute", DESIGN 1.5). */
typedef enum PrecomputeState
{
	PRECOMPUTE_NONE = 0,		/* not asked for */
	PRECOMPUTE_BUILDING,		/* rows being computed: predictions run the
								 * full forward meanwhile (the same values) */
	PRECOMPUTE_READY,			/* predictions read the stored rows */
	PRECOMPUTE_REFUSED			/* over quiver.memory_limit, or out of
								 * memory: the full forward serves */
} PrecomputeState;

/* What the directory says of a named object. */
typedef enum ObjState
{
	OBJ_READY = 1,				/* resident and serving */
	OBJ_FAILED					/* its catalog version could not be built */
} ObjState;

typedef enum EngineState
{
	ENGINE_DOWN = 0,
	ENGINE_STARTING,			/* connecting and rebuilding from the catalog */
	ENGINE_READY
} EngineState;

typedef struct QuiverSlot
{
	slock_t		mutex;			/* protects state */
	SlotState	state;
	pg_atomic_uint32 answer_seq;	/* futex word: bumped at every answer */
	pg_atomic_uint32 sleeping;	/* the backend may be in futex_wait */
	RequestKind kind;
	int			procno;			/* requesting backend */
	TimestampTz submitted;
	char		name[NAMEDATALEN];	/* model or graph */
	char		graph[NAMEDATALEN]; /* graph of a model being created */
	dsm_handle	dsm;			/* bulk input (or, for predict, the area for
								 * rows too wide for the slot), or
								 * DSM_HANDLE_INVALID */
	int64		version;		/* stage: catalog version being staged */
	TransactionId xid;			/* stage: the (sub)transaction staging it */
	TransactionId top_xid;		/* stage, predict: the caller's top-level
								 * xid when it staged objects, else invalid */
	int32		n_ids;			/* predict: ids in payload */
	OutputSpec	output;			/* predict: what each id gets */
	double		target_ms;		/* predict, explain: quiver.latency_target
								 * at the call (0: none) */
	double		min_agreement;	/* ... and quiver.min_agreement */
	int32		out_dim;		/* predict: filled by the engine */
	/* answer */
	int			sqlstate;		/* 0 = success */
	char		errmsg[QV_ERRMSG_LEN];
	int64		result[4];		/* load graph: nodes, edges, dim, bytes */
	double		payload_align;	/* keeps payload 8-byte aligned */
	char		payload[QUIVER_SLOT_PAYLOAD];	/* ids (int64), then floats */
} QuiverSlot;

/* A part of a predict request: ids [offset, offset + count) of its slot.
 * A request is served in parts when the engine cuts it into slices
 * (quiver.slice_size); it is answered once every part is. */
typedef struct SlotPart
{
	QuiverSlot *slot;
	int32		offset;
	int32		count;
} SlotPart;

/* One variant of a model as the engine publishes it (gnn_variants). */
typedef struct QuiverVariantEntry
{
	int32		fanout[QV_MAX_LAYERS];
	bool		precompute;
	double		recompute;
	double		agreement;		/* NaN: not profiled */
	double		mean_rel_error;
	int64		sampled;		/* nodes profiled */
	double		cost_a_us;		/* cost = a + b x batch size, NaN: no line */
	double		cost_b_us;
	int64		cost_samples;
	int64		batches;		/* batches served by this variant */
	int64		misses;			/* ... chosen with no variant predicted to
								 * meet the batch's target */
} QuiverVariantEntry;

/* One resident graph or model as the engine publishes it. */
typedef struct QuiverDirEntry
{
	bool		used;
	ObjKind		kind;
	char		name[NAMEDATALEN];
	char		graph[NAMEDATALEN];
	ObjState	state;
	char		detail[QUIVER_DETAIL_LEN];
	int64		version;		/* catalog version resident (or that failed) */
	TimestampTz loaded_at;
	int64		bytes;
	int64		nodes;
	int64		edges;
	int64		dangling;		/* live graph: edge rows left out (1.4) */
	int32		feature_dim;
	int32		arch;
	int32		layers;
	int32		out_dim;
	int32		layer_dims[QV_MAX_LAYERS];	/* output width of each layer */
	int32		fanout[QV_MAX_LAYERS];
	/* model statistics */
	int64		requests;
	int64		batches;
	int64		seeds;
	int64		cpu_batches;
	int64		gpu_batches;
	int64		lat_hist[QUIVER_LAT_BUCKETS];
	double		cost_a_us;		/* CPU cost model: a + b x PSGS */
	double		cost_b_us;
	int64		cost_samples;
	double		psgs_threshold; /* θ: GPU above it (infinity: always CPU) */
	char		threshold_reason[64];
	double		gpu_cost_a_us;	/* GPU cost model, NaN before any sample */
	double		gpu_cost_b_us;
	int64		gpu_cost_samples;
	int64		gpu_rows[3];	/* feature rows GPU batches read: own memory,
								 * a peer GPU, pinned host memory */
	/* a model's precomputed hidden layers */
	PrecomputeState pre_state;
	int64		pre_bytes;		/* held (counted against quiver.memory_limit) */
	int64		pre_need;		/* what a full precompute needs */
	int64		pre_done;		/* row computations of the first build done */
	int64		pre_total;		/* ... due */
	int64		pre_stale;		/* rows stale or missing, every layer */
	int64		pre_refreshed;	/* rows the background refresher recomputed */
	int64		pre_recomputed; /* rows recomputed for requests ("recompute") */
	TimestampTz pre_stale_since;	/* when the oldest pending change was
									 * applied; 0 when none */
	/* a model's variants (DESIGN 1.7), variant 0 first */
	int32		n_variants;
	QuiverVariantEntry variants[QV_MAX_VARIANT_MODELS];
	int64		late_requests;	/* answered after their latency target */
} QuiverDirEntry;

/* One GPU as the engine publishes it (gnn_gpus). */
typedef struct QuiverGpuEntry
{
	char		name[64];
	int64		total_bytes;
	int64		used_bytes;		/* stores and models quiver put there */
	bool		usable;
	char		detail[QUIVER_DETAIL_LEN];	/* why not usable */
	int64		batches;
	int64		seeds;
} QuiverGpuEntry;

/* What REQ_EXPLAIN answers, in the slot's payload. */
typedef struct ExplainResult
{
	double		psgs;
	double		psgs_threshold;
	char		path[8];		/* "cpu" or "gpu" */
	char		reason[160];
	double		cost_a_us;
	double		cost_b_us;
	double		predicted_cpu_us;
	int64		cost_samples;
	double		seed_share;		/* share of requested seeds that were this node */
	int32		variant;		/* the variant a batch of this node alone gets
								 * under the caller's latency target */
	char		variant_reason[160];
} ExplainResult;

/* The training job the engine runs (gnn_progress), under lock. */
typedef struct QuiverTrainStatus
{
	bool		active;
	char		model[NAMEDATALEN];
	char		graph[NAMEDATALEN];
	int			pid;			/* the calling backend */
	TimestampTz started;
	int32		phase;			/* QvTrainPhase */
	int32		epoch;
	int32		epochs;
	int64		batches_done;
	int64		batches_total;
	double		loss;			/* running mean of this epoch */
	int64		bytes;			/* what the job holds (counted against
								 * quiver.memory_limit) */
	int32		last_epoch;		/* the last finished epoch (0: none) */
	struct
	{
		double		loss,
					train_acc,
					val_acc,
					seconds;
	}			recent[QUIVER_TRAIN_RECENT];	/* epoch e's figures at
												 * (e - 1) % QUIVER_TRAIN_RECENT */
} QuiverTrainStatus;

typedef struct QuiverShared
{
	LWLock	   *lock;			/* protects directory, staged_bytes */
	slock_t		mutex;			/* protects engine fields */
	EngineState engine_state;
	pid_t		engine_pid;
	int			engine_procno;
	uint64		engine_generation;	/* bumped at every engine start */
	char		engine_detail[QUIVER_DETAIL_LEN];	/* what it is doing */
	int			gpu_count;
	QuiverGpuEntry gpus[QUIVER_MAX_GPUS];	/* under lock */
	pg_atomic_uint32 in_flight;	/* requests submitted and not yet answered */
	pg_atomic_uint32 engine_seq;	/* futex word: bumped to wake the engine */
	pg_atomic_uint32 engine_sleeping;	/* the engine may be in futex_wait */
	pg_atomic_uint32 catalog_changed;	/* set by committers of catalog
										 * writes: the engine re-reads it */
	pg_atomic_uint32 live_changed;	/* set by committers of live graph
										 * changes: the engine reads the log */
	uint32		live_prepared[QUIVER_LIVE_PREPARED];	/* under lock: top xids of
														 * prepared transactions
														 * with live changes */
	int64		staged_bytes;	/* under lock: bytes of staged graphs */
	pg_atomic_uint64 work_bytes;	/* the engine's batch working memory */
	pg_atomic_uint32 n_staged;	/* changes staged in the engine */
	QuiverTrainStatus train;	/* under lock */
	QuiverDirEntry dir[QUIVER_DIR_SIZE];
	int			n_slots;
	QuiverSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} QuiverShared;

extern QuiverShared *quiver_shared;

/* quiver.c */
extern bool quiver_init(void);
extern void quiver_check_ready(void);
extern bool quiver_serves_this_database(void);
extern int	quiver_sqlstate(QvErrCode code);
extern Size quiver_memory_limit_bytes(void);

/* queue.c: backend side */
extern QuiverSlot *queue_begin(RequestKind kind, const char *name);
extern void queue_submit_and_wait(QuiverSlot *slot);
extern void queue_submit_and_wait_long(QuiverSlot *slot, void (*tick) (void *arg), void *arg);
extern void queue_finish(QuiverSlot *slot);
extern void queue_raise(QuiverSlot *slot);

/* queue.c: engine side */
extern bool queue_take(QuiverSlot *slot, bool predict);
extern void queue_complete(QuiverSlot *slot);
extern bool queue_abandoned(QuiverSlot *slot);
extern bool queue_has_request_of(const char *name);
extern bool queue_has_pending(void);
extern void queue_fail(QuiverSlot *slot, int sqlstate, const char *fmt,...) pg_attribute_printf(3, 4);
extern void queue_fail_qv(QuiverSlot *slot, const QvError *err);
extern void queue_set_error(QuiverSlot *slot, int sqlstate, const char *fmt,...) pg_attribute_printf(3, 4);
extern bool queue_account(QuiverSlot *slot, int64 rows);
extern void queue_restart(QuiverSlot *slot);
extern int	queue_answer_parts(const SlotPart *parts, int n_parts, const float *out, int out_dim,
							   int64 *latency_us, int64 *late);
extern void queue_fail_parts(const SlotPart *parts, int n_parts, int sqlstate, const char *msg);
extern void queue_set_engine_detail(const char *detail);
extern void queue_reset_after_restart(void);
extern void queue_wake_engine(void);
extern void queue_engine_sleep(int timeout_ms, bool (*more_work) (void));
extern void queue_engine_poke(void);

/* catalog.c */
/* Where a live graph's rows were read: the snapshot (full xids) and, when
 * the reader's own transaction had written the log before, the log
 * position its later changes start from (live_state.c applies the log rows
 * this snapshot did not see). */
typedef struct LiveFrom
{
	uint64		xmin;
	uint64		xmax;
	uint64		own_xid;		/* 0: none */
	int64		own_seq;		/* own log rows with seq >= this are new */
	int32		n_xip;
	uint64	   *xip;			/* in progress at the snapshot */
} LiveFrom;

typedef struct GraphRows
{
	int64		n_nodes;
	int32		dim;
	int64	   *ids;
	float	   *feat;
	int64		n_edges;
	int64	   *src;
	int64	   *dst;
	bool		undirected;
	bool		live;			/* follows its tables (1.4): from is set */
	LiveFrom	from;
} GraphRows;
typedef struct GraphDef
{
	char	   *name;
	char	   *edges_query;
	char	   *features_query;
	bool		undirected;
	Oid			owner;
	char	   *search_path;	/* the creator's, for re-running the queries */
	bool		live;
	int32		live_dim;		/* live: the feature dimension (0: unknown) */
	int64		version;
} GraphDef;
typedef struct ModelDef
{
	char	   *name;
	char	   *graph;
	char	   *arch;
	char	   *config;
	bytea	   *weights;
	int64		version;
} ModelDef;
typedef struct CatalogVersion
{
	char		name[NAMEDATALEN];
	int64		version;
} CatalogVersion;
extern void catalog_read_graph_rows(const char *edges_sql, const char *features_sql, GraphRows *rows,
									int32 empty_dim);
extern char *catalog_extension_schema(void);
extern Size graph_rows_bytes(const GraphRows *rows);
extern void catalog_check_writable(const char *function);
extern void catalog_check_name(const char *name, ObjKind kind);
extern bool catalog_check_rights(ObjKind kind, const char *name, AclMode mode, bool must_exist);
extern int64 catalog_put_graph(const char *name, const char *edges, const char *features, bool undirected,
								 bool live, int32 live_dim);
struct _SPI_plan;
extern void catalog_read_query_rows(struct _SPI_plan *plan, const char *what, GraphRows *rows);
extern struct _SPI_plan *catalog_keep_rows_query(const char *sql, const char *what);
extern int64 catalog_touch_graph(const char *name);
extern int64 catalog_read_labels(const char *sql, int64 **ids, int32 **labels);
extern int64 catalog_put_model(const char *name, const char *graph, const char *arch,
							   bytea *weights, const char *config);
extern int64 catalog_delete(ObjKind kind, const char *name);
extern bool catalog_graph_has_models(const char *graph);
extern bool catalog_get_graph(const char *name, GraphDef *def);
extern bool catalog_get_model(const char *name, ModelDef *def);
extern void catalog_read_graph_def(const GraphDef *def, GraphRows *rows, int lock_timeout_ms);
extern List *catalog_versions(ObjKind kind);
extern void catalog_note_write(void);
extern char *catalog_in_transaction(void (*fn) (const char *name, void *arg), const char *name,
									void *arg, const char *activity);

/* predict.c: a backend's predict requests */
extern float *predict_request(const char *model, OutputSpec output, const int64 *ids, int n,
							  int *out_dim);
extern float *predict_try(const char *model, OutputSpec output, const int64 *ids, int n,
						  int *out_dim);
extern int	predict_ids_per_request(const char *model, OutputSpec output);

/* functions.c: a text argument that must not be NULL */
extern char *arg_text(FunctionCallInfo fcinfo, int i, const char *argname);

/* functions.c: the checks before creating a model (returns its arch) */
extern QvArch model_create_check(const char *function, const char *name, const char *graph,
								 const char *arch_name);

/* functions.c: a model written to the catalog and staged, as
 * gnn_create_model does (rights already checked) */
extern void model_create_staged(const char *name, const char *graph, QvArch arch,
								const bytea *weights, const char *config);

/* prefetch_plan.c, prefetch_exec.c: row-at-a-time calls batched per block
 * of rows */
extern void prefetch_init(void);
extern const float *prefetch_lookup(const char *model, OutputSpec output, int64 id,
									int *out_dim);

/* worker.c */
extern PGDLLEXPORT void quiver_engine_main(Datum arg);

/* loader.c: a dynamic background worker that reads one committed object
 * from the catalog (a graph's rows, a model's weights) for the engine */
extern PGDLLEXPORT void quiver_loader_main(Datum arg);

/* transfer.c: bulk payloads in DSM */
extern dsm_segment *transfer_graph_rows(const GraphRows *rows, dsm_handle *handle);
extern void transfer_graph_view(void *base, GraphRows *rows);
extern dsm_segment *transfer_model(const char *arch, const char *config, const bytea *weights, dsm_handle *handle);
extern void transfer_model_view(void *base, const char **arch, const char **config, const uint8 **weights, size_t *weights_len);
extern dsm_segment *transfer_train(const char *arch, const char *config, const int64 *ids,
								   const int32 *labels, int64 n, dsm_handle *handle);
extern void transfer_train_view(void *base, const char **arch, const char **config,
								const int64 **ids, const int32 **labels, int64 *n);

#endif
