/*
 * train_save.c — a model's weights as a safetensors blob with PyTorch
 * Geometric's names (train.h, qv_model_save_safetensors): F32, the tensors
 * of model.h in layer order, the header padded with spaces to a multiple
 * of 8 bytes as the safetensors library writes it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "train.h"

/* ---- safetensors ------------------------------------------------------------------------------ */

/* One tensor to write. */
typedef struct SaveTensor
{
	char		name[48];
	const float *data;
	int			ndim;
	int64_t		shape[3];
} SaveTensor;

static void
save_add(SaveTensor *ts, int *n, const char *name, int layer, const float *data,
		 int ndim, int64_t d0, int64_t d1, int64_t d2)
{
	if (data == NULL)
		return;
	snprintf(ts[*n].name, sizeof(ts[*n].name), "convs.%d.%s", layer, name);
	ts[*n].data = data;
	ts[*n].ndim = ndim;
	ts[*n].shape[0] = d0;
	ts[*n].shape[1] = d1;
	ts[*n].shape[2] = d2;
	(*n)++;
}

/* The model's tensors with PyG's names (model.h). */
static int
save_list(const QvModel *m, SaveTensor *ts)
{
	int			n = 0;

	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];
		int64_t		out = l->out_dim,
					in = l->in_dim;

		if (m->arch == QV_ARCH_GRAPHSAGE)
		{
			save_add(ts, &n, "lin_l.weight", i, l->weight_l, 2, out, in, 0);
			save_add(ts, &n, "lin_l.bias", i, l->bias_l, 1, out, 0, 0);
			save_add(ts, &n, "lin_r.weight", i, l->weight_r, 2, out, in, 0);
			save_add(ts, &n, "lin_r.bias", i, l->bias_r, 1, out, 0, 0);
			continue;
		}
		save_add(ts, &n, "lin.weight", i, l->weight_l,
				 2, m->arch == QV_ARCH_GAT ? (int64_t) l->heads * l->head_dim : out, in, 0);
		if (m->arch == QV_ARCH_GAT)
		{
			save_add(ts, &n, "att_src", i, l->att_src, 3, 1, l->heads, l->head_dim);
			save_add(ts, &n, "att_dst", i, l->att_dst, 3, 1, l->heads, l->head_dim);
		}
		save_add(ts, &n, "bias", i, l->bias_l, 1, out, 0, 0);
	}
	return n;
}

static size_t
tensor_numel(const SaveTensor *t)
{
	size_t		n = 1;

	for (int d = 0; d < t->ndim; d++)
		n *= (size_t) t->shape[d];
	return n;
}

/* The safetensors header: names, F32, shapes, offsets in list order. */
static char *
save_header(const SaveTensor *ts, int n, QvError *err)
{
	/* json_pack, not json_object(): in the engine, the postgres executable's
	 * own json_object (the SQL function) would take that call */
	json_t	   *h = json_pack("{}");
	size_t		off = 0;
	char	   *text = NULL;
	bool		ok = h != NULL;

	for (int k = 0; ok && k < n; k++)
	{
		json_t	   *shape = json_array();
		size_t		bytes = tensor_numel(&ts[k]) * sizeof(float);

		for (int d = 0; shape && d < ts[k].ndim; d++)
			json_array_append_new(shape, json_integer(ts[k].shape[d]));
		ok = shape && json_array_size(shape) == (size_t) ts[k].ndim &&
			json_object_set_new(h, ts[k].name,
								json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
										  "data_offsets", (json_int_t) off,
										  (json_int_t) (off + bytes))) == 0;
		off += bytes;
	}
	if (ok)
		text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(h);
	if (text == NULL)
		qv_error(err, QV_ENOMEM, "out of memory writing a safetensors header of %d tensors", n);
	return text;
}

int
qv_model_save_safetensors(const QvModel *m, uint8_t **buf, size_t *len, QvError *err)
{
	SaveTensor	ts[QV_MAX_LAYERS * 4];
	int			n;
	char	   *header;
	size_t		hlen,
				padded,
				total;
	uint8_t    *p;

	*buf = NULL;
	*len = 0;
	if (m == NULL || m->n_layers < 1 || m->n_layers > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "no model to save");
	n = save_list(m, ts);
	if ((header = save_header(ts, n, err)) == NULL)
		return QV_ENOMEM;
	hlen = strlen(header);
	padded = (hlen + 7) & ~(size_t) 7;	/* data 8-byte aligned, as safetensors pads */
	total = 8 + padded;
	for (int k = 0; k < n; k++)
		total += tensor_numel(&ts[k]) * sizeof(float);
	if ((p = qv_malloc(total, err, "safetensors blob")) == NULL)
	{
		free(header);
		return QV_ENOMEM;
	}
	for (int b = 0; b < 8; b++)
		p[b] = (uint8_t) ((uint64_t) padded >> (8 * b));
	memcpy(p + 8, header, hlen);
	memset(p + 8 + hlen, ' ', padded - hlen);
	free(header);
	total = 8 + padded;
	for (int k = 0; k < n; k++)
	{
		size_t		bytes = tensor_numel(&ts[k]) * sizeof(float);

		memcpy(p + total, ts[k].data, bytes);	/* little-endian hosts (x86-64, arm64) */
		total += bytes;
	}
	*buf = p;
	*len = total;
	return QV_OK;
}
