/*
 * model.c — GNN models (GraphSAGE, GCN, GAT) built from PyG safetensors weights.
 *
 * A model is loaded from a safetensors blob named as PyTorch Geometric's
 * state_dict() names it (see model.h) and a JSON config holding the
 * per-hop fanouts and the sampler's seed.  Every tensor is checked: its
 * name must be one the architecture expects, its shape must chain from the
 * graph's feature dimension through the layers, its dtype must convert to
 * float32, and every element must be finite (no NaN, no infinity).
 * The model owns float32 copies of the weights; the blob can be freed
 * as soon as qv_model_load returns.
 */
#include "model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "finite.h"
#include "safetensors.h"

#define NAME_LEN 64

/* Tensor names are cut to this many characters in error messages. */
#define NAME_MAX_SHOWN 96

/* Per-layer tensor names (after "convs.{i}.") of each architecture. */
static const char *const sage_suffixes[] = {
	"lin_l.weight", "lin_l.bias", "lin_r.weight", "lin_r.bias"
};
static const char *const gcn_suffixes[] = {
	"lin.weight", "bias"
};
static const char *const gat_suffixes[] = {
	"lin.weight", "att_src", "att_dst", "bias"
};

int
qv_arch_parse(const char *name, QvArch *out, QvError *err)
{
	if (name == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "architecture name is NULL");
	if (strcasecmp(name, "graphsage") == 0)
		*out = QV_ARCH_GRAPHSAGE;
	else if (strcasecmp(name, "gcn") == 0)
		*out = QV_ARCH_GCN;
	else if (strcasecmp(name, "gat") == 0)
		*out = QV_ARCH_GAT;
	else
		return qv_error(err, QV_EINVAL,
						"unknown architecture \"%.64s\" (known: graphsage, gcn, gat)", name);
	return QV_OK;
}

const char *
qv_arch_name(QvArch arch)
{
	switch (arch)
	{
		case QV_ARCH_GRAPHSAGE:
			return "graphsage";
		case QV_ARCH_GCN:
			return "gcn";
		case QV_ARCH_GAT:
			return "gat";
	}
	return "unknown";
}

/* Check the "fanout" array and copy it to fanout[]. */
static int
parse_fanout(json_t *arr, const char *path, int32_t *fanout, int32_t *n_fanout,
			 QvError *err)
{
	size_t		i;
	size_t		n;

	if (!json_is_array(arr))
		return qv_error(err, QV_EINVAL, "config \"%sfanout\" must be an array of integers", path);
	n = json_array_size(arr);
	if (n < 1 || n > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL,
						"config \"%sfanout\" has %zu entries, expected 1 to %d",
						path, n, QV_MAX_LAYERS);
	for (i = 0; i < n; i++)
	{
		json_t	   *v = json_array_get(arr, i);
		json_int_t	k;

		if (!json_is_integer(v))
			return qv_error(err, QV_EINVAL,
							"config %sfanout[%zu] is not an integer", path, i);
		k = json_integer_value(v);
		if (k != -1 && (k < 1 || k > INT32_MAX))
			return qv_error(err, QV_EINVAL,
							"config %sfanout[%zu] = %lld: must be -1 (all neighbours) or between 1 and %d",
							path, i, (long long) k, INT32_MAX);
		fanout[i] = (int32_t) k;
	}
	*n_fanout = (int32_t) n;
	return QV_OK;
}

/* Check the "seed" value and copy it to *seed. */
static int
parse_seed(json_t *v, uint64_t *seed, QvError *err)
{
	json_int_t	x;

	if (!json_is_integer(v))
	{
		char	   *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		int			rc = qv_error(err, QV_EINVAL,
								  "config seed = %.64s is not an integer (expected 0 to %lld)",
								  text ? text : "(unprintable)", (long long) QV_MODEL_SEED_MAX);

		free(text);
		return rc;
	}
	x = json_integer_value(v);
	if (x < 0)
		return qv_error(err, QV_EINVAL, "config seed = %lld: must be between 0 and %lld",
						(long long) x, (long long) QV_MODEL_SEED_MAX);
	*seed = (uint64_t) x;
	return QV_OK;
}

/*
 * json_loads failed: an integer beyond 64 bits (jansson's "too big
 * integer", which names the literal only up to 20 characters) gets an
 * error naming it, found just before the error position; anything else
 * is invalid JSON.
 */
static int
config_load_error(const char *json, const json_error_t *jerr, QvError *err)
{
	if (strncmp(jerr->text, "too big", 7) == 0 && jerr->position > 0 &&
		(size_t) jerr->position <= strlen(json))
	{
		int			end = jerr->position;
		int			start = end;

		while (start > 0 && (json[start - 1] == '-' ||
							 (json[start - 1] >= '0' && json[start - 1] <= '9')))
			start--;
		if (start < end)
			return qv_error(err, QV_EINVAL,
							"model config holds the integer %.*s%s, outside the 64-bit range of any config value (seed: 0 to %lld; fanout: -1 or 1 to %d)",
							end - start > 64 ? 64 : end - start, json + start,
							end - start > 64 ? "..." : "", (long long) QV_MODEL_SEED_MAX, INT32_MAX);
	}
	return qv_error(err, QV_EINVAL,
					"model config is not valid JSON: %s (at line %d, column %d)",
					jerr->text, jerr->line, jerr->column);
}

/* Check the "precompute" value (a JSON boolean). */
static int
parse_precompute(json_t *v, const char *path, bool *out, QvError *err)
{
	if (!json_is_boolean(v))
	{
		char	   *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		int			rc = qv_error(err, QV_EINVAL,
								  "config %sprecompute = %.64s is not a boolean (expected true or false)",
								  path, text ? text : "(unprintable)");

		free(text);
		return rc;
	}
	*out = json_is_true(v);
	return QV_OK;
}

/* Check the "recompute" value (a number in [0, 1]). */
static int
parse_recompute(json_t *v, const char *path, double *out, QvError *err)
{
	double		x = json_is_number(v) ? json_number_value(v) : NAN;

	if (json_is_number(v) && !(x >= 0.0 && x <= 1.0))
		return qv_error(err, QV_EINVAL,
						"config %srecompute = %.15g must be a number between 0 and 1 (the share of stale neighbours recomputed per request)",
						path, x);
	if (!(x >= 0.0 && x <= 1.0))
	{
		char	   *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		int			rc = qv_error(err, QV_EINVAL,
								  "config %srecompute = %.64s must be a number between 0 and 1 (the share of stale neighbours recomputed per request)",
								  path, text ? text : "(unprintable)");

		free(text);
		return rc;
	}
	*out = x;
	return QV_OK;
}

/* One object of "variants", at path ("variants[i]."). */
static int
parse_variant(json_t *obj, const char *path, QvVariantConfig *vc, QvError *err)
{
	const char *key;
	json_t	   *value;
	int			rc = QV_OK;

	if (!json_is_object(obj))
	{
		char	   *text = json_dumps(obj, JSON_ENCODE_ANY | JSON_COMPACT);

		/* path ends with '.'; name it without */
		rc = qv_error(err, QV_EINVAL,
					  "config %.*s = %.64s is not an object such as {\"fanout\": [5, 5]}",
					  (int) strlen(path) - 1, path, text ? text : "(unprintable)");
		free(text);
		return rc;
	}
	json_object_foreach(obj, key, value)
	{
		if (strcmp(key, "fanout") == 0)
			rc = parse_fanout(value, path, vc->fanout, &vc->n_fanout, err);
		else if (strcmp(key, "precompute") == 0)
		{
			vc->has_precompute = true;
			rc = parse_precompute(value, path, &vc->precompute, err);
		}
		else if (strcmp(key, "recompute") == 0)
		{
			vc->has_recompute = true;
			rc = parse_recompute(value, path, &vc->recompute, err);
		}
		else
			rc = qv_error(err, QV_EINVAL,
						  "unknown key \"%.64s\" in config %.*s (known: fanout, precompute, recompute)",
						  key, (int) strlen(path) - 1, path);
		if (rc != QV_OK)
			return rc;
	}
	return QV_OK;
}

/* The "variants" array into cfg->variants. */
static int
parse_variants(json_t *arr, QvModelConfig *cfg, QvError *err)
{
	size_t		n;

	if (!json_is_array(arr))
		return qv_error(err, QV_EINVAL,
						"config \"variants\" must be an array of objects such as [{\"fanout\": [5, 5]}]");
	n = json_array_size(arr);
	if (n > QV_MAX_VARIANTS)
		return qv_error(err, QV_EINVAL,
						"config \"variants\" has %zu entries, at most %d are allowed (variant 0, the model itself, is not listed)",
						n, QV_MAX_VARIANTS);
	for (size_t i = 0; i < n; i++)
	{
		char		path[32];
		int			rc;

		snprintf(path, sizeof(path), "variants[%zu].", i);
		memset(&cfg->variants[i], 0, sizeof(cfg->variants[i]));
		if ((rc = parse_variant(json_array_get(arr, i), path, &cfg->variants[i], err)) != QV_OK)
			return rc;
	}
	cfg->n_variants = (int32_t) n;
	return QV_OK;
}

/* After the whole config: a variant's recompute needs its precompute. */
static int
check_variants(const QvModelConfig *cfg, QvError *err)
{
	for (int i = 0; i < cfg->n_variants; i++)
	{
		const QvVariantConfig *vc = &cfg->variants[i];
		bool		pre = vc->has_precompute ? vc->precompute : cfg->precompute;

		if (vc->has_recompute && !pre)
			return qv_error(err, QV_EINVAL,
							"config variants[%d].recompute = %.15g needs \"precompute\": true in the variant or the model (it is the share of stale precomputed rows recomputed)",
							i, vc->recompute);
	}
	return QV_OK;
}

int
qv_model_config_parse_all(const char *json, QvModelConfig *cfg, QvError *err)
{
	json_t	   *root;
	json_error_t jerr;
	const char *key;
	json_t	   *value;
	json_t	   *recompute = NULL;
	int			rc = QV_OK;

	if (cfg == NULL)
		return qv_error(err, QV_EINVAL, "qv_model_config_parse: NULL output");
	memset(cfg, 0, sizeof(*cfg));
	if (json == NULL || json[0] == '\0')
		return QV_OK;
	root = json_loads(json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (root == NULL)
		return config_load_error(json, &jerr, err);
	if (!json_is_object(root))
	{
		json_decref(root);
		return qv_error(err, QV_EINVAL,
						"model config must be a JSON object such as {\"fanout\": [15, 10]}");
	}
	json_object_foreach(root, key, value)
	{
		if (strcmp(key, "fanout") == 0)
			rc = parse_fanout(value, "", cfg->fanout, &cfg->n_fanout, err);
		else if (strcmp(key, "seed") == 0)
			rc = parse_seed(value, &cfg->seed, err);
		else if (strcmp(key, "precompute") == 0)
			rc = parse_precompute(value, "", &cfg->precompute, err);
		else if (strcmp(key, "recompute") == 0)
			rc = parse_recompute(recompute = value, "", &cfg->recompute, err);
		else if (strcmp(key, "variants") == 0)
			rc = parse_variants(value, cfg, err);
		else if (strcmp(key, "training") == 0)
			rc = json_is_object(value) ? QV_OK :
				qv_error(err, QV_EINVAL,
						 "config \"training\" must be an object (the config gnn_train trained the model with)");
		else
			rc = qv_error(err, QV_EINVAL,
						  "unknown model config key \"%.64s\" (known: fanout, seed, precompute, recompute, training, variants)",
						  key);
		if (rc != QV_OK)
			break;
	}
	if (rc == QV_OK && recompute != NULL && !cfg->precompute)
		rc = qv_error(err, QV_EINVAL,
					  "config recompute = %.15g needs \"precompute\": true (it is the share of stale precomputed rows recomputed)",
					  cfg->recompute);
	if (rc == QV_OK)
		rc = check_variants(cfg, err);
	json_decref(root);
	if (rc != QV_OK)
		memset(cfg, 0, sizeof(*cfg));
	return rc;
}

int
qv_model_config_parse(const char *json, int32_t *fanout, int32_t *n_fanout,
					  uint64_t *seed, QvError *err)
{
	QvModelConfig cfg;
	int			rc;

	if (fanout == NULL || n_fanout == NULL)
		return qv_error(err, QV_EINVAL, "qv_model_config_parse: NULL output");
	rc = qv_model_config_parse_all(json, &cfg, err);
	memcpy(fanout, cfg.fanout, sizeof(int32_t) * (size_t) cfg.n_fanout);
	*n_fanout = cfg.n_fanout;
	if (seed)
		*seed = cfg.seed;
	return rc;
}

/* Does any tensor's name start with prefix? */
static int
has_prefix(const QvSafetensors *st, const char *prefix)
{
	size_t		plen = strlen(prefix);
	int			i;

	for (i = 0; i < st->n_tensors; i++)
		if (strncmp(st->tensors[i].name, prefix, plen) == 0)
			return 1;
	return 0;
}

/* Count layers: convs.0., convs.1., ... while some tensor has the prefix. */
static int
count_layers(const QvSafetensors *st, QvArch arch, int32_t *n_layers, QvError *err)
{
	char		prefix[NAME_LEN];
	int			n = 0;

	for (;;)
	{
		snprintf(prefix, sizeof(prefix), "convs.%d.", n);
		if (!has_prefix(st, prefix))
			break;
		if (n == QV_MAX_LAYERS)
			return qv_error(err, QV_ELIMIT,
							"model has more than %d layers (found tensors \"convs.%d.*\")",
							QV_MAX_LAYERS, n);
		n++;
	}
	if (n == 0)
		return qv_error(err, QV_EDATA,
						"weights hold no layer: no tensor named \"convs.0.*\" for arch %s",
						qv_arch_name(arch));
	*n_layers = n;
	return QV_OK;
}

/* Is name "convs.{i}.{suffix}" for some layer i < n_layers and known suffix? */
static int
is_expected_name(const char *name, QvArch arch, int32_t n_layers)
{
	const char *const *suffixes = arch == QV_ARCH_GCN ? gcn_suffixes :
		arch == QV_ARCH_GAT ? gat_suffixes : sage_suffixes;
	int			n_suffixes = arch == QV_ARCH_GCN ? 2 : 4;
	char		expected[NAME_LEN];
	int			i,
				j;

	for (i = 0; i < n_layers; i++)
		for (j = 0; j < n_suffixes; j++)
		{
			snprintf(expected, sizeof(expected), "convs.%d.%s", i, suffixes[j]);
			if (strcmp(name, expected) == 0)
				return 1;
		}
	return 0;
}

/* Reject any tensor that the architecture does not define. */
static int
check_names(const QvSafetensors *st, QvArch arch, int32_t n_layers, QvError *err)
{
	int			i;

	for (i = 0; i < st->n_tensors; i++)
		if (!is_expected_name(st->tensors[i].name, arch, n_layers))
			return qv_error(err, QV_EDATA, "unexpected tensor \"%.*s\" for arch %s",
							NAME_MAX_SHOWN, st->tensors[i].name, qv_arch_name(arch));
	return QV_OK;
}

/*
 * Find convs.{layer}.{suffix} and check its rank, dimensions and dtype.
 * *t is NULL when the tensor is absent and not required.
 */
static int
find_param(const QvSafetensors *st, QvArch arch, int layer, const char *suffix,
		   int ndim, int required, const QvTensor **t, QvError *err)
{
	char		name[NAME_LEN];
	const QvTensor *p;
	int			d;

	snprintf(name, sizeof(name), "convs.%d.%s", layer, suffix);
	p = qv_safetensors_find(st, name);
	*t = p;
	if (p == NULL)
		return required ? qv_error(err, QV_EDATA, "missing tensor \"%s\" for arch %s",
								   name, qv_arch_name(arch)) : QV_OK;
	if (p->ndim != ndim)
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" has %d dimensions, expected %d (%s)",
						name, p->ndim, ndim,
						ndim == 3 ? "[1, heads, channels]" : ndim == 2 ? "[out, in]" : "[out]");
	for (d = 0; d < ndim; d++)
		if (p->shape[d] < 1 || p->shape[d] > INT32_MAX)
			return qv_error(err, QV_EDATA, "tensor \"%s\": dimension %d is %lld",
							name, d, (long long) p->shape[d]);
	if (p->dtype == QV_DTYPE_OTHER)
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16",
						name, p->dtype_name);
	return QV_OK;
}

/*
 * Weights must be finite: a NaN or an infinity (F32, or F16/BF16 after
 * widening) would reach every prediction.  The error names the tensor, the
 * first bad element's flat index and, for a matrix, its [row, column].
 */
static int
check_finite_param(const QvTensor *t, const float *p, QvError *err)
{
	size_t		bad;

	if (qv_check_finite(p, (size_t) t->numel, &bad))
		return QV_OK;
	if (t->ndim == 2)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\" holds %s at index %zu (element [%lld, %lld] of [%lld, %lld]); weights must be finite",
						NAME_MAX_SHOWN, t->name, qv_nonfinite_name(p[bad]), bad,
						(long long) (bad / (size_t) t->shape[1]),
						(long long) (bad % (size_t) t->shape[1]),
						(long long) t->shape[0], (long long) t->shape[1]);
	return qv_error(err, QV_EDATA,
					"tensor \"%.*s\" holds %s at index %zu; weights must be finite",
					NAME_MAX_SHOWN, t->name, qv_nonfinite_name(p[bad]), bad);
}

/* A float32 copy of t held by the model (NULL t gives NULL). */
static int
copy_param(QvModel *m, const QvTensor *t, float **dst, QvError *err)
{
	float	   *p;
	int			rc;

	*dst = NULL;
	if (t == NULL)
		return QV_OK;
	p = qv_malloc((size_t) t->numel * sizeof(float), err, t->name);
	if (p == NULL)
		return QV_ENOMEM;
	if ((rc = qv_tensor_to_f32(t, p, err)) != QV_OK ||
		(rc = check_finite_param(t, p, err)) != QV_OK)
	{
		free(p);
		return rc;
	}
	*dst = p;
	m->bytes += (size_t) t->numel * sizeof(float);
	return QV_OK;
}

/* A bias, if present, must be [out]. */
static int
check_bias(const QvTensor *b, int64_t out_dim, QvError *err)
{
	if (b != NULL && b->shape[0] != out_dim)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\" has %lld entries, its layer has %lld outputs",
						NAME_MAX_SHOWN, b->name, (long long) b->shape[0],
						(long long) out_dim);
	return QV_OK;
}

/* Layer i's weight w [out, in] must take in_dim inputs. */
static int
check_in_dim(const QvTensor *w, int i, int32_t in_dim, QvError *err)
{
	if (w->shape[1] == in_dim)
		return QV_OK;
	if (i == 0)
		return qv_error(err, QV_EDATA,
						"layer 0 expects %lld input features, graph has %d (tensor \"%s\" is [%lld, %lld])",
						(long long) w->shape[1], in_dim, w->name,
						(long long) w->shape[0], (long long) w->shape[1]);
	return qv_error(err, QV_EDATA,
					"layer %d expects %lld input features, layer %d outputs %d (tensor \"%s\" is [%lld, %lld])",
					i, (long long) w->shape[1], i - 1, in_dim, w->name,
					(long long) w->shape[0], (long long) w->shape[1]);
}

/*
 * GAT layer i's shapes: att_src [1, H, C], att_dst the same, lin.weight
 * [H C, in_dim], bias [H C] on a hidden layer (heads concatenated) or [C]
 * on the last (heads averaged).  *out_dim gets the layer's output width.
 */
static int
check_gat_shapes(const QvTensor *w, const QvTensor *as, const QvTensor *ad,
				 const QvTensor *b, int i, bool last, int32_t in_dim, int64_t *out_dim,
				 QvError *err)
{
	int64_t		heads = as->shape[1],
				c = as->shape[2];
	int			rc;

	if (as->shape[0] != 1)
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" is [%lld, %lld, %lld], expected [1, heads, channels]",
						as->name, (long long) as->shape[0], (long long) heads, (long long) c);
	if (ad->shape[0] != 1 || ad->shape[1] != heads || ad->shape[2] != c)
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" is [%lld, %lld, %lld], but \"%s\" is [1, %lld, %lld]",
						ad->name, (long long) ad->shape[0], (long long) ad->shape[1],
						(long long) ad->shape[2], as->name, (long long) heads, (long long) c);
	if (w->shape[0] != heads * c)
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" has %lld rows, but \"%s\" [1, %lld, %lld] needs %lld heads x %lld channels = %lld%s",
						w->name, (long long) w->shape[0], as->name, (long long) heads,
						(long long) c, (long long) heads, (long long) c, (long long) (heads * c),
						w->shape[0] % heads ? " (the rows are not a multiple of the heads)" : "");
	if ((rc = check_in_dim(w, i, in_dim, err)))
		return rc;
	*out_dim = last ? c : heads * c;
	if (*out_dim > INT32_MAX)
		return qv_error(err, QV_EDATA, "GAT layer %d has %lld outputs, more than %d",
						i, (long long) *out_dim, INT32_MAX);
	if (b != NULL && b->shape[0] != *out_dim)
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" has %lld entries, expected %lld: %s",
						b->name, (long long) b->shape[0], (long long) *out_dim,
						last ? "the last GAT layer averages its heads (PyG's GAT with out_channels and jk=None), its bias has one entry per channel" :
						"a hidden GAT layer concatenates its heads, its bias has heads x channels entries");
	return QV_OK;
}

/* GAT layer i: check its tensors against in_dim and copy them. */
static int
load_gat_layer(QvModel *m, const QvSafetensors *st, int i, int32_t in_dim, QvError *err)
{
	QvLayer    *layer = &m->layers[i];
	bool		last = i == m->n_layers - 1;
	const QvTensor *w,
			   *as,
			   *ad,
			   *b;
	int64_t		out_dim = 0;
	int			rc;

	if ((rc = find_param(st, m->arch, i, "lin.weight", 2, 1, &w, err)) ||
		(rc = find_param(st, m->arch, i, "att_src", 3, 1, &as, err)) ||
		(rc = find_param(st, m->arch, i, "att_dst", 3, 1, &ad, err)) ||
		(rc = find_param(st, m->arch, i, "bias", 1, 0, &b, err)) ||
		(rc = check_gat_shapes(w, as, ad, b, i, last, in_dim, &out_dim, err)))
		return rc;
	layer->in_dim = in_dim;
	layer->out_dim = (int32_t) out_dim;
	layer->heads = (int32_t) as->shape[1];
	layer->head_dim = (int32_t) as->shape[2];
	layer->concat = !last;
	if ((rc = copy_param(m, w, &layer->weight_l, err)) ||
		(rc = copy_param(m, as, &layer->att_src, err)) ||
		(rc = copy_param(m, ad, &layer->att_dst, err)) ||
		(rc = copy_param(m, b, &layer->bias_l, err)))
		return rc;
	return QV_OK;
}

/* Check layer i's shapes against in_dim and copy its parameters. */
static int
load_layer(QvModel *m, const QvSafetensors *st, int i, int32_t in_dim, QvError *err)
{
	QvLayer    *layer = &m->layers[i];
	int			sage = m->arch == QV_ARCH_GRAPHSAGE;
	const QvTensor *wl,
			   *bl,
			   *wr = NULL,
			   *br = NULL;
	int			rc;

	if (m->arch == QV_ARCH_GAT)
		return load_gat_layer(m, st, i, in_dim, err);
	if ((rc = find_param(st, m->arch, i, sage ? "lin_l.weight" : "lin.weight", 2, 1, &wl, err)) ||
		(rc = find_param(st, m->arch, i, sage ? "lin_l.bias" : "bias", 1, 0, &bl, err)))
		return rc;
	if (sage &&
		((rc = find_param(st, m->arch, i, "lin_r.weight", 2, 1, &wr, err)) ||
		 (rc = find_param(st, m->arch, i, "lin_r.bias", 1, 0, &br, err))))
		return rc;

	if ((rc = check_in_dim(wl, i, in_dim, err)))
		return rc;
	if (wr != NULL && (wr->shape[0] != wl->shape[0] || wr->shape[1] != wl->shape[1]))
		return qv_error(err, QV_EDATA,
						"tensor \"%s\" is [%lld, %lld], but \"%s\" is [%lld, %lld]",
						wr->name, (long long) wr->shape[0], (long long) wr->shape[1],
						wl->name, (long long) wl->shape[0], (long long) wl->shape[1]);
	if ((rc = check_bias(bl, wl->shape[0], err)) ||
		(rc = check_bias(br, wl->shape[0], err)))
		return rc;

	layer->in_dim = (int32_t) wl->shape[1];
	layer->out_dim = (int32_t) wl->shape[0];
	if ((rc = copy_param(m, wl, &layer->weight_l, err)) ||
		(rc = copy_param(m, bl, &layer->bias_l, err)) ||
		(rc = copy_param(m, wr, &layer->weight_r, err)) ||
		(rc = copy_param(m, br, &layer->bias_r, err)))
		return rc;
	return QV_OK;
}

/* Set m->fanout from the config's fanout, or -1 everywhere without one.
 * A precomputed model may give fanout[0] alone (the rest are -1). */
static int
set_fanout(QvModel *m, const int32_t *fanout, int32_t n_fanout, const char *path,
		   QvError *err)
{
	int			i;

	if (m->precompute && n_fanout == 1)
	{
		for (i = 0; i < m->n_layers; i++)
			m->fanout[i] = i == 0 ? fanout[0] : -1;
		return QV_OK;
	}
	if (n_fanout > 0 && n_fanout != m->n_layers)
		return qv_error(err, QV_EINVAL,
						"config %sfanout has %d entries, model has %d layers",
						path, n_fanout, m->n_layers);
	for (i = 0; i < m->n_layers; i++)
		m->fanout[i] = n_fanout > 0 ? fanout[i] : -1;
	return QV_OK;
}

/*
 * A precomputed model stores its hidden layers over every neighbour: it
 * needs a hidden layer, and only its last layer (fanout[0]) may sample.
 * So the model's own fanouts are the precomputed semantics, and qv_infer
 * computes what qv_infer_precomputed does, before the rows are built.
 */
static int
check_precompute(const QvModel *m, const char *path, QvError *err)
{
	if (!m->precompute)
		return QV_OK;
	if (m->n_layers < 2)
		return qv_error(err, QV_EINVAL,
						"config %sprecompute = true needs a hidden layer to store, but the model has %d layer",
						path, (int) m->n_layers);
	for (int i = 1; i < m->n_layers; i++)
		if (m->fanout[i] != -1)
			return qv_error(err, QV_EINVAL,
							"config %sprecompute = true computes the hidden layers over every neighbour, so %sfanout[%d] must be -1, not %d (only fanout[0], the last layer's, may sample)",
							path, path, i, (int) m->fanout[i]);
	return QV_OK;
}

/* The body of qv_model_load once the blob is parsed; m is freed by the caller on error. */
static int
build_model(QvModel *m, const QvSafetensors *st, const int32_t *fanout,
			int32_t n_fanout, int32_t feature_dim, QvError *err)
{
	int32_t		in_dim = feature_dim;
	int			rc;
	int			i;

	if ((rc = count_layers(st, m->arch, &m->n_layers, err)) ||
		(rc = check_names(st, m->arch, m->n_layers, err)))
		return rc;
	for (i = 0; i < m->n_layers; i++)
	{
		if ((rc = load_layer(m, st, i, in_dim, err)) != QV_OK)
			return rc;
		in_dim = m->layers[i].out_dim;
	}
	m->in_dim = feature_dim;
	m->out_dim = m->layers[m->n_layers - 1].out_dim;
	if ((rc = set_fanout(m, fanout, n_fanout, "", err)) != QV_OK)
		return rc;
	return check_precompute(m, "", err);
}

int
qv_model_variant_apply(QvModel *v, const QvModel *base, const QvModelConfig *cfg,
					   int32_t index, QvError *err)
{
	const QvVariantConfig *vc;
	char		path[32];
	int			rc;

	if (v == NULL || base == NULL || cfg == NULL)
		return qv_error(err, QV_EINVAL, "qv_model_variant_apply: NULL argument");
	if (index < 1 || index > cfg->n_variants)
		return qv_error(err, QV_EINVAL,
						"variant %d does not exist: the config lists variants 1 to %d",
						(int) index, (int) cfg->n_variants);
	vc = &cfg->variants[index - 1];
	snprintf(path, sizeof(path), "variants[%d].", (int) index - 1);
	*v = *base;
	v->n_variants = 0;
	v->precompute = vc->has_precompute ? vc->precompute : base->precompute;
	v->recompute = vc->has_recompute ? vc->recompute :
		(v->precompute ? base->recompute : 0.0);
	if (vc->n_fanout > 0 &&
		(rc = set_fanout(v, vc->fanout, vc->n_fanout, path, err)) != QV_OK)
		return rc;
	return check_precompute(v, path, err);
}

int
qv_model_load(QvArch arch, const uint8_t *st_buf, size_t st_len,
			  const char *config_json, int32_t feature_dim,
			  QvModel **out, QvError *err)
{
	QvModelConfig cfg;
	QvSafetensors *st = NULL;
	QvModel    *m;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "qv_model_load: out is NULL");
	*out = NULL;
	if (arch != QV_ARCH_GRAPHSAGE && arch != QV_ARCH_GCN && arch != QV_ARCH_GAT)
		return qv_error(err, QV_EINVAL, "unknown architecture code %d", (int) arch);
	if (feature_dim < 1)
		return qv_error(err, QV_EINVAL, "feature dimension %d must be at least 1", feature_dim);
	if ((rc = qv_model_config_parse_all(config_json, &cfg, err)) != QV_OK)
		return rc;
	if ((rc = qv_safetensors_parse(st_buf, st_len, &st, err)) != QV_OK)
		return rc;

	m = qv_calloc(1, sizeof(QvModel), err, "model");
	if (m == NULL)
	{
		qv_safetensors_free(st);
		return QV_ENOMEM;
	}
	m->arch = arch;
	m->seed = cfg.seed;
	m->precompute = cfg.precompute;
	m->recompute = cfg.recompute;
	m->n_variants = cfg.n_variants;
	memcpy(m->variants, cfg.variants, sizeof(m->variants));
	rc = build_model(m, st, cfg.fanout, cfg.n_fanout, feature_dim, err);
	qv_safetensors_free(st);
	for (int32_t i = 1; rc == QV_OK && i <= cfg.n_variants; i++)
	{
		QvModel		v;

		rc = qv_model_variant_apply(&v, m, &cfg, i, err);
	}
	if (rc != QV_OK)
	{
		qv_model_free(m);
		return rc;
	}
	*out = m;
	return QV_OK;
}

bool
qv_model_any_precompute(const QvModel *m)
{
	bool		any = m->precompute;

	for (int32_t i = 0; i < m->n_variants; i++)
		any |= m->variants[i].has_precompute ? m->variants[i].precompute : m->precompute;
	return any;
}

void
qv_model_free(QvModel *m)
{
	int			i;

	if (m == NULL)
		return;
	for (i = 0; i < QV_MAX_LAYERS; i++)
	{
		free(m->layers[i].weight_l);
		free(m->layers[i].bias_l);
		free(m->layers[i].weight_r);
		free(m->layers[i].bias_r);
		free(m->layers[i].att_src);
		free(m->layers[i].att_dst);
	}
	free(m);
}

/* Fanouts as model.h allows them: -1 or >= 1, at most QV_MAX_LAYERS hops. */
int
qv_check_fanouts(const int32_t *fanout, int n_hops, QvError *err)
{
	if (n_hops < 0 || n_hops > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "hop count %d must be between 0 and %d",
						n_hops, QV_MAX_LAYERS);
	if (n_hops > 0 && fanout == NULL)
		return qv_error(err, QV_EINVAL, "no fanouts given for %d hops", n_hops);
	for (int h = 0; h < n_hops; h++)
		if (fanout[h] != -1 && fanout[h] < 1)
			return qv_error(err, QV_EINVAL, "fanout %d of hop %d must be -1 or at least 1",
							(int) fanout[h], h + 1);
	return QV_OK;
}
