/*
 * model.h — GNN models with PyTorch Geometric's tensor names and semantics.
 *
 * GraphSAGE (torch_geometric.nn.models.GraphSAGE, mean aggregation):
 *   convs.{i}.lin_l.weight [out, in], convs.{i}.lin_l.bias [out],
 *   convs.{i}.lin_r.weight [out, in]  (convs.{i}.lin_r.bias accepted if present)
 *   h' = lin_l(mean_{u in N(v)} h_u) + lin_r(h_v), mean over no neighbours = 0
 * GCN (torch_geometric.nn.models.GCN, GCNConv defaults):
 *   convs.{i}.lin.weight [out, in], convs.{i}.bias [out]
 *   h' = sum_{u in N(v) + v} W h_u / sqrt(dh_u dh_v) + b, dh = in-degree + 1
 * GAT (torch_geometric.nn.models.GAT, GATConv, v2 = False):
 *   convs.{i}.lin.weight [H C, in], convs.{i}.att_src and convs.{i}.att_dst
 *   [1, H, C], convs.{i}.bias [H C] (hidden layers) or [C] (the last);
 *   H (heads) and C come from att_src's shape.  With x' = W h (no bias),
 *   per head k and edge u -> v of N(v) (self loops dropped) plus one
 *   added self loop v -> v:
 *     e_uv = LeakyReLU_0.2(att_src_k . x'_u,k + att_dst_k . x'_v,k)
 *     o_v,k = sum_u softmax_u(e_uv) x'_u,k  (duplicate edges count apart)
 *   hidden layers concatenate the heads (out = H C), the last averages
 *   them (out = C, PyG's GAT sets concat=False on its last conv); + bias.
 * ReLU between layers, none after the last.
 *
 * fanout[h] is the number of neighbours sampled at hop h+1 from the seeds,
 * as PyG's NeighborLoader num_neighbors: fanout[0] feeds the LAST layer.
 * -1 takes every neighbour.
 *
 * seed (config "seed", an integer 0 .. 2^63-1, default 0) picks the
 * sampled neighbourhoods: with the graph's version, the hop and the node it
 * is the whole key of a node's draw (sample_hash.h), so predictions with a
 * fanout are repeatable and another seed gives another draw.
 */
#ifndef QV_MODEL_H
#define QV_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qv_error.h"

#define QV_MAX_LAYERS 8

typedef enum QvArch
{
	QV_ARCH_GRAPHSAGE = 1,
	QV_ARCH_GCN = 2,
	QV_ARCH_GAT = 3
} QvArch;

typedef struct QvLayer
{
	int32_t		in_dim;
	int32_t		out_dim;
	float	   *weight_l;		/* [out, in]: SAGE lin_l.weight, GCN lin.weight */
	float	   *bias_l;			/* [out]: SAGE lin_l.bias, GCN bias; may be NULL */
	float	   *weight_r;		/* [out, in]: SAGE lin_r.weight; NULL for GCN */
	float	   *bias_r;			/* [out]: SAGE lin_r.bias if given, else NULL */
	/* GAT only (0 / NULL for the others); weight_l is lin.weight [heads *
	 * head_dim, in], bias_l the bias [out] */
	int32_t		heads;
	int32_t		head_dim;		/* C: channels per head */
	int32_t		concat;			/* 1: out = heads * C; 0: heads averaged, out = C */
	float	   *att_src;		/* [heads, C] */
	float	   *att_dst;		/* [heads, C] */
} QvLayer;

/*
 * Config "variants" (DESIGN 1.7): a JSON array of at most QV_MAX_VARIANTS
 * objects, the model's variants 1..n (variant 0 is the model itself, never
 * listed).  Each may hold "fanout" (as the model's: one entry per layer,
 * -1 or >= 1; with precompute, one entry alone), "precompute" and
 * "recompute" (as the model's keys).  A key a variant leaves out takes the
 * model's value; recompute falls back to 0 in a variant whose precompute
 * is false, and recompute given in a variant needs that variant's
 * precompute (given or taken) to be true.  Other keys and bad values are
 * QV_EINVAL naming the value by its path, "variants[1].fanout[0]" (the
 * array's index, 0-based: variants[0] is variant 1).  Fanout lengths are
 * checked against the model's layers by qv_model_load and
 * qv_model_variant_apply.
 */
#define QV_MAX_VARIANTS 8

typedef struct QvVariantConfig
{
	int32_t		fanout[QV_MAX_LAYERS];
	int32_t		n_fanout;		/* 0: no "fanout" (the model's fanouts) */
	bool		has_precompute; /* "precompute" given */
	bool		precompute;
	bool		has_recompute;	/* "recompute" given */
	double		recompute;
} QvVariantConfig;

typedef struct QvModel
{
	QvArch		arch;
	int32_t		n_layers;
	QvLayer		layers[QV_MAX_LAYERS];
	int32_t		fanout[QV_MAX_LAYERS];	/* fanout[0] = hop 1 from the seeds */
	int32_t		in_dim;
	int32_t		out_dim;
	size_t		bytes;			/* parameter bytes held */
	uint64_t	seed;			/* config "seed": the sampler's key */
	bool		precompute;		/* config "precompute": serve from stored
								 * hidden layers (precompute.h) */
	double		recompute;		/* config "recompute": the share p in [0, 1]
								 * of stale rows a request recomputes */
	int32_t		n_variants;		/* config "variants" (0 in a variant model) */
	QvVariantConfig variants[QV_MAX_VARIANTS];	/* variants[i] is variant i+1 */
} QvModel;


/* Everything a model config holds (qv_model_config_parse_all). */
typedef struct QvModelConfig
{
	int32_t		fanout[QV_MAX_LAYERS];
	int32_t		n_fanout;		/* 0: no "fanout" (-1 on every layer) */
	uint64_t	seed;			/* 0 when absent */
	bool		precompute;		/* "precompute": true; false when absent */
	double		recompute;		/* "recompute"; 0 when absent */
	int32_t		n_variants;		/* entries of "variants" (0 .. QV_MAX_VARIANTS) */
	QvVariantConfig variants[QV_MAX_VARIANTS];	/* variants[i] is variant i+1 */
} QvModelConfig;

/* Whether m or one of its variants serves from precomputed rows (so its
 * rows are kept when it is installed). */
bool		qv_model_any_precompute(const QvModel *m);

/* "graphsage", "gcn" or "gat" (case-insensitive). */
int			qv_arch_parse(const char *name, QvArch *out, QvError *err);
const char *qv_arch_name(QvArch arch);

/* Parse the config JSON ({"fanout": [15, 10], "seed": 7}); n_fanout = 0
 * when fanout is absent, *seed = 0 when seed is (seed may be NULL: then
 * the key is still checked).  Unknown keys, fanouts other than -1 or >= 1
 * and a seed that is not an integer in 0 .. QV_MODEL_SEED_MAX are errors
 * naming the value. */
#define QV_MODEL_SEED_MAX INT64_MAX
int			qv_model_config_parse(const char *json, int32_t *fanout,
								  int32_t *n_fanout, uint64_t *seed, QvError *err);

/*
 * The whole config: fanout and seed as above, "precompute" a JSON boolean
 * (default false), "recompute" a number in [0, 1] (default 0), allowed
 * only with "precompute": true, "training" an object that serving ignores
 * (the training config of a model gnn_train stored, train.h), "variants"
 * as above.  Errors name the value.  On failure *cfg
 * holds the defaults.  qv_model_config_parse is this, keeping fanout and
 * seed.
 */
int			qv_model_config_parse_all(const char *json, QvModelConfig *cfg, QvError *err);

/* Build a model from a safetensors blob and a config; the weights' input
 * dimension must equal feature_dim.  A config without fanout means -1 on
 * every layer, one without seed means seed 0; "precompute" and
 * "recompute" go to m->precompute and m->recompute.  A weight holding NaN or an
 * infinity (F32, or F16/BF16 after widening) is QV_EDATA naming the tensor
 * and the element's index.  The config's "variants" are checked against
 * the model (qv_model_variant_apply) but not kept: variants.h makes them. */
int			qv_model_load(QvArch arch, const uint8_t *st, size_t st_len,
						  const char *config_json, int32_t feature_dim,
						  QvModel **out, QvError *err);

void		qv_model_free(QvModel *m);

/*
 * Turn *v, a copy of the model base (*v = *base: the same weight
 * pointers), into variant `index` (1-based) of cfg: its fanouts,
 * precompute and recompute as QvVariantConfig says, checked as
 * qv_model_load checks the model's own (fanout length = layers, or 1
 * with precompute; precompute needs a hidden layer and fanout[1..] = -1).
 * Errors name the variant's path ("config variants[0].fanout has 3
 * entries, model has 2 layers").  v never owns the weights: never pass it
 * to qv_model_free.
 */
int			qv_model_variant_apply(QvModel *v, const QvModel *base,
								   const QvModelConfig *cfg, int32_t index,
								   QvError *err);

/* QV_OK when layer is a hidden layer (1 .. n_layers-1) of a model of
 * n_layers layers, else QV_EINVAL naming the layer: the one check of
 * embedding layers, on the CPU (qv_embed) and in the GPU module. */
static inline int
qv_hidden_layer_check(int32_t n_layers, int32_t layer, QvError *err)
{
	if (n_layers < 2)
		return qv_error(err, QV_EINVAL,
						"the model has %d layer and so no hidden layer to take embeddings from",
						(int) n_layers);
	if (layer < 1 || layer > n_layers - 1)
		return qv_error(err, QV_EINVAL,
						"layer %d is not a hidden layer: the model has %d layers, so it must be %s%d",
						(int) layer, (int) n_layers, n_layers > 2 ? "between 1 and " : "",
						(int) n_layers - 1);
	return QV_OK;
}

/* QV_OK when n_hops is 0..QV_MAX_LAYERS and every fanout is -1 or >= 1. */
int			qv_check_fanouts(const int32_t *fanout, int n_hops, QvError *err);

#endif
