/*
 * train.c — training a GNN in the engine core (train.h): the config, the
 * trainer's life (labels, validation split, initial weights), epochs of
 * mini-batches over train_step.c, progress and cancellation (the
 * weights as safetensors: train_save.c).
 *
 * Keys of the random draws (sample_hash.h's hash, so nothing depends on a
 * random stream or on thread timing):
 *   initial weights  (seed, layer, tensor), element i
 *   validation split (seed, node's external id)
 *   epoch order      (seed, epoch), node
 *   sampler's seed   (seed, epoch, batch)
 *   dropout          (seed, epoch, batch), layer, row, element
 *   GEAR's draw k    (seed, epoch, k), then 1 (column) and 2 (accept)
 *   GAT attention    (seed, epoch, batch), layer, edge, head
 *                    (both masks' keys: train_internal.h)
 */
#include "train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "classify.h"
#include "forward.h"
#include "sample_hash.h"

#define TR_DOMAIN_INIT UINT64_C(0x747261696e696e69)	/* "trainini" */
#define TR_DOMAIN_VAL UINT64_C(0x747261696e76616c)	/* "trainval" */
#define TR_DOMAIN_ORDER UINT64_C(0x747261696e6f7264)	/* "trainord" */
#define TR_DOMAIN_SAMPLE QV_TRAIN_KEY_SAMPLE
#define TR_DOMAIN_DROP QV_TRAIN_KEY_DROP

#define TR_MAX_WIDTH 65536		/* "hidden" and "heads" at most */
#define TR_MAX_EPOCHS 1000000
#define TR_MAX_STALENESS 64
#define TR_VAL_CHUNK 4096		/* validation ids per forward */

/* ---- config ------------------------------------------------------------------------- */

static void
config_defaults(QvTrainConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->hidden = 256;
	cfg->layers = 2;
	cfg->heads = 1;
	cfg->batch_size = 1024;
	cfg->epochs = 10;
	cfg->lr = 0.01;
	cfg->optimizer = QV_OPT_ADAM;
	cfg->val_fraction = 0.1;
	cfg->selection = QV_SELECT_UNIFORM;
}

/* The value v as compact JSON in an error message. */
static int
value_error(QvError *err, const char *key, json_t *v, const char *must)
{
	char	   *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	int			rc = qv_error(err, QV_EINVAL, "config %s = %.64s %s", key,
							  text ? text : "(unprintable)", must);

	free(text);
	return rc;
}

/* An integer key in [lo, hi]. */
static int
parse_int(const char *key, json_t *v, int64_t lo, int64_t hi, int32_t *out, QvError *err)
{
	char		must[96];

	snprintf(must, sizeof(must), "must be an integer between %lld and %lld",
			 (long long) lo, (long long) hi);
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return value_error(err, key, v, must);
	*out = (int32_t) json_integer_value(v);
	return QV_OK;
}

/* A number key in [lo, hi) (hi_open) or [lo, hi]; lo_open excludes lo. */
static int
parse_num(const char *key, json_t *v, double lo, bool lo_open, double hi, bool hi_open,
		  const char *must, double *out, QvError *err)
{
	double		x = json_is_number(v) ? json_number_value(v) : NAN;

	if (!isfinite(x) || x < lo || (lo_open && x == lo) || x > hi || (hi_open && x == hi))
		return value_error(err, key, v, must);
	*out = x;
	return QV_OK;
}

static int
parse_fanout(json_t *v, QvTrainConfig *cfg, QvError *err)
{
	size_t		n = json_is_array(v) ? json_array_size(v) : 0;

	if (n < 1 || n > QV_MAX_LAYERS)
		return value_error(err, "fanout", v, "must be an array of 1 to 8 integers (-1: every neighbour)");
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *x = json_array_get(v, i);

		if (!json_is_integer(x) || (json_integer_value(x) != -1 &&
									(json_integer_value(x) < 1 || json_integer_value(x) > INT32_MAX)))
		{
			char		key[32];

			snprintf(key, sizeof(key), "fanout[%zu]", i);
			return value_error(err, key, x, "must be -1 (every neighbour) or a positive integer");
		}
		cfg->fanout[i] = (int32_t) json_integer_value(x);
	}
	cfg->n_fanout = (int32_t) n;
	return QV_OK;
}

static int
parse_pipeline(json_t *v, QvTrainConfig *cfg, QvError *err)
{
	const char *key;
	json_t	   *x;

	if (!json_is_object(v))
		return value_error(err, "pipeline", v, "must be an object such as {\"staleness\": 0}");
	json_object_foreach(v, key, x)
	{
		int			rc;

		if (strcmp(key, "staleness") != 0)
			return qv_error(err, QV_EINVAL,
							"unknown config key \"pipeline.%.64s\" (known: staleness)", key);
		if ((rc = parse_int("pipeline.staleness", x, 0, TR_MAX_STALENESS, &cfg->staleness, err)))
			return rc;
	}
	return QV_OK;
}

/* One of the string keys: optimizer, seed_selection, init_from. */
static int
parse_string_key(const char *key, json_t *v, QvTrainConfig *cfg, QvError *err)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;

	if (strcmp(key, "optimizer") == 0)
	{
		if (s && strcmp(s, "adam") == 0)
			cfg->optimizer = QV_OPT_ADAM;
		else if (s && strcmp(s, "sgd") == 0)
			cfg->optimizer = QV_OPT_SGD;
		else
			return value_error(err, key, v, "must be \"adam\" or \"sgd\"");
	}
	else if (strcmp(key, "seed_selection") == 0)
	{
		if (s && strcmp(s, "uniform") == 0)
			cfg->selection = QV_SELECT_UNIFORM;
		else if (s && strcmp(s, "loss") == 0)
			cfg->selection = QV_SELECT_LOSS;
		else
			return value_error(err, key, v, "must be \"uniform\" or \"loss\"");
	}
	else
	{
		if (s == NULL || s[0] == '\0' || strlen(s) >= sizeof(cfg->init_from))
			return value_error(err, key, v, "must be a model's name (1 to 63 bytes)");
		strcpy(cfg->init_from, s);
	}
	return QV_OK;
}

/* Parse one key of the config object. */
static int
parse_key(const char *key, json_t *v, QvTrainConfig *cfg, bool *have_layers, QvError *err)
{
	json_int_t	seed;

	if (strcmp(key, "hidden") == 0)
		return parse_int(key, v, 1, TR_MAX_WIDTH, &cfg->hidden, err);
	if (strcmp(key, "layers") == 0)
		return (*have_layers = true, parse_int(key, v, 1, QV_MAX_LAYERS, &cfg->layers, err));
	if (strcmp(key, "heads") == 0)
		return parse_int(key, v, 1, TR_MAX_WIDTH, &cfg->heads, err);
	if (strcmp(key, "batch_size") == 0)
		return parse_int(key, v, 1, INT32_MAX, &cfg->batch_size, err);
	if (strcmp(key, "epochs") == 0)
		return parse_int(key, v, 1, TR_MAX_EPOCHS, &cfg->epochs, err);
	if (strcmp(key, "fanout") == 0)
		return parse_fanout(v, cfg, err);
	if (strcmp(key, "lr") == 0)
		return parse_num(key, v, 0.0, true, INFINITY, false, "must be a positive number", &cfg->lr, err);
	if (strcmp(key, "weight_decay") == 0)
		return parse_num(key, v, 0.0, false, INFINITY, false, "must be a number >= 0",
						 &cfg->weight_decay, err);
	if (strcmp(key, "dropout") == 0)
		return parse_num(key, v, 0.0, false, 1.0, true, "must be a number in [0, 1)",
						 &cfg->dropout, err);
	if (strcmp(key, "val_fraction") == 0)
		return parse_num(key, v, 0.0, false, 1.0, true, "must be a number in [0, 1)",
						 &cfg->val_fraction, err);
	if (strcmp(key, "seed") == 0)
	{
		if (!json_is_integer(v) || (seed = json_integer_value(v)) < 0)
			return value_error(err, key, v, "must be an integer between 0 and 9223372036854775807");
		cfg->seed = (uint64_t) seed;
		return QV_OK;
	}
	if (strcmp(key, "pipeline") == 0)
		return parse_pipeline(v, cfg, err);
	if (strcmp(key, "optimizer") == 0 || strcmp(key, "seed_selection") == 0 ||
		strcmp(key, "init_from") == 0)
		return parse_string_key(key, v, cfg, err);
	return qv_error(err, QV_EINVAL,
					"unknown config key \"%.64s\" (known: hidden, layers, heads, fanout, batch_size, epochs, lr, weight_decay, dropout, optimizer, seed, val_fraction, init_from, pipeline, seed_selection)",
					key);
}

/* Fanouts and layers agree: a fanout without "layers" sets the layer
 * count, none at all means -1 on every layer. */
static int
settle_fanout(QvTrainConfig *cfg, bool have_layers, QvError *err)
{
	if (cfg->n_fanout == 0)
	{
		for (int i = 0; i < cfg->layers; i++)
			cfg->fanout[i] = -1;
		cfg->n_fanout = cfg->layers;
		return QV_OK;
	}
	if (!have_layers)
		cfg->layers = cfg->n_fanout;
	if (cfg->n_fanout != cfg->layers)
		return qv_error(err, QV_EINVAL, "config fanout has %d entries, but layers = %d",
						(int) cfg->n_fanout, (int) cfg->layers);
	return QV_OK;
}

int
qv_train_config_parse(const char *json, QvTrainConfig *cfg, QvError *err)
{
	json_t	   *root;
	json_error_t jerr;
	const char *key;
	json_t	   *v;
	bool		have_layers = false;
	int			rc = QV_OK;

	if (cfg == NULL)
		return qv_error(err, QV_EINVAL, "qv_train_config_parse: NULL output");
	config_defaults(cfg);
	if (json == NULL || json[0] == '\0')
		return settle_fanout(cfg, false, err);
	root = json_loads(json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (root == NULL)
		return qv_error(err, QV_EINVAL, "training config is not valid JSON: %s (at line %d, column %d)",
						jerr.text, jerr.line, jerr.column);
	if (!json_is_object(root))
		rc = qv_error(err, QV_EINVAL,
					  "training config must be a JSON object such as {\"epochs\": 10}");
	else
		json_object_foreach(root, key, v)
			if ((rc = parse_key(key, v, cfg, &have_layers, err)) != QV_OK)
				break;
	json_decref(root);
	if (rc == QV_OK)
		rc = settle_fanout(cfg, have_layers, err);
	if (rc != QV_OK)
		config_defaults(cfg);
	return rc;
}

/* The fanouts as a JSON array (NULL when out of memory). */
static json_t *
fanout_json(const QvTrainConfig *cfg)
{
	json_t	   *a = json_array();

	for (int i = 0; a && i < cfg->n_fanout; i++)
		if (json_array_append_new(a, json_integer(cfg->fanout[i])) != 0)
		{
			json_decref(a);
			return NULL;
		}
	return a;
}

/* The whole training config as a JSON object (NULL when out of memory). */
static json_t *
training_json(const QvTrainConfig *cfg)
{
	json_t	   *fanout = fanout_json(cfg);
	json_t	   *o;

	if (fanout == NULL)
		return NULL;
	o = json_pack("{s:i, s:i, s:i, s:o, s:i, s:i, s:f, s:f, s:f, s:s, s:I, s:f, s:{s:i}, s:s}",
				  "hidden", (int) cfg->hidden, "layers", (int) cfg->layers,
				  "heads", (int) cfg->heads, "fanout", fanout,
				  "batch_size", (int) cfg->batch_size, "epochs", (int) cfg->epochs,
				  "lr", cfg->lr, "weight_decay", cfg->weight_decay, "dropout", cfg->dropout,
				  "optimizer", cfg->optimizer == QV_OPT_SGD ? "sgd" : "adam",
				  "seed", (json_int_t) cfg->seed, "val_fraction", cfg->val_fraction,
				  "pipeline", "staleness", (int) cfg->staleness,
				  "seed_selection", cfg->selection == QV_SELECT_LOSS ? "loss" : "uniform");
	if (o && cfg->init_from[0] &&
		json_object_set_new(o, "init_from", json_string(cfg->init_from)) != 0)
	{
		json_decref(o);
		return NULL;
	}
	return o;
}

char *
qv_train_config_json(const QvTrainConfig *cfg, QvError *err)
{
	json_t	   *fanout = fanout_json(cfg);
	json_t	   *training = training_json(cfg);
	json_t	   *o = NULL;
	char	   *text = NULL;

	if (fanout && training)
		o = json_pack("{s:o, s:I, s:o}", "fanout", fanout, "seed", (json_int_t) cfg->seed,
					  "training", training);
	else
	{
		json_decref(fanout);
		json_decref(training);
	}
	if (o)
		text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL)
		qv_error(err, QV_ENOMEM, "out of memory writing the training config as JSON");
	return text;
}

/* ---- the trainer ------------------------------------------------------------------------- */

/* Uniform double in [0, 1) of a hashed word. */
static inline double
unit_double(uint64_t x)
{
	return (double) (x >> 11) * 0x1p-53;
}

/* Fill w[0..n) with U(-bound, bound) drawn under (seed, layer, tensor). */
static void
init_uniform(float *w, size_t n, double bound, uint64_t seed, int layer, int tensor)
{
	uint64_t	key = qv_sh_absorb(qv_sh_absorb(qv_sh_absorb(TR_DOMAIN_INIT, seed),
											(uint64_t) layer), (uint64_t) tensor);

	for (size_t i = 0; i < n; i++)
		w[i] = (float) ((2.0 * unit_double(qv_sh_mix64(key + (i + 1) * QV_SH_GOLDEN)) - 1.0) * bound);
}

/* A float array of n for the model, counted in its bytes. */
static float *
model_array(QvModel *m, size_t n, QvError *err, const char *what)
{
	float	   *p = qv_calloc(n, sizeof(float), err, what);

	if (p)
		m->bytes += n * sizeof(float);
	return p;
}

/* GAT layer i's tensors as GATConv initialises them: glorot lin.weight
 * [H C, in] and attention vectors [1, H, C], zero bias. */
static int
init_gat_layer(QvModel *m, int i, uint64_t seed, QvError *err)
{
	QvLayer    *l = &m->layers[i];
	size_t		hc = (size_t) l->heads * l->head_dim;

	if ((l->weight_l = model_array(m, hc * l->in_dim, err, "layer weights")) == NULL ||
		(l->att_src = model_array(m, hc, err, "attention vectors")) == NULL ||
		(l->att_dst = model_array(m, hc, err, "attention vectors")) == NULL ||
		(l->bias_l = model_array(m, (size_t) l->out_dim, err, "layer bias")) == NULL)
		return QV_ENOMEM;
	init_uniform(l->weight_l, hc * l->in_dim, sqrt(6.0 / (double) (l->in_dim + hc)), seed, i, 0);
	init_uniform(l->att_src, hc, sqrt(6.0 / (double) (l->heads + l->head_dim)), seed, i, 3);
	init_uniform(l->att_dst, hc, sqrt(6.0 / (double) (l->heads + l->head_dim)), seed, i, 4);
	return QV_OK;
}

/* Layer i's tensors, initialised as PyG's layers (train.h). */
static int
init_layer(QvModel *m, int i, uint64_t seed, QvError *err)
{
	QvLayer    *l = &m->layers[i];
	size_t		n = (size_t) l->in_dim * l->out_dim;
	double		lin = 1.0 / sqrt((double) l->in_dim),
				glorot = sqrt(6.0 / (double) (l->in_dim + l->out_dim));

	if (m->arch == QV_ARCH_GAT)
		return init_gat_layer(m, i, seed, err);
	if ((l->weight_l = model_array(m, n, err, "layer weights")) == NULL ||
		(l->bias_l = model_array(m, (size_t) l->out_dim, err, "layer bias")) == NULL)
		return QV_ENOMEM;
	if (m->arch == QV_ARCH_GCN)
	{
		init_uniform(l->weight_l, n, glorot, seed, i, 0);
		return QV_OK;
	}
	if ((l->weight_r = model_array(m, n, err, "root weights")) == NULL)
		return QV_ENOMEM;
	init_uniform(l->weight_l, n, lin, seed, i, 0);
	init_uniform(l->bias_l, (size_t) l->out_dim, lin, seed, i, 1);
	init_uniform(l->weight_r, n, lin, seed, i, 2);
	return QV_OK;
}

/* A copy of src[0..n) (NULL for NULL) for the model. */
static int
copy_tensor(QvModel *m, const float *src, size_t n, float **dst, QvError *err)
{
	*dst = NULL;
	if (src == NULL)
		return QV_OK;
	if ((*dst = model_array(m, n, err, "copied weights")) == NULL)
		return QV_ENOMEM;
	memcpy(*dst, src, n * sizeof(float));
	return QV_OK;
}

/* init's shapes against the model to train, naming what differs. */
static int
check_init(const QvModel *init, const QvModel *m, QvError *err)
{
	if (init->arch != m->arch)
		return qv_error(err, QV_EINVAL, "init_from model is %s, training %s",
						qv_arch_name(init->arch), qv_arch_name(m->arch));
	if (init->n_layers != m->n_layers)
		return qv_error(err, QV_EINVAL, "init_from model has %d layers, config layers = %d",
						(int) init->n_layers, (int) m->n_layers);
	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *a = &init->layers[i],
				   *b = &m->layers[i];

		if (a->in_dim != b->in_dim)
			return qv_error(err, QV_EINVAL, "init_from model's layer %d takes %d inputs, %s %d",
							i, (int) a->in_dim,
							i == 0 ? "the graph's features have" : "config hidden is",
							(int) b->in_dim);
		if (a->out_dim != b->out_dim)
			return qv_error(err, QV_EINVAL, "init_from model's layer %d gives %d outputs, %s %d",
							i, (int) a->out_dim,
							i == m->n_layers - 1 ? "the labels have classes" : "config hidden is",
							(int) b->out_dim);
		if (a->weight_l == NULL || (m->arch == QV_ARCH_GRAPHSAGE && a->weight_r == NULL) ||
			(m->arch == QV_ARCH_GAT && (a->att_src == NULL || a->att_dst == NULL)))
			return qv_error(err, QV_EINVAL, "init_from model's layer %d lacks weights", i);
		if (m->arch == QV_ARCH_GAT && (a->heads != b->heads || a->head_dim != b->head_dim))
			return qv_error(err, QV_EINVAL,
							"init_from model's layer %d has %d heads of %d channels, config heads = %d makes %d of %d",
							i, (int) a->heads, (int) a->head_dim, (int) b->heads, (int) b->heads,
							(int) b->head_dim);
	}
	return QV_OK;
}

/* The weights of init, copied into m (same shapes). */
static int
copy_model(QvModel *m, const QvModel *init, QvError *err)
{
	int			rc;

	if ((rc = check_init(init, m, err)) != QV_OK)
		return rc;
	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *a = &init->layers[i];
		QvLayer    *b = &m->layers[i];
		size_t		hc = (size_t) a->heads * a->head_dim,
					n = (size_t) a->in_dim * (m->arch == QV_ARCH_GAT ? hc : (size_t) a->out_dim);

		if ((rc = copy_tensor(m, a->att_src, hc, &b->att_src, err)) ||
			(rc = copy_tensor(m, a->att_dst, hc, &b->att_dst, err)) ||
			(rc = copy_tensor(m, a->weight_l, n, &b->weight_l, err)) ||
			(rc = copy_tensor(m, a->bias_l, (size_t) a->out_dim, &b->bias_l, err)) ||
			(rc = copy_tensor(m, a->weight_r, n, &b->weight_r, err)) ||
			(rc = copy_tensor(m, a->bias_r, (size_t) a->out_dim, &b->bias_r, err)))
			return rc;
	}
	return QV_OK;
}

/* The model to train: widths from the config, weights from init or PyG's
 * initialisation. */
static int
make_model(QvTrainer *t, const QvModel *init, QvError *err)
{
	const QvTrainConfig *cfg = &t->cfg;
	QvModel    *m = qv_calloc(1, sizeof(QvModel), err, "trained model");
	int			rc = QV_OK;

	if ((t->model = m) == NULL)
		return QV_ENOMEM;
	m->arch = t->arch;
	m->n_layers = cfg->layers;
	m->in_dim = t->g->dim;
	m->out_dim = t->n_classes;
	m->seed = cfg->seed;
	for (int i = 0; i < m->n_layers; i++)
	{
		m->layers[i].in_dim = i == 0 ? t->g->dim : cfg->hidden;
		m->layers[i].out_dim = i == m->n_layers - 1 ? t->n_classes : cfg->hidden;
		m->fanout[i] = cfg->fanout[i];
		if (m->arch == QV_ARCH_GAT)
		{
			/* PyG's GAT: hidden layers concatenate heads of hidden / heads
			 * channels, the last averages heads of n_classes channels */
			bool		last = i == m->n_layers - 1;

			m->layers[i].heads = cfg->heads;
			m->layers[i].head_dim = last ? t->n_classes : cfg->hidden / cfg->heads;
			m->layers[i].concat = !last;
		}
	}
	if (init)
		return copy_model(m, init, err);
	for (int i = 0; i < m->n_layers && rc == QV_OK; i++)
		rc = init_layer(m, i, cfg->seed, err);
	return rc;
}

/* One trainable tensor of n elements at *field (skipped when NULL). */
static int
add_param(QvTrainer *t, float **field, size_t n, QvError *err)
{
	QvParam    *p = &t->params[t->n_params];
	float	   *w = *field;

	if (w == NULL)
		return QV_OK;
	t->wref[t->n_params] = field;
	p->w = w;
	p->n = n;
	if ((p->g = qv_calloc(n, sizeof(float), err, "gradients")) == NULL ||
		(p->m = qv_calloc(n, sizeof(float), err, "Adam's first moments")) == NULL ||
		(p->v = qv_calloc(n, sizeof(float), err, "Adam's second moments")) == NULL)
	{
		free(p->g);
		free(p->m);
		return QV_ENOMEM;
	}
	t->bytes += 3 * n * sizeof(float);
	t->n_params++;
	return QV_OK;
}

static int
add_params(QvTrainer *t, QvError *err)
{
	for (int i = 0; i < t->model->n_layers; i++)
	{
		QvLayer    *l = &t->model->layers[i];
		size_t		hc = (size_t) l->heads * l->head_dim,
					n = (size_t) l->in_dim * (t->arch == QV_ARCH_GAT ? hc : (size_t) l->out_dim);
		int			rc;

		if ((rc = add_param(t, &l->weight_l, n, err)) ||
			(rc = add_param(t, &l->att_src, hc, err)) ||
			(rc = add_param(t, &l->att_dst, hc, err)) ||
			(rc = add_param(t, &l->bias_l, (size_t) l->out_dim, err)) ||
			(rc = add_param(t, &l->weight_r, n, err)) ||
			(rc = add_param(t, &l->bias_r, (size_t) l->out_dim, err)))
			return rc;
	}
	return QV_OK;
}

/* Labels per dense node; each labelled once, in 0 .. n_classes-1. */
static int
set_labels(QvTrainer *t, const int32_t *nodes, const int32_t *labels, int64_t n, QvError *err)
{
	const QvGraph *g = t->g;

	if ((t->label_of = qv_malloc(sizeof(int32_t) * (size_t) g->n_nodes, err, "labels")) == NULL)
		return QV_ENOMEM;
	t->bytes += sizeof(int32_t) * (size_t) g->n_nodes;
	memset(t->label_of, 0xff, sizeof(int32_t) * (size_t) g->n_nodes);
	for (int64_t i = 0; i < n; i++)
	{
		int32_t		v = nodes[i];

		if (v < 0 || v >= g->n_nodes)
			return qv_error(err, QV_EINVAL, "labelled node index %d is not in the graph's %lld nodes",
							(int) v, (long long) g->n_nodes);
		if (labels[i] < 0 || labels[i] >= t->n_classes)
			return qv_error(err, QV_EINVAL,
							"node id %lld has label %d; labels must be between 0 and %d",
							(long long) g->ids[v], (int) labels[i], (int) t->n_classes - 1);
		if (t->label_of[v] >= 0)
			return qv_error(err, QV_EINVAL, "node id %lld is labelled twice (labels %d and %d)",
							(long long) g->ids[v], (int) t->label_of[v], (int) labels[i]);
		t->label_of[v] = labels[i];
	}
	return QV_OK;
}

/* Hold out a labelled node when hash(seed, its id) < val_fraction. */
static bool
held_out(const QvTrainer *t, int32_t v)
{
	uint64_t	h = qv_sh_absorb(qv_sh_absorb(TR_DOMAIN_VAL, t->cfg.seed), (uint64_t) t->g->ids[v]);

	return unit_double(h) < t->cfg.val_fraction;
}

/* Split the labelled nodes into training and validation sets. */
static int
split(QvTrainer *t, int64_t n, QvError *err)
{
	size_t		cap = (size_t) n + 1;

	if ((t->train_nodes = qv_malloc(cap * sizeof(int32_t), err, "training nodes")) == NULL ||
		(t->order = qv_malloc(cap * sizeof(int32_t), err, "epoch order")) == NULL ||
		(t->val_ids = qv_malloc(cap * sizeof(int64_t), err, "validation ids")) == NULL ||
		(t->val_labels = qv_malloc(cap * sizeof(int32_t), err, "validation labels")) == NULL)
		return QV_ENOMEM;
	t->bytes += cap * (3 * sizeof(int32_t) + sizeof(int64_t));
	for (int32_t v = 0; v < t->g->n_nodes; v++)
	{
		if (t->label_of[v] < 0)
			continue;
		if (held_out(t, v))
		{
			t->val_ids[t->n_val] = t->g->ids[v];
			t->val_labels[t->n_val++] = t->label_of[v];
		}
		else
			t->train_nodes[t->n_train++] = v;
	}
	if (t->n_train == 0)
		return qv_error(err, QV_EINVAL,
						"no labelled node is left for training: %lld labelled, %lld held out by val_fraction %g",
						(long long) n, (long long) t->n_val, t->cfg.val_fraction);
	return QV_OK;
}

/* GEAR's state: per-node losses (NaN: never seen), weights of the draws,
 * the alias table. */
static int
make_selection(QvTrainer *t, QvError *err)
{
	size_t		n = (size_t) t->n_train;

	if ((t->node_loss = qv_malloc(sizeof(float) * (size_t) t->g->n_nodes, err, "node losses")) == NULL ||
		(t->order_w = qv_malloc(sizeof(float) * n, err, "importance weights")) == NULL ||
		(t->alias_prob = qv_malloc(sizeof(double) * n, err, "alias table")) == NULL ||
		(t->alias_idx = qv_malloc(sizeof(int32_t) * n, err, "alias table")) == NULL)
		return QV_ENOMEM;
	for (int32_t v = 0; v < t->g->n_nodes; v++)
		t->node_loss[v] = NAN;
	t->bytes += sizeof(float) * (size_t) t->g->n_nodes + n * (sizeof(float) + sizeof(double) +
															   sizeof(int32_t));
	return QV_OK;
}

/* What training does not do yet, and arguments that cannot work. */
static int
check_create(QvArch arch, const QvGraph *g, const int32_t *nodes, const int32_t *labels,
			 int64_t n, int32_t n_classes, const QvTrainConfig *cfg, QvError *err)
{
	if (g == NULL || cfg == NULL || (n > 0 && (nodes == NULL || labels == NULL)))
		return qv_error(err, QV_EINVAL, "training needs a graph, labelled nodes and a config");
	if (arch != QV_ARCH_GRAPHSAGE && arch != QV_ARCH_GCN && arch != QV_ARCH_GAT)
		return qv_error(err, QV_EINVAL, "unknown architecture code %d", (int) arch);
	if (cfg->staleness < 0 || cfg->staleness > TR_MAX_STALENESS)
		return qv_error(err, QV_EINVAL,
						"config pipeline.staleness = %d must be an integer between 0 and %d",
						(int) cfg->staleness, TR_MAX_STALENESS);
	if (cfg->selection != QV_SELECT_UNIFORM && cfg->selection != QV_SELECT_LOSS)
		return qv_error(err, QV_EINVAL,
						"config seed_selection code %d is unknown (\"uniform\" or \"loss\")",
						(int) cfg->selection);
	if (n <= 0)
		return qv_error(err, QV_EINVAL, "no labelled node to train on");
	if (n_classes < 1)
		return qv_error(err, QV_EINVAL, "class count %d must be at least 1", (int) n_classes);
	if (cfg->layers < 1 || cfg->layers > QV_MAX_LAYERS || cfg->n_fanout != cfg->layers ||
		cfg->hidden < 1 || cfg->batch_size < 1 || !(cfg->lr > 0.0) ||
		!(cfg->dropout >= 0.0 && cfg->dropout < 1.0) || !(cfg->weight_decay >= 0.0) ||
		!(cfg->val_fraction >= 0.0 && cfg->val_fraction < 1.0))
		return qv_error(err, QV_EINVAL, "training config is inconsistent (use qv_train_config_parse)");
	if (arch == QV_ARCH_GAT && cfg->heads < 1)
		return qv_error(err, QV_EINVAL, "config heads = %d must be at least 1", (int) cfg->heads);
	if (arch == QV_ARCH_GAT && cfg->layers > 1 && cfg->hidden % cfg->heads != 0)
		return qv_error(err, QV_EINVAL,
						"config hidden = %d is not a multiple of heads = %d: GAT's hidden layers concatenate heads of hidden / heads channels",
						(int) cfg->hidden, (int) cfg->heads);
	return qv_check_fanouts(cfg->fanout, cfg->n_fanout, err);
}

int
qv_trainer_create(QvArch arch, const QvGraph *g, const int32_t *nodes,
				  const int32_t *labels, int64_t n, int32_t n_classes,
				  const QvTrainConfig *cfg, const QvModel *init,
				  QvTrainer **out, QvError *err)
{
	QvTrainer  *t;
	int			rc;

	*out = NULL;
	if ((rc = check_create(arch, g, nodes, labels, n, n_classes, cfg, err)) != QV_OK)
		return rc;
	if ((t = qv_calloc(1, sizeof(QvTrainer), err, "trainer")) == NULL)
		return QV_ENOMEM;
	t->arch = arch;
	t->g = g;
	t->cfg = *cfg;
	t->n_classes = n_classes;
	atomic_init(&t->cancel, false);
	pthread_mutex_init(&t->mu, NULL);
	if ((rc = set_labels(t, nodes, labels, n, err)) != QV_OK ||
		(rc = split(t, n, err)) != QV_OK ||
		(rc = make_model(t, init, err)) != QV_OK ||
		(rc = add_params(t, err)) != QV_OK)
	{
		qv_trainer_free(t);
		return rc;
	}
	if ((t->sbuf = qv_sample_buf_create(err)) == NULL ||
		(cfg->selection == QV_SELECT_LOSS && (rc = make_selection(t, err)) != QV_OK))
	{
		qv_trainer_free(t);
		return rc != QV_OK ? rc : QV_ENOMEM;
	}
	t->sync.sbuf = t->sbuf;
	t->prog.phase = QV_TRAIN_PREPARING;
	*out = t;
	return QV_OK;
}

void
qv_trainer_set_yield(QvTrainer *t, void (*yield) (void *arg), void *arg)
{
	t->yield = yield;
	t->yield_arg = arg;
}

void
qv_trainer_cancel(QvTrainer *t)
{
	atomic_store(&t->cancel, true);
}

void
qv_trainer_progress(const QvTrainer *t, QvTrainProgress *p)
{
	pthread_mutex_lock((pthread_mutex_t *) &t->mu);
	*p = t->prog;
	pthread_mutex_unlock((pthread_mutex_t *) &t->mu);
	/* grown by the training thread only: a word read, not a consistent sum */
	p->bytes = __atomic_load_n(&t->bytes, __ATOMIC_RELAXED) + t->model->bytes;
}

const QvModel *
qv_trainer_model(const QvTrainer *t)
{
	return t->model;
}

void
qv_trainer_free(QvTrainer *t)
{
	if (t == NULL)
		return;
	for (int k = 0; k < t->n_params; k++)
	{
		free(t->params[k].g);
		free(t->params[k].m);
		free(t->params[k].v);
	}
	if (t->model)
		qv_model_free(t->model);
	qv_pipe_free(t);
	qv_train_buffers_free(t);
	qv_batch_prep_free(&t->sync);
	qv_sample_buf_destroy(t->sbuf);
	free(t->node_loss);
	free(t->order_w);
	free(t->alias_prob);
	free(t->alias_idx);
	free(t->train_nodes);
	free(t->order);
	free(t->val_ids);
	free(t->val_labels);
	free(t->label_of);
	free(t->val_out);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* ---- epochs -------------------------------------------------------------------------------- */

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* A node and its sort key in an epoch's order. */
typedef struct OrderKey
{
	uint64_t	key;
	int32_t		node;
} OrderKey;

static int
cmp_order(const void *a, const void *b)
{
	const OrderKey *x = a,
			   *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->node > y->node) - (x->node < y->node);
}

/* t->order: the training nodes sorted by hash(seed, epoch, node). */
static int
epoch_order(QvTrainer *t, int32_t epoch, QvError *err)
{
	OrderKey   *k = qv_malloc(sizeof(OrderKey) * (size_t) t->n_train, err, "epoch order keys");
	uint64_t	base = qv_sh_absorb(qv_sh_absorb(TR_DOMAIN_ORDER, t->cfg.seed), (uint64_t) epoch);

	if (k == NULL)
		return QV_ENOMEM;
	for (int64_t i = 0; i < t->n_train; i++)
		k[i] = (OrderKey) {qv_sh_absorb(base, (uint64_t) t->train_nodes[i]), t->train_nodes[i]};
	qsort(k, (size_t) t->n_train, sizeof(OrderKey), cmp_order);
	for (int64_t i = 0; i < t->n_train; i++)
		t->order[i] = k[i].node;
	free(k);
	return QV_OK;
}

/* The key of (seed, epoch, batch) in a domain. */
static uint64_t
step_key(const QvTrainer *t, uint64_t domain, int32_t epoch, int64_t batch)
{
	return qv_sh_absorb(qv_sh_absorb(qv_sh_absorb(domain, t->cfg.seed), (uint64_t) epoch),
						(uint64_t) batch);
}

uint64_t
qv_train_step_key(const QvTrainer *t, uint64_t domain, int32_t epoch, int64_t batch)
{
	return step_key(t, domain, epoch, batch);
}

static void
set_progress(QvTrainer *t, QvTrainPhase phase, int32_t epoch, int64_t done, int64_t total,
			 double loss)
{
	pthread_mutex_lock(&t->mu);
	t->prog = (QvTrainProgress) {phase, epoch, done, total, loss};
	pthread_mutex_unlock(&t->mu);
}

void
qv_train_set_progress(QvTrainer *t, QvTrainPhase phase, int32_t epoch, int64_t done,
					  int64_t total, double loss)
{
	set_progress(t, phase, epoch, done, total, loss);
}

/* Accuracy on the held-out nodes: the served forward with the model's
 * fanouts, no dropout; NaN without any. */
static int
validate(QvTrainer *t, QvPool *pool, double *acc, QvError *err)
{
	int32_t		classes = t->n_classes;
	int64_t		correct = 0;
	int			rc;

	*acc = NAN;
	if (t->n_val == 0)
		return QV_OK;
	if ((rc = qv_grow((void **) &t->val_out, &t->val_out_cap, (size_t) TR_VAL_CHUNK * classes,
					  sizeof(float), &t->bytes, err, "validation logits")) != QV_OK)
		return rc;
	for (int64_t i0 = 0; i0 < t->n_val; i0 += TR_VAL_CHUNK)
	{
		int32_t		n = (int32_t) (t->n_val - i0 < TR_VAL_CHUNK ? t->n_val - i0 : TR_VAL_CHUNK);

		if (atomic_load(&t->cancel))
			return qv_error(err, QV_ECANCELED, "training cancelled");
		if ((rc = qv_infer_ws(t->model, t->g, t->val_ids + i0, n, t->val_out, pool, NULL,
							  err)) != QV_OK)
			return rc;
		for (int32_t k = 0; k < n; k++)
			correct += qv_argmax(t->val_out + (size_t) k * classes, classes) == t->val_labels[i0 + k];
	}
	*acc = (double) correct / (double) t->n_val;
	return QV_OK;
}

/* The batches of one epoch: loss and accuracy sums into *ep. */
static int
run_batches(QvTrainer *t, int32_t epoch, QvPool *pool, QvTrainEpoch *ep, QvError *err)
{
	int64_t		bs = t->cfg.batch_size,
				n_batches = (t->n_train + bs - 1) / bs,
				correct = 0;
	double		loss = 0.0;
	int			rc;

	if (t->cfg.staleness > 0)
		return qv_pipe_run_epoch(t, epoch, pool, ep, err);
	set_progress(t, QV_TRAIN_TRAINING, epoch, 0, n_batches, 0.0);
	for (int64_t b = 0; b < n_batches; b++)
	{
		int32_t		n = (int32_t) (t->n_train - b * bs < bs ? t->n_train - b * bs : bs);
		QvBatchStats st;

		if (atomic_load(&t->cancel))
			return qv_error(err, QV_ECANCELED, "training cancelled in epoch %d before batch %lld of %lld",
							(int) epoch, (long long) b + 1, (long long) n_batches);
		if (t->yield)
			t->yield(t->yield_arg);
		t->sync.seed_w = t->order_w && epoch > 1 ? t->order_w + b * bs : NULL;
		if ((rc = qv_train_batch(t, t->order + b * bs, n,
								 step_key(t, TR_DOMAIN_SAMPLE, epoch, b),
								 step_key(t, TR_DOMAIN_DROP, epoch, b), pool, &st, err)) != QV_OK)
			return rc;
		if (t->yield)			/* tensor stage of the step next */
			t->yield(t->yield_arg);
		qv_train_optimize(t, pool);
		loss += st.loss_sum / st.n;
		correct += st.correct;
		set_progress(t, QV_TRAIN_TRAINING, epoch, b + 1, n_batches, loss / (double) (b + 1));
	}
	ep->loss = loss / (double) n_batches;
	ep->train_acc = (double) correct / (double) t->n_train;
	return QV_OK;
}

int
qv_trainer_epoch(QvTrainer *t, QvPool *pool, QvTrainEpoch *ep, QvError *err)
{
	int32_t		epoch = t->epochs_done + 1;
	double		start = now_seconds();
	int			rc;

	memset(ep, 0, sizeof(*ep));
	ep->epoch = epoch;
	if (atomic_load(&t->cancel))
		return qv_error(err, QV_ECANCELED, "training cancelled before epoch %d", (int) epoch);
	if ((rc = (t->cfg.selection == QV_SELECT_LOSS && epoch > 1 ?
			   qv_select_by_loss(t, epoch, err) : epoch_order(t, epoch, err))) != QV_OK ||
		(rc = run_batches(t, epoch, pool, ep, err)) != QV_OK)
		return rc;
	set_progress(t, QV_TRAIN_VALIDATING, epoch, t->prog.batches_total, t->prog.batches_total,
				 ep->loss);
	if ((rc = validate(t, pool, &ep->val_acc, err)) != QV_OK)
		return rc;
	t->epochs_done = epoch;
	ep->seconds = now_seconds() - start;
	set_progress(t, epoch >= t->cfg.epochs ? QV_TRAIN_DONE : QV_TRAIN_TRAINING, epoch,
				 t->prog.batches_total, t->prog.batches_total, ep->loss);
	return QV_OK;
}

uint64_t
qv_trainer_drop_key(const QvTrainer *t, int32_t epoch, int64_t batch)
{
	return step_key(t, TR_DOMAIN_DROP, epoch, batch);
}

int
qv_trainer_gradient(QvTrainer *t, const int32_t *seeds, int32_t n, QvPool *pool,
					double *loss, QvError *err)
{
	QvBatchStats st;
	int			rc;

	for (int32_t i = 0; i < n; i++)
		if (seeds[i] < 0 || seeds[i] >= t->g->n_nodes || t->label_of[seeds[i]] < 0)
			return qv_error(err, QV_EINVAL, "seed %d is not a labelled node", (int) seeds[i]);
	t->sync.seed_w = NULL;
	if ((rc = qv_train_batch(t, seeds, n, step_key(t, TR_DOMAIN_SAMPLE, 0, 0),
							 step_key(t, TR_DOMAIN_DROP, 0, 0), pool, &st, err)) != QV_OK)
		return rc;
	*loss = st.loss_sum / st.n;
	return QV_OK;
}
