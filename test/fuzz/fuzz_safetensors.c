/*
 * fuzz_safetensors.c — libFuzzer harness of the safetensors reader
 * (src/core/safetensors.c) and the model loader (src/core/model.c), for
 * both architectures, built by `make fuzz` with clang's fuzzer, address and
 * undefined-behaviour sanitizers and run by scripts/fuzz.sh.
 *
 * Input layout (see docs/fuzz.md; test/fuzz/make_corpus.py writes seeds):
 *
 *   byte 0      bit 0: architecture (0 graphsage, 1 gcn);
 *               bits 1..7: the graph's feature dimension - 1 (1..128)
 *   bytes 1..2  config length C, little-endian (cut to what is left)
 *   C bytes     the model config JSON (NUL-terminated copy; an embedded
 *               NUL ends it early, as a C string would)
 *   the rest    the safetensors blob, in its own buffer of exactly its size
 *               so that any read past its end is an ASan report
 *
 * Each input goes through
 *   1. qv_safetensors_parse on the blob, then every tensor is checked to lie
 *      inside the data section with nbytes = numel x dtype size, found by
 *      its name, and converted to float32 when its dtype allows;
 *   2. qv_model_config_parse on the config (fanouts and seed);
 *   3. qv_model_load; an accepted model must be consistent (layers chain
 *      from the feature dimension, every parameter present as the arch
 *      requires, all finite, the config's fanouts and seed), and is then
 *      run by qv_infer over a fixed 5-node graph with that feature
 *      dimension, which must succeed; with every fanout -1 its predictions
 *      must match a double-precision evaluation of model.h's formulas.
 * A refusal must be a clean one: *out NULL, err.code equal to the return
 * code, a non-empty message in valid UTF-8.  Anything else aborts (a crash to libFuzzer),
 * as do ASan, UBSan and LeakSanitizer reports.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "finite.h"
#include "forward.h"
#include "graph.h"
#include "model.h"
#include "qv_error.h"
#include "safetensors.h"
#include "../unit/utf8_check.h"

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_safetensors: check failed at line %d: %s\n", \
					__LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* FUZZ_SAFETENSORS_VERBOSE=1: say what the loader made of each input (to
 * check seeds, or a crash's input, by hand: fuzz_safetensors FILE...). */
static int	verbose;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *v = getenv("FUZZ_SAFETENSORS_VERBOSE");

	(void) argc;
	(void) argv;
	verbose = v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
	return 0;
}


/* A failed call must say so cleanly, in valid UTF-8. */
static void
check_refusal(int rc, const QvError *err)
{
	CHECK(rc != QV_OK);
	CHECK(err->code == (QvErrCode) rc);
	CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
	CHECK(err->msg[0] != '\0');
	CHECK(valid_utf8(err->msg));
}

static int
dtype_size(const QvTensor *t)
{
	switch (t->dtype)
	{
		case QV_DTYPE_F32:
			return 4;
		case QV_DTYPE_F16:
		case QV_DTYPE_BF16:
			return 2;
		default:
			return 0;
	}
}

/* Step 1: the reader alone, and what it promises about each tensor. */
static void
fuzz_reader(const uint8_t *blob, size_t len)
{
	QvSafetensors *st = NULL;
	QvError		err = {QV_OK, ""};
	int			rc = qv_safetensors_parse(blob, len, &st, &err);
	uint64_t	header_len = 0;
	const uint8_t *data_start,
			   *data_end = blob + len;
	int			i;

	if (rc != QV_OK)
	{
		check_refusal(rc, &err);
		CHECK(st == NULL);
		return;
	}
	CHECK(st != NULL && len >= 8);
	for (i = 7; i >= 0; i--)
		header_len = (header_len << 8) | blob[i];
	data_start = blob + 8 + header_len;
	CHECK(st->n_tensors >= 0);
	for (i = 0; i < st->n_tensors; i++)
	{
		const QvTensor *t = &st->tensors[i];
		int			size = dtype_size(t);
		int64_t		numel = 1;
		int			d;

		CHECK(t->name != NULL);
		CHECK(qv_safetensors_find(st, t->name) == t);
		CHECK(t->ndim >= 0 && t->ndim <= QV_ST_MAX_DIMS);
		for (d = 0; d < t->ndim; d++)
		{
			CHECK(t->shape[d] >= 0);
			numel *= t->shape[d];
		}
		CHECK(numel == t->numel);
		CHECK(t->data >= data_start && t->data <= data_end);
		CHECK(t->nbytes <= (size_t) (data_end - t->data));
		if (size > 0)
		{
			float	   *f;

			CHECK(t->nbytes == (size_t) t->numel * (size_t) size);
			f = malloc((size_t) t->numel * sizeof(float) + 1);
			CHECK(f != NULL);
			CHECK(qv_tensor_to_f32(t, f, &err) == QV_OK);
			/* read every converted value */
			(void) qv_check_finite(f, (size_t) t->numel, NULL);
			free(f);
		}
		else
		{
			float		dummy;

			CHECK(t->dtype == QV_DTYPE_OTHER);
			rc = qv_tensor_to_f32(t, &dummy, &err);
			check_refusal(rc, &err);
		}
	}
	qv_safetensors_free(st);
}

/* A fixed 5-node graph with feature dimension dim (a hub, a self loop, a
 * duplicate edge and an isolated node). */
static QvGraph *
small_graph(int32_t dim)
{
	static const int64_t ids[] = {10, 20, 30, 40, 50};
	static const int64_t src[] = {10, 20, 30, 10, 40, 20, 20, 30};
	static const int64_t dst[] = {20, 30, 30, 30, 10, 10, 10, 20};
	float	   *feat = malloc((size_t) 5 * (size_t) dim * sizeof(float));
	QvGraphInput in;
	QvGraph    *g = NULL;
	QvError		err = {QV_OK, ""};
	size_t		i;

	CHECK(feat != NULL);
	for (i = 0; i < (size_t) 5 * (size_t) dim; i++)
		feat[i] = (float) ((int) (i * 7 % 11) - 5) * 0.25f;
	memset(&in, 0, sizeof(in));
	in.n_nodes = 5;
	in.dim = dim;
	in.ids = ids;
	in.feat = feat;
	in.n_edges = 8;
	in.src = src;
	in.dst = dst;
	in.undirected = (dim % 2) == 0;
	if (qv_graph_build(&in, &g, &err) != QV_OK)
	{
		fprintf(stderr, "fuzz_safetensors: graph: %s\n", err.msg);
		abort();
	}
	free(feat);
	return g;
}

/* Magnitudes of terms beyond which float32 may overflow, or underflow
 * and lose the relative accuracy the check relies on. */
#define TERM_MAX 1e30
#define TERM_MIN 1e-30

/* Is the nonzero term magnitude t outside [TERM_MIN, TERM_MAX]? */
static inline int
out_of_range(double t)
{
	return t != 0.0 && (t < TERM_MIN || t > TERM_MAX);
}

/*
 * Full-neighbour inference of m on g in double precision, straight from
 * model.h's formulas over g's CSR: out[v x out_dim] and mag, the same sums
 * over absolute values, which bounds the float32 rounding error.  Returns
 * 0 when some term or sum, in any layer, is out of range (see TERM_MAX): a
 * float32 evaluation may then overflow to infinity or lose accuracy in
 * subnormals while the double one does not, and nothing can be compared.
 */
static int
reference(const QvModel *m, const QvGraph *g, double *out, double *mag)
{
	int			ok = 1;
	int64_t		n = g->n_nodes;
	int32_t		width = g->dim;
	double	   *h,
			   *a,
			   *hn,
			   *an,
			   *agg,
			   *aagg;
	int			i;

	for (i = 0; i < m->n_layers; i++)
		if (m->layers[i].out_dim > width)
			width = m->layers[i].out_dim;
	h = calloc((size_t) (n * width), sizeof(double));
	a = calloc((size_t) (n * width), sizeof(double));
	hn = calloc((size_t) (n * width), sizeof(double));
	an = calloc((size_t) (n * width), sizeof(double));
	agg = calloc((size_t) width, sizeof(double));
	aagg = calloc((size_t) width, sizeof(double));
	CHECK(h && a && hn && an && agg && aagg);
	for (int64_t v = 0; v < n; v++)
		for (int32_t k = 0; k < g->dim; k++)
		{
			h[v * width + k] = g->feat[v * g->dim + k];
			a[v * width + k] = fabs(h[v * width + k]);
		}
	for (i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];
		int			last = i == m->n_layers - 1;

		for (int64_t v = 0; v < n; v++)
		{
			const double *hv = h + v * width,
					   *av = a + v * width;
			int64_t		b = g->rowptr[v],
						e = g->rowend[v];

			memset(agg, 0, (size_t) width * sizeof(double));
			memset(aagg, 0, (size_t) width * sizeof(double));
			if (m->arch == QV_ARCH_GRAPHSAGE)
			{
				/* mean over in-neighbours, duplicates and self loops included */
				for (int64_t j = b; j < e; j++)
					for (int32_t k = 0; k < l->in_dim; k++)
					{
						agg[k] += h[(int64_t) g->col[j] * width + k];
						aagg[k] += a[(int64_t) g->col[j] * width + k];
					}
				for (int32_t k = 0; k < l->in_dim && e > b; k++)
				{
					agg[k] /= (double) (e - b);
					aagg[k] /= (double) (e - b);
				}
			}
			else
			{
				/* GCN: one self loop replaces any, 1/sqrt(dh_u dh_v) */
				double		dv = g->deg_noloop[v] + 1.0;

				for (int32_t k = 0; k < l->in_dim; k++)
				{
					agg[k] = hv[k] / dv;
					aagg[k] = av[k] / dv;
				}
				for (int64_t j = b; j < e; j++)
				{
					int32_t		u = g->col[j];
					double		c;

					if (u == v)
						continue;
					c = 1.0 / sqrt((g->deg_noloop[u] + 1.0) * dv);
					for (int32_t k = 0; k < l->in_dim; k++)
					{
						agg[k] += c * h[(int64_t) u * width + k];
						aagg[k] += c * a[(int64_t) u * width + k];
					}
				}
			}
			for (int32_t o = 0; o < l->out_dim; o++)
			{
				const float *wl = l->weight_l + (size_t) o * l->in_dim;
				double		s = l->bias_l ? l->bias_l[o] : 0.0,
							t = fabs(s);

				ok &= !out_of_range(t);
				if (l->bias_r)
				{
					s += l->bias_r[o];
					t += fabs(l->bias_r[o]);
					ok &= !out_of_range(fabs(l->bias_r[o]));
				}
				for (int32_t k = 0; k < l->in_dim; k++)
				{
					double		p = fabs(wl[k]) * aagg[k];

					s += wl[k] * agg[k];
					t += p;
					ok &= !out_of_range(p);
				}
				if (l->weight_r)
				{
					const float *wr = l->weight_r + (size_t) o * l->in_dim;

					for (int32_t k = 0; k < l->in_dim; k++)
					{
						double		p = fabs(wr[k]) * av[k];

						s += wr[k] * hv[k];
						t += p;
						ok &= !out_of_range(p);
					}
				}
				ok &= !out_of_range(t);
				hn[v * width + o] = last || s > 0 ? s : 0.0;
				an[v * width + o] = t;
			}
		}
		memcpy(h, hn, (size_t) (n * width) * sizeof(double));
		memcpy(a, an, (size_t) (n * width) * sizeof(double));
	}
	for (int64_t v = 0; v < n; v++)
		for (int32_t o = 0; o < m->out_dim; o++)
		{
			out[v * m->out_dim + o] = h[v * width + o];
			mag[v * m->out_dim + o] = a[v * width + o];
		}
	free(h);
	free(a);
	free(hn);
	free(an);
	free(agg);
	free(aagg);
	return ok;
}

/*
 * With every fanout -1, the predictions are model.h's formulas to float32
 * rounding: |got - ref| <= tol x (the sum of the terms' magnitudes), tol
 * the worst-case relative rounding of a float32 sum of n terms, n u with
 * u = 2^-24, summed over the layers (n = in_dim + 16), times 8.
 */
static void
check_predictions(const QvModel *m, const QvGraph *g, const int64_t *q, int nq,
				  const float *got)
{
	double	   *ref,
			   *mag;
	double		tol = 0;
	int			i;

	for (i = 0; i < m->n_layers; i++)
	{
		if (m->fanout[i] != -1)
			return;
		tol += 8.0 * ldexp(1.0, -24) * (m->layers[i].in_dim + 16.0);
	}
	ref = malloc((size_t) g->n_nodes * (size_t) m->out_dim * sizeof(double));
	mag = malloc((size_t) g->n_nodes * (size_t) m->out_dim * sizeof(double));
	CHECK(ref != NULL && mag != NULL);
	if (!reference(m, g, ref, mag))
		nq = 0;					/* float32 may overflow or underflow */
	for (i = 0; i < nq; i++)
	{
		int32_t		v = qv_graph_find(g, q[i]);

		CHECK(v >= 0);
		for (int32_t o = 0; o < m->out_dim; o++)
		{
			double		r = ref[(int64_t) v * m->out_dim + o];
			double		bound = mag[(int64_t) v * m->out_dim + o];
			float		x = got[(size_t) i * m->out_dim + o];

			if (!(fabs((double) x - r) <= tol * bound + 1e-37))
			{
				fprintf(stderr, "fuzz_safetensors: %s node %lld output %d: got %.9g, reference %.9g (terms %.3g, tolerance %.3g)\n",
						qv_arch_name(m->arch), (long long) q[i], (int) o, x, r, bound, tol * bound);
				abort();
			}
		}
	}
	free(ref);
	free(mag);
}

/* An accepted model must be whole, and serve predictions. */
static void
check_model(const QvModel *m, QvArch arch, int32_t feature_dim)
{
	int32_t		in_dim = feature_dim;
	size_t		bytes = 0;
	QvGraph    *g;
	QvError		err = {QV_OK, ""};
	static const int64_t q[] = {10, 20, 30, 40, 50, 30};
	float	   *out;
	int			i;

	CHECK(m->arch == arch);
	CHECK(m->n_layers >= 1 && m->n_layers <= QV_MAX_LAYERS);
	CHECK(m->in_dim == feature_dim);
	CHECK(qv_check_fanouts(m->fanout, m->n_layers, &err) == QV_OK);
	for (i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];
		size_t		w = (size_t) l->in_dim * (size_t) l->out_dim;

		CHECK(l->in_dim == in_dim && l->out_dim >= 1);
		CHECK(l->weight_l != NULL && qv_check_finite(l->weight_l, w, NULL));
		bytes += w * sizeof(float);
		if (arch == QV_ARCH_GRAPHSAGE)
		{
			CHECK(l->weight_r != NULL && qv_check_finite(l->weight_r, w, NULL));
			bytes += w * sizeof(float);
		}
		else
			CHECK(l->weight_r == NULL && l->bias_r == NULL);
		if (l->bias_l != NULL)
		{
			CHECK(qv_check_finite(l->bias_l, (size_t) l->out_dim, NULL));
			bytes += (size_t) l->out_dim * sizeof(float);
		}
		if (l->bias_r != NULL)
		{
			CHECK(qv_check_finite(l->bias_r, (size_t) l->out_dim, NULL));
			bytes += (size_t) l->out_dim * sizeof(float);
		}
		in_dim = l->out_dim;
	}
	for (; i < QV_MAX_LAYERS; i++)
		CHECK(m->layers[i].weight_l == NULL && m->layers[i].weight_r == NULL &&
			  m->layers[i].bias_l == NULL && m->layers[i].bias_r == NULL);
	CHECK(m->out_dim == in_dim);
	CHECK(m->bytes == bytes);

	g = small_graph(feature_dim);
	out = malloc(sizeof(q) / sizeof(q[0]) * (size_t) m->out_dim * sizeof(float));
	CHECK(out != NULL);
	if (qv_infer_ws(m, g, q, (int32_t) (sizeof(q) / sizeof(q[0])), out, NULL, NULL,
					&err) != QV_OK)
	{
		fprintf(stderr, "fuzz_safetensors: inference of an accepted model failed: %s\n",
				err.msg);
		abort();
	}
	check_predictions(m, g, q, (int) (sizeof(q) / sizeof(q[0])), out);
	free(out);
	qv_graph_free(g);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	QvArch		arch;
	int32_t		feature_dim;
	size_t		clen;
	char	   *config;
	uint8_t    *blob;
	size_t		blob_len;
	int32_t		fanout[QV_MAX_LAYERS];
	int32_t		n_fanout = -1;
	uint64_t	seed = 12345;
	QvModel    *m = (QvModel *) &m;
	QvError		err = {QV_OK, ""};
	int			rc;

	if (size < 3)
		return 0;
	arch = (data[0] & 1) ? QV_ARCH_GCN : QV_ARCH_GRAPHSAGE;
	feature_dim = (int32_t) (data[0] >> 1) + 1;
	clen = (size_t) data[1] | (size_t) data[2] << 8;
	if (clen > size - 3)
		clen = size - 3;
	config = malloc(clen + 1);
	CHECK(config != NULL);
	memcpy(config, data + 3, clen);
	config[clen] = '\0';
	blob_len = size - 3 - clen;
	blob = malloc(blob_len ? blob_len : 1);
	CHECK(blob != NULL);
	memcpy(blob, data + 3 + clen, blob_len);

	fuzz_reader(blob, blob_len);

	rc = qv_model_config_parse(config, fanout, &n_fanout, &seed, &err);
	if (rc == QV_OK)
	{
		CHECK(n_fanout >= 0 && n_fanout <= QV_MAX_LAYERS);
		CHECK(qv_check_fanouts(fanout, n_fanout, &err) == QV_OK);
		CHECK(seed <= (uint64_t) QV_MODEL_SEED_MAX);
	}
	else
	{
		check_refusal(rc, &err);
		CHECK(n_fanout == 0);
	}

	err.code = QV_OK;
	err.msg[0] = '\0';
	rc = qv_model_load(arch, blob, blob_len, config, feature_dim, &m, &err);
	if (verbose)
		fprintf(stderr, "fuzz_safetensors: %s, %d features, config %zu bytes, blob %zu bytes: %s%s\n",
				qv_arch_name(arch), (int) feature_dim, clen, blob_len,
				rc == QV_OK ? "loaded" : "refused: ", rc == QV_OK ? "" : err.msg);
	if (rc == QV_OK)
	{
		CHECK(m != NULL);
		/* the config parsed alone gave the same fanouts and seed */
		CHECK(m->seed == seed);
		for (int h = 0; h < m->n_layers; h++)
			CHECK(m->fanout[h] == (n_fanout > 0 ? fanout[h] : -1));
		/* the model owns its weights: scribble over the blob first */
		memset(blob, 0xa5, blob_len);
		check_model(m, arch, feature_dim);
		qv_model_free(m);
	}
	else
	{
		check_refusal(rc, &err);
		CHECK(m == NULL);
	}
	free(blob);
	free(config);
	return 0;
}
