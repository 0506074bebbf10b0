/*
 * train.h — training a GNN in the engine (DESIGN 1.6: gnn_train; Dorylus's
 * separated graph and tensor stages, GEAR's prioritized seed selection).
 *
 * A QvTrainer owns a model (QvModel, the served forward's weights) and
 * trains it on a graph's labelled nodes with mini-batches drawn by the
 * neighbour sampler (without replacement, fanout per hop as for serving).
 * The forward pass is the served one (forward.c's semantics: GraphSAGE mean
 * aggregation, GCN normalisation with one self loop and sampled
 * neighbours rescaled), ReLU between layers, dropout after each hidden
 * layer's ReLU (PyG's BasicGNN.forward: conv, act, dropout on every layer
 * but the last; the input features get none), training only, inverted
 * (kept values scaled by 1/(1-p)); the loss is the mean cross-entropy of
 * the logits over the batch's seeds.  A batch's seeds are sampled with
 * de-duplication on every hop, the sampler's seed argument keyed by
 * (config seed, epoch, batch) so that draws differ between steps.
 *
 * GAT (train_gat.c) is PyG's GAT(in, hidden, layers, classes, heads=H):
 * hidden layers concatenate H heads of hidden / H channels (hidden must be
 * a multiple of H: QV_EINVAL naming both), the last layer averages H heads
 * of n_classes channels.  As PyG's GAT passes its dropout to every GATConv,
 * dropout p > 0 also drops attention coefficients in every layer, the last
 * included (GATConv: inverted dropout on alpha after the softmax, per edge
 * and head, training only).
 *
 * Pipeline (Dorylus, "pipeline": {"staleness": S}, 0 <= S <= 64): a
 * batch's graph stage (seeds, neighbour sample, aggregation matrices,
 * gathered input rows: nothing that reads the weights) and its tensor
 * stage (forward, loss, backward, optimizer step).  S = 0: both on the
 * caller's thread in turn, plain synchronous SGD.  S >= 1: the graph
 * stages run on a thread of their own (serially, pool NULL), at most S
 * batches ahead of the batch in the tensor stage; tensor stages run in
 * order on the caller's thread with the pool.  The batch taken at
 * optimizer step j (counted over the whole run) runs its forward and its
 * backward on the weights after update max(j0, j - S) (j0: the step at
 * which the pipeline first ran), and the step applies that gradient to the
 * newest weights; the S + 1 newest versions are stashed (reference-counted
 * copies).  So S >= 1 is deterministic too, with gradients exactly S
 * updates old.  The yield hook is called on the caller's thread only, at
 * the same points for every S.  docs/training.md for the memory.
 *
 * Seed selection (GEAR, "seed_selection": "loss"): epoch 1 is uniform;
 * each later epoch draws n_train seeds with replacement, node i with
 * probability p_i proportional to max(l_i, mean / 10), l_i its last
 * observed loss (from its forward: dropout, stale weights and all; never
 * seen: the mean over the nodes seen), through Vose's alias table, draw k
 * keyed by (seed, epoch, k).  Seed k of a batch of n_b has the importance
 * weight w_k = (1 / p_k) n_b / sum over the batch of 1 / p_j (1 / (n p_k)
 * normalised to average 1 over the batch); the batch's loss, and the
 * epoch's reported loss, is (1 / n_b) sum w_k CE_k; train_acc counts the
 * draws.  A batch may hold a node twice (sampled once, two loss terms).
 *
 * Gradients flow through every layer type; the optimizer is Adam (PyTorch's
 * defaults: betas 0.9 / 0.999, eps 1e-8, weight_decay added to the
 * gradient as torch.optim.Adam does) or SGD (no momentum, weight_decay
 * likewise).  Weights are initialised as PyG's layers do (Linear:
 * kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), bias
 * U(-1/sqrt(in), 1/sqrt(in)); GCNConv and GATConv: glorot weights and
 * attention vectors, zero bias; SAGEConv's lin_r has no bias), drawn from
 * the counter-based hash of sample_hash.h keyed by config seed, or copied
 * from an initial model (init_from, fine-tuning).
 *
 * Determinism: for every staleness a run is a function of (graph, labels,
 * config, initial weights): the epoch's seed order (hash of (seed, epoch,
 * node)), draws of the sampler and dropout masks (keyed by (seed, epoch,
 * batch, layer, row), GAT's attention masks by (seed, epoch, batch, layer,
 * edge, head)) and GEAR's draws (seed, epoch, index) go through
 * sample_hash.h, never by thread timing, and results do not depend on the
 * pool size (fixed block boundaries, one single-threaded OpenBLAS call per
 * block).
 *
 * Validation: a labelled node is held out when hash(seed, node id) falls
 * under val_fraction, so the split does not depend on the labels query's
 * order.
 *
 * Threads: every call but qv_trainer_cancel and qv_trainer_progress comes
 * from one thread; the trainer computes on the pool it is given, and
 * between stages calls the yield hook (qv_trainer_set_yield), which may
 * sleep while the caller serves something more urgent (the engine serves
 * predictions).  With staleness >= 1 each epoch also runs a graph-stage
 * thread of its own, joined before qv_trainer_epoch returns (also on
 * cancel or error).
 */
#ifndef QV_TRAIN_H
#define QV_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "model.h"
#include "pool.h"
#include "qv_error.h"

typedef enum QvOptimizer
{
	QV_OPT_ADAM = 1,
	QV_OPT_SGD
} QvOptimizer;

typedef enum QvSeedSelection
{
	QV_SELECT_UNIFORM = 1,		/* every training seed once per epoch, shuffled */
	QV_SELECT_LOSS				/* GEAR: drawn in proportion to their last loss,
								 * importance-weighted */
} QvSeedSelection;

typedef struct QvTrainConfig
{
	int32_t		hidden;			/* "hidden": hidden width (default 256) */
	int32_t		layers;			/* "layers" (default 2) */
	int32_t		heads;			/* "heads": GAT only (default 1) */
	int32_t		fanout[QV_MAX_LAYERS];	/* "fanout" (default -1 every hop) */
	int32_t		n_fanout;
	int32_t		batch_size;		/* "batch_size" (default 1024) */
	int32_t		epochs;			/* "epochs" (default 10) */
	double		lr;				/* "lr" (default 0.01) */
	double		weight_decay;	/* "weight_decay" (default 0) */
	double		dropout;		/* "dropout" in [0, 1) (default 0) */
	QvOptimizer optimizer;		/* "optimizer": "adam" (default) or "sgd" */
	uint64_t	seed;			/* "seed" (default 0) */
	double		val_fraction;	/* "val_fraction" in [0, 1) (default 0.1) */
	int32_t		staleness;		/* "pipeline": {"staleness": S} (default 0) */
	QvSeedSelection selection;	/* "seed_selection" (default "uniform") */
	char		init_from[64];	/* "init_from": a model's name, or "" */
} QvTrainConfig;

/*
 * Parse gnn_train's config JSON (NULL or "{}": every default).  Unknown
 * keys and bad values are QV_EINVAL naming the key and the value (e.g.
 * "config lr = -1 must be a positive number"); *cfg then holds the
 * defaults.  A "fanout" without "layers" sets the layer count; both must
 * agree; without "fanout", n_fanout = layers, -1 each.
 */
int			qv_train_config_parse(const char *json, QvTrainConfig *cfg, QvError *err);

/* The config as JSON for the stored model's config (the serving keys
 * "fanout" and "seed", plus "training": the whole training config, which
 * qv_train_config_parse reads back and qv_model_config_parse ignores);
 * malloc'd, NULL with err. */
char	   *qv_train_config_json(const QvTrainConfig *cfg, QvError *err);

/* One epoch's figures (gnn_train's rows). */
typedef struct QvTrainEpoch
{
	int32_t		epoch;			/* 1-based */
	double		loss;			/* mean training loss over the epoch's batches */
	double		train_acc;		/* accuracy on the epoch's training seeds */
	double		val_acc;		/* on the held-out nodes (NaN if none) */
	double		seconds;
} QvTrainEpoch;

/* Where a run is, readable from another thread at any time. */
typedef enum QvTrainPhase
{
	QV_TRAIN_PREPARING = 0,
	QV_TRAIN_TRAINING,
	QV_TRAIN_VALIDATING,
	QV_TRAIN_DONE
} QvTrainPhase;

typedef struct QvTrainProgress
{
	QvTrainPhase phase;
	int32_t		epoch;
	int64_t		batches_done;	/* in this epoch */
	int64_t		batches_total;
	double		loss;			/* running mean of this epoch */
	size_t		bytes;			/* held: the model, its gradients and optimizer
								 * state, per-node arrays, batch buffers */
} QvTrainProgress;

typedef struct QvTrainer QvTrainer;

/*
 * A trainer of arch on g: nodes[0..n) dense indices of labelled nodes with
 * labels[0..n) in 0 .. n_classes-1 (checked: QV_EINVAL naming the node's
 * external id and the label).  init (may be NULL) is the model to start
 * from: its architecture, layers and widths must match (QV_EINVAL naming
 * what differs, e.g. its output width against n_classes); its weights are
 * copied.  No labelled node left for training (all held out, or n = 0) is
 * QV_EINVAL, and so is a node labelled twice (naming its id).
 */
int			qv_trainer_create(QvArch arch, const QvGraph *g, const int32_t *nodes,
							  const int32_t *labels, int64_t n, int32_t n_classes,
							  const QvTrainConfig *cfg, const QvModel *init,
							  QvTrainer **out, QvError *err);

/* Call yield(arg) between stages (graph and tensor stages, batches): the
 * caller may sleep there while it serves something more urgent. */
void		qv_trainer_set_yield(QvTrainer *t, void (*yield) (void *arg), void *arg);

/* Run one epoch; QV_ECANCELED (see qv_error.h) when cancelled. */
int			qv_trainer_epoch(QvTrainer *t, QvPool *pool, QvTrainEpoch *ep, QvError *err);

/* Ask a running epoch to stop at its next batch (any thread); the request
 * stays, so every later qv_trainer_epoch returns QV_ECANCELED too. */
void		qv_trainer_cancel(QvTrainer *t);

/* A consistent copy of where the run is (any thread); the phase is
 * QV_TRAIN_DONE once the config's last epoch has returned. */
void		qv_trainer_progress(const QvTrainer *t, QvTrainProgress *p);

/* The model as trained so far (valid until the next epoch or free): its
 * fanouts and seed are the config's, ready to serve. */
const QvModel *qv_trainer_model(const QvTrainer *t);

void		qv_trainer_free(QvTrainer *t);

/*
 * The model's weights as a safetensors blob with PyG's names (model.h,
 * DESIGN 1.2), F32, loadable by qv_model_load and by PyG's
 * load_state_dict(strict=True) for torch_geometric.nn.models.GraphSAGE /
 * GCN / GAT of the same shape.  malloc'd into *buf.
 */
int			qv_model_save_safetensors(const QvModel *m, uint8_t **buf, size_t *len,
									  QvError *err);

#endif
