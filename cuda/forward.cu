/*
 * forward.cu — lanes, models and inference of the GPU module.
 *
 * A lane is one CUDA stream of one device with its cuBLAS handle (bound to
 * the stream; cuBLAS is dlopened by the first lane, blas.cu), two timing events, pinned host staging for the seeds, the
 * output and the per-batch readbacks, and device scratch buffers that grow
 * to the largest batch seen and are then reused.  A model is a copy of its
 * weights: GraphSAGE's W_l and W_r side by side as one [out, 2 in] matrix
 * (the aggregation kernel writes [mean | own row] so one GEMM does both
 * terms) and the summed biases.
 *
 * infer: seeds to the device, sample (sample.cu: one readback per hop),
 * then per layer the fused gather + aggregation kernel (aggregate.cu), one
 * cublasSgemm and a bias + ReLU kernel, the rows of the seeds gathered in
 * input order, and one copy back with the row counters.  The layers follow
 * forward.c: layer i turns rows of nodes[L-i] into rows of nodes[L-1-i],
 * ReLU between layers, none after the last.  embed runs the same code for
 * the first k layers over the model's hops L-k .. L-1 (qv_embed's sample).
 * A GAT layer transforms first and then attends (run_gat_layer, gat.cu):
 * its weights are lin.weight [heads C, in], the attention vectors and the
 * bias.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <new>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.cuh"

/* ---- device buffers ------------------------------------------------------------ */

int
devbuf_grow(DevBuf *b, size_t bytes, const char *what, int dev, size_t *held,
			QvError *err)
{
	const size_t want = bytes + bytes / 8;
	cudaError_t crc;

	if (bytes <= b->cap)
		return QV_OK;
	if (b->p != NULL)
	{
		crc = cudaFree(b->p);
		*held -= b->cap;
		b->p = NULL;
		b->cap = 0;
		if (crc != cudaSuccess)
			return cuda_error(err, crc, "cudaFree", dev);
	}
	if ((crc = cudaMalloc(&b->p, want)) != cudaSuccess)
	{
		char		call[128];

		b->p = NULL;
		snprintf(call, sizeof(call), "cudaMalloc of %zu bytes for %s", want, what);
		return cuda_error(err, crc, call, dev);
	}
	b->cap = want;
	*held += want;
	return QV_OK;
}

void
devbuf_free(DevBuf *b, size_t *held)
{
	if (b->p != NULL)
		(void) cudaFree(b->p);
	*held -= b->cap;
	b->p = NULL;
	b->cap = 0;
}

int
qvc_upload(void **dptr, const void *src, size_t bytes, const char *what, int dev,
		   size_t *held, QvError *err)
{
	cudaError_t crc;
	char		call[128];

	*dptr = NULL;
	if (bytes == 0)
		return QV_OK;
	if ((crc = cudaMalloc(dptr, bytes)) != cudaSuccess)
	{
		*dptr = NULL;
		snprintf(call, sizeof(call), "cudaMalloc of %zu bytes for %s", bytes, what);
		return cuda_error(err, crc, call, dev);
	}
	*held += bytes;
	if ((crc = cudaMemcpy(*dptr, src, bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
	{
		snprintf(call, sizeof(call), "cudaMemcpy of %s", what);
		return cuda_error(err, crc, call, dev);
	}
	return QV_OK;
}

/* Grow pinned host staging *p of *cap bytes to bytes (contents lost). */
static int
pinned_grow(void **p, size_t *cap, size_t bytes, const char *what, int dev, QvError *err)
{
	const size_t want = bytes + bytes / 8;
	cudaError_t crc;

	if (bytes <= *cap)
		return QV_OK;
	if (*p != NULL)
	{
		crc = cudaFreeHost(*p);
		*p = NULL;
		*cap = 0;
		if (crc != cudaSuccess)
			return cuda_error(err, crc, "cudaFreeHost", dev);
	}
	if ((crc = cudaHostAlloc(p, want, cudaHostAllocDefault)) != cudaSuccess)
	{
		char		call[128];

		*p = NULL;
		snprintf(call, sizeof(call), "cudaHostAlloc of %zu bytes for %s", want, what);
		return cuda_error(err, crc, call, dev);
	}
	*cap = want;
	return QV_OK;
}

/* ---- lanes ------------------------------------------------------------------------- */

/* Free every scratch buffer of a lane. */
static void
free_lane_buffers(QvGpuLane *lane)
{
	DevBuf	   *bufs[] = {&lane->seeds, &lane->seed_pos, &lane->keys[0], &lane->keys[1],
		&lane->vals[0], &lane->vals[1], &lane->scan, &lane->temp, &lane->act[0],
	&lane->act[1], &lane->agg, &lane->out, &lane->gat_xw, &lane->gat_score};

	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		devbuf_free(bufs[i], &lane->bytes);
	for (int h = 0; h < QV_MAX_LAYERS; h++)
	{
		devbuf_free(&lane->nodes[h], &lane->bytes);
		devbuf_free(&lane->offsets[h], &lane->bytes);
		devbuf_free(&lane->nbr[h], &lane->bytes);
	}
}

void
api_lane_destroy(QvGpuLane *lane)
{
	if (lane == NULL)
		return;
	if (cudaSetDevice(lane->dev) == cudaSuccess)
	{
		if (lane->stream)
			(void) cudaStreamSynchronize(lane->stream);
		free_lane_buffers(lane);
		if (lane->blas)
			(void) lane->bl->destroy(lane->blas);
		if (lane->ev_start)
			(void) cudaEventDestroy(lane->ev_start);
		if (lane->ev_stop)
			(void) cudaEventDestroy(lane->ev_stop);
		if (lane->stream)
			(void) cudaStreamDestroy(lane->stream);
		if (lane->d_ctl)
			(void) cudaFree(lane->d_ctl);
		if (lane->h_ctl)
			(void) cudaFreeHost(lane->h_ctl);
		if (lane->h_seeds)
			(void) cudaFreeHost(lane->h_seeds);
		if (lane->h_out)
			(void) cudaFreeHost(lane->h_out);
	}
	(void) cudaGetLastError();
	delete lane;
}

/* Stream, cuBLAS handle, events and control block of a new lane. */
static int
init_lane(QvGpuLane *lane, QvError *err)
{
	int			dev = lane->dev;
	cublasStatus_t st;
	int			rc = QV_OK;

	QVC_DO(qvc_blas(&lane->bl, err));
	QVC_DO(qvc_set_device(dev, err));
	QVC_TRY("cudaStreamCreateWithFlags",
			cudaStreamCreateWithFlags(&lane->stream, cudaStreamNonBlocking));
	if ((st = lane->bl->create(&lane->blas)) != CUBLAS_STATUS_SUCCESS)
	{
		lane->blas = NULL;
		return cublas_error(err, st, "cublasCreate", dev);
	}
	if ((st = lane->bl->set_stream(lane->blas, lane->stream)) != CUBLAS_STATUS_SUCCESS)
		return cublas_error(err, st, "cublasSetStream", dev);
	QVC_TRY("cudaEventCreate", cudaEventCreate(&lane->ev_start));
	QVC_TRY("cudaEventCreate", cudaEventCreate(&lane->ev_stop));
	QVC_TRY("cudaHostAlloc of the lane's control block",
			cudaHostAlloc((void **) &lane->h_ctl, sizeof(GpuCtl), cudaHostAllocDefault));
	QVC_TRY("cudaMalloc of the lane's control block",
			cudaMalloc((void **) &lane->d_ctl, sizeof(GpuCtl)));
	lane->bytes += sizeof(GpuCtl);
fail:
	return rc;
}

int
api_lane_create(int dev, QvGpuLane **out, QvError *err)
{
	QvGpuLane  *lane;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "lane_create: NULL output argument");
	*out = NULL;
	if ((rc = qvc_check_device(dev, "lane_create", err)) != QV_OK)
		return rc;
	lane = new (std::nothrow) QvGpuLane();
	if (lane == NULL)
		return qv_error(err, QV_ENOMEM, "lane_create: out of host memory");
	lane->dev = dev;
	if ((rc = init_lane(lane, err)) != QV_OK)
	{
		api_lane_destroy(lane);
		return rc;
	}
	*out = lane;
	return QV_OK;
}

/* ---- models -------------------------------------------------------------------------- */

/* The checks of forward.c's validate_model, without a graph. */
static int
check_model(const QvModel *m, QvError *err)
{
	if (m->arch != QV_ARCH_GRAPHSAGE && m->arch != QV_ARCH_GCN && m->arch != QV_ARCH_GAT)
		return qv_error(err, QV_EINVAL, "model_create: unknown model architecture %d", (int) m->arch);
	if (m->n_layers < 1 || m->n_layers > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "model_create: layer count %d must be between 1 and %d",
						 (int) m->n_layers, QV_MAX_LAYERS);
	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];

		if (l->in_dim < 1 || (i > 0 && l->in_dim != m->layers[i - 1].out_dim))
			return qv_error(err, QV_EINVAL, "model_create: layer %d takes %d inputs, but %s %d",
							 i, (int) l->in_dim, i == 0 ? "needs at least" : "the layer before gives",
							 i == 0 ? 1 : (int) m->layers[i - 1].out_dim);
		if (l->out_dim < 1 || l->weight_l == NULL ||
			(m->arch == QV_ARCH_GRAPHSAGE && l->weight_r == NULL))
			return qv_error(err, QV_EINVAL, "model_create: layer %d lacks weights", i);
		if (m->arch == QV_ARCH_GAT &&
			(l->heads < 1 || l->head_dim < 1 || l->att_src == NULL || l->att_dst == NULL ||
			 l->out_dim != (l->concat ? l->heads * l->head_dim : l->head_dim)))
			return qv_error(err, QV_EINVAL,
							"model_create: GAT layer %d has %d outputs, %d heads of %d channels (%s)%s",
							i, (int) l->out_dim, (int) l->heads, (int) l->head_dim,
							l->concat ? "concatenated" : "averaged",
							l->att_src && l->att_dst ? "" : " and lacks attention vectors");
		if (m->fanout[i] < -1)
			return qv_error(err, QV_EINVAL, "model_create: fanout %d at hop %d must be -1 or >= 0",
							 (int) m->fanout[i], i + 1);
	}
	if (m->layers[m->n_layers - 1].out_dim != m->out_dim)
		return qv_error(err, QV_EINVAL, "model_create: last layer gives %d outputs, model declares %d",
						 (int) m->layers[m->n_layers - 1].out_dim, (int) m->out_dim);
	return QV_OK;
}

/* GAT layer l on the device: lin.weight, attention vectors, bias. */
static int
upload_gat_layer(QvGpuModel *gm, const QvLayer *l, GpuLayer *gl, QvError *err)
{
	const size_t hc = (size_t) l->heads * l->head_dim;
	int			rc;

	gl->in_dim = l->in_dim;
	gl->out_dim = l->out_dim;
	gl->heads = l->heads;
	gl->head_dim = l->head_dim;
	gl->concat = l->concat ? 1 : 0;
	if ((rc = qvc_upload((void **) &gl->w, l->weight_l, hc * l->in_dim * sizeof(float),
						 "GAT lin.weight", gm->dev, &gm->bytes, err)) != QV_OK ||
		(rc = qvc_upload((void **) &gl->att_src, l->att_src, hc * sizeof(float),
						 "GAT att_src", gm->dev, &gm->bytes, err)) != QV_OK ||
		(rc = qvc_upload((void **) &gl->att_dst, l->att_dst, hc * sizeof(float),
						 "GAT att_dst", gm->dev, &gm->bytes, err)) != QV_OK)
		return rc;
	if (l->bias_l)
		rc = qvc_upload((void **) &gl->bias, l->bias_l, (size_t) l->out_dim * sizeof(float),
						"GAT bias", gm->dev, &gm->bytes, err);
	return rc;
}

/* Weights of layer l on the device: [W_l | W_r] for SAGE, W for GCN, and
 * the summed biases; GAT's in upload_gat_layer. */
static int
upload_layer(QvGpuModel *gm, QvArch arch, const QvLayer *l, GpuLayer *gl, QvError *err)
{
	const int32_t in = l->in_dim,
				out = l->out_dim;
	const int32_t k = arch == QV_ARCH_GRAPHSAGE ? 2 * in : in;
	float	   *w = (float *) malloc((size_t) out * k * sizeof(float));
	float	   *b = (float *) malloc((size_t) out * sizeof(float));
	int			rc = QV_OK;

	if (arch == QV_ARCH_GAT)
	{
		free(w);
		free(b);
		return upload_gat_layer(gm, l, gl, err);
	}
	gl->in_dim = in;
	gl->out_dim = out;
	if (w == NULL || b == NULL)
		rc = qv_error(err, QV_ENOMEM, "model_create: out of host memory for a %d x %d layer", out, k);
	else
	{
		for (int32_t o = 0; o < out; o++)
		{
			memcpy(w + (size_t) o * k, l->weight_l + (size_t) o * in, (size_t) in * sizeof(float));
			if (arch == QV_ARCH_GRAPHSAGE)
				memcpy(w + (size_t) o * k + in, l->weight_r + (size_t) o * in, (size_t) in * sizeof(float));
			b[o] = (l->bias_l ? l->bias_l[o] : 0.0f) + (l->bias_r ? l->bias_r[o] : 0.0f);
		}
		rc = qvc_upload((void **) &gl->w, w, (size_t) out * k * sizeof(float), "layer weights",
						gm->dev, &gm->bytes, err);
		if (rc == QV_OK && (l->bias_l || l->bias_r))
			rc = qvc_upload((void **) &gl->bias, b, (size_t) out * sizeof(float), "layer biases",
							gm->dev, &gm->bytes, err);
	}
	free(w);
	free(b);
	return rc;
}

void
api_model_destroy(QvGpuModel *model)
{
	if (model == NULL)
		return;
	if (cudaSetDevice(model->dev) == cudaSuccess)
		for (int i = 0; i < model->n_layers; i++)
		{
			if (model->layers[i].w)
				(void) cudaFree(model->layers[i].w);
			if (model->layers[i].bias)
				(void) cudaFree(model->layers[i].bias);
			if (model->layers[i].att_src)
				(void) cudaFree(model->layers[i].att_src);
			if (model->layers[i].att_dst)
				(void) cudaFree(model->layers[i].att_dst);
		}
	(void) cudaGetLastError();
	free(model);
}

int
api_model_create(int dev, const QvModel *m, int allow_tf32, QvGpuModel **out,
				 size_t *device_bytes, QvError *err)
{
	QvGpuModel *gm;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "model_create: NULL output argument");
	*out = NULL;
	if (device_bytes)
		*device_bytes = 0;
	if (m == NULL)
		return qv_error(err, QV_EINVAL, "model_create: NULL model");
	if ((rc = check_model(m, err)) != QV_OK ||
		(rc = qvc_check_device(dev, "model_create", err)) != QV_OK ||
		(rc = qvc_set_device(dev, err)) != QV_OK)
		return rc;
	gm = (QvGpuModel *) calloc(1, sizeof(QvGpuModel));
	if (gm == NULL)
		return qv_error(err, QV_ENOMEM, "model_create: out of host memory");
	gm->dev = dev;
	gm->arch = m->arch;
	gm->n_layers = m->n_layers;
	gm->in_dim = m->layers[0].in_dim;
	gm->out_dim = m->out_dim;
	gm->allow_tf32 = allow_tf32 ? 1 : 0;
	memcpy(gm->fanout, m->fanout, sizeof(gm->fanout));
	gm->seed = m->seed;
	for (int i = 0; i < m->n_layers; i++)
		if ((rc = upload_layer(gm, m->arch, &m->layers[i], &gm->layers[i], err)) != QV_OK)
		{
			api_model_destroy(gm);
			return rc;
		}
	if (device_bytes)
		*device_bytes = gm->bytes;
	*out = gm;
	return QV_OK;
}

/* ---- inference ---------------------------------------------------------------------- */

/* Host checks of an infer call: nothing has reached the device yet. */
static int
check_infer(const QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
			const int32_t *seeds, int32_t n, const float *out, QvError *err)
{
	if (lane == NULL || model == NULL || store == NULL)
		return qv_error(err, QV_EINVAL, "infer: NULL lane, model or store");
	return qv_cuda_check_infer(lane->dev, model->dev, store->dev, seeds, n, out,
							   model->in_dim, store->dim, store->n_nodes, err);
}

/* Device address of lane's row counters. */
static unsigned long long *
ctl_rows(const QvGpuLane *lane)
{
	return (unsigned long long *) ((char *) lane->d_ctl + offsetof(GpuCtl, rows));
}

/* Input rows of GAT layer i over sample s: the first layer's gathered
 * rows (targets', then one per edge), else the previous layer's. */
static int64_t
gat_rows(const GpuSample *s, int i)
{
	const int	h = s->n_hops - 1 - i;

	return i == 0 ? (int64_t) s->n_nodes[h] + s->n_edges[h] : (int64_t) s->n_nodes[h + 1];
}

/* Grow the activations and the aggregate matrix for sample s (layers
 * 0 .. s->n_hops-1). */
static int
prepare_layers(QvGpuLane *lane, const QvGpuModel *m, const GpuSample *s, QvError *err)
{
	size_t		act[2] = {0, 0},
				agg = 0,
				xw = 0,
				score = 0;
	int			rc;

	for (int i = 0; i < s->n_hops; i++)
	{
		const GpuLayer *l = &m->layers[i];
		const size_t rows = (size_t) s->n_nodes[s->n_hops - 1 - i];
		const size_t lda = (size_t) l->in_dim * (m->arch == QV_ARCH_GRAPHSAGE ? 2 : 1);

		act[i % 2] = rows * l->out_dim > act[i % 2] ? rows * l->out_dim : act[i % 2];
		if (m->arch == QV_ARCH_GAT)
		{
			const size_t n = (size_t) gat_rows(s, i);

			agg = i == 0 && n * l->in_dim > agg ? n * l->in_dim : agg;
			xw = n * l->heads * l->head_dim > xw ? n * l->heads * l->head_dim : xw;
			score = 2 * n * l->heads > score ? 2 * n * l->heads : score;
		}
		else
			agg = rows * lda > agg ? rows * lda : agg;
	}
	if ((rc = devbuf_grow(&lane->gat_xw, xw * sizeof(float), "GAT transforms", lane->dev,
						  &lane->bytes, err)) != QV_OK ||
		(rc = devbuf_grow(&lane->gat_score, score * sizeof(float), "GAT scores", lane->dev,
						  &lane->bytes, err)) != QV_OK)
		return rc;
	for (int p = 0; p < 2; p++)
		if ((rc = devbuf_grow(&lane->act[p], act[p] * sizeof(float), "activations", lane->dev,
							  &lane->bytes, err)) != QV_OK)
			return rc;
	return devbuf_grow(&lane->agg, agg * sizeof(float), "aggregates", lane->dev, &lane->bytes, err);
}

/* c[n x out] = a[n x k] W^T, W [out, k] row-major (cuBLAS is column-major:
 * c^T = W a^T). */
static int
dense_w(QvGpuLane *lane, const float *w, int32_t out_dim, int32_t k, int32_t n, const float *a,
		float *c, QvError *err)
{
	const float one = 1.0f,
				zero = 0.0f;
	cublasStatus_t st;

	st = lane->bl->sgemm(lane->blas, CUBLAS_OP_T, CUBLAS_OP_N, out_dim, n, k, &one, w, k,
						 a, k, &zero, c, out_dim);
	return st == CUBLAS_STATUS_SUCCESS ? QV_OK : cublas_error(err, st, "cublasSgemm", lane->dev);
}

/* The same with layer l's weights and width. */
static int
dense(QvGpuLane *lane, const GpuLayer *l, int32_t k, int32_t n, const float *a, float *c,
	  QvError *err)
{
	return dense_w(lane, l->w, l->out_dim, k, n, a, c, err);
}

/* GAT layer i into c: rows gathered (first layer) or read from in,
 * transformed (x' = h W^T), scored, attended per target, bias, ReLU. */
static int
run_gat_layer(QvGpuLane *lane, const QvGpuModel *m, const QvGpuStore *store,
			  const GpuSample *s, int i, const float *in, float *c, QvError *err)
{
	const GpuLayer *l = &m->layers[i];
	const int	h = s->n_hops - 1 - i;
	const int64_t n_rows = gat_rows(s, i);
	const int32_t hc = l->heads * l->head_dim;
	float	   *xw = (float *) lane->gat_xw.p;
	float	   *a_src = (float *) lane->gat_score.p;
	GatJob		g;
	int			rc;

	if (n_rows > INT32_MAX)
		return qv_error(err, QV_ELIMIT, "infer: GAT layer %d reads %lld rows, more than %d",
						i, (long long) n_rows, INT32_MAX);
	if (i == 0)
	{
		const FeatTiers tiers = qvc_store_tiers(store);

		if ((rc = qvc_gat_gather(&tiers, s->nodes[h], s->nbr[h], s->n_nodes[h], n_rows,
								 l->in_dim, (float *) lane->agg.p, ctl_rows(lane),
								 lane->stream, lane->dev, err)) != QV_OK)
			return rc;
		in = (const float *) lane->agg.p;
	}
	memset(&g, 0, sizeof(g));
	g.n_dst = s->n_nodes[h];
	g.heads = l->heads;
	g.head_dim = l->head_dim;
	g.concat = l->concat;
	g.first = i == 0;
	g.offsets = s->offsets[h];
	g.nbr = s->nbr[h];
	g.targets = s->nodes[h];
	g.xw = xw;
	g.a_src = a_src;
	g.a_dst = a_src + n_rows * l->heads;
	g.out = c;
	g.out_dim = l->out_dim;
	if ((rc = dense_w(lane, l->w, hc, l->in_dim, (int32_t) n_rows, in, xw, err)) != QV_OK ||
		(rc = qvc_gat_scores(xw, n_rows, l->heads, l->head_dim, l->att_src, l->att_dst,
							 a_src, (float *) g.a_dst, lane->stream, lane->dev, err)) != QV_OK ||
		(rc = qvc_gat_attend(&g, lane->stream, lane->dev, err)) != QV_OK)
		return rc;
	return qvc_bias_act(c, l->bias, g.n_dst, l->out_dim, i < m->n_layers - 1,
						lane->stream, lane->dev, err);
}

/* Layer i: aggregate the rows of nodes[h+1] into nodes[h]'s, h =
 * s->n_hops-1-i, dense, bias, ReLU (all but the model's last layer); in is
 * the previous layer's output (NULL: the feature tiers). */
static int
run_layer(QvGpuLane *lane, const QvGpuModel *m, const QvGpuStore *store, const GpuSample *s,
		  int i, const float *in, float *c, QvError *err)
{
	const GpuLayer *l = &m->layers[i];
	const int	h = s->n_hops - 1 - i;
	const bool	sage = m->arch == QV_ARCH_GRAPHSAGE;
	const int32_t lda = l->in_dim * (sage ? 2 : 1);
	AggJob		job;
	int			rc;

	if (m->arch == QV_ARCH_GAT)
		return run_gat_layer(lane, m, store, s, i, in, c, err);
	memset(&job, 0, sizeof(job));
	job.gcn = !sage;
	job.from_tiers = i == 0;
	job.vec4 = l->in_dim % 4 == 0 && (i > 0 || store->feat_vec4);
	job.n_dst = s->n_nodes[h];
	job.dim = l->in_dim;
	job.offsets = s->offsets[h];
	job.nbr = s->nbr[h];
	job.targets = s->nodes[h];
	job.in_nodes = i > 0 ? s->nodes[h + 1] : NULL;
	job.in = in;
	job.tiers = qvc_store_tiers(store);
	job.deg = store->d_deg;
	job.out = (float *) lane->agg.p;
	job.ldo = lda;
	job.self_col = sage ? l->in_dim : -1;
	job.rows = ctl_rows(lane);
	if ((rc = qvc_aggregate(&job, lane->stream, lane->dev, err)) != QV_OK ||
		(rc = dense(lane, l, lda, job.n_dst, job.out, c, err)) != QV_OK)
		return rc;
	return qvc_bias_act(c, l->bias, job.n_dst, l->out_dim, i < m->n_layers - 1,
						lane->stream, lane->dev, err);
}

/* Layers 0 .. s->n_hops-1 (every layer, or the first k of an embedding);
 * *last gets the output rows of nodes[0]. */
static int
run_layers(QvGpuLane *lane, const QvGpuModel *m, const QvGpuStore *store, const GpuSample *s,
		   const float **last, QvError *err)
{
	const float *in = NULL;
	cublasStatus_t st;
	int			rc;

	if ((rc = prepare_layers(lane, m, s, err)) != QV_OK)
		return rc;
	st = lane->bl->set_math_mode(lane->blas,
								 m->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
	if (st != CUBLAS_STATUS_SUCCESS)
		return cublas_error(err, st, "cublasSetMathMode", lane->dev);
	for (int i = 0; i < s->n_hops; i++)
	{
		float	   *c = (float *) lane->act[i % 2].p;

		if ((rc = run_layer(lane, m, store, s, i, in, c, err)) != QV_OK)
			return rc;
		in = c;
	}
	*last = in;
	return QV_OK;
}

/* Staging and device buffers of a batch of n seeds. */
static int
prepare_batch(QvGpuLane *lane, int32_t n, int32_t out_dim, QvError *err)
{
	const size_t out_bytes = (size_t) n * out_dim * sizeof(float);
	int			rc;

	/* the seeds, then room for the sampler's host de-duplication of a small
	 * batch: distinct seeds, positions and their count (sample.cu) */
	if ((rc = pinned_grow((void **) &lane->h_seeds, &lane->h_seeds_cap,
						  (3 * (size_t) n + 1) * sizeof(int32_t),
						  "seed staging", lane->dev, err)) != QV_OK ||
		(rc = pinned_grow((void **) &lane->h_out, &lane->h_out_cap, out_bytes,
						  "output staging", lane->dev, err)) != QV_OK ||
		(rc = devbuf_grow(&lane->seeds, (size_t) n * sizeof(int32_t), "seeds", lane->dev,
						  &lane->bytes, err)) != QV_OK ||
		(rc = devbuf_grow(&lane->seed_pos, (size_t) n * sizeof(int32_t), "seed positions",
						  lane->dev, &lane->bytes, err)) != QV_OK)
		return rc;
	return devbuf_grow(&lane->out, out_bytes, "output", lane->dev, &lane->bytes, err);
}

/* Output rows in input order, then back to the host with the counters. */
static int
finish_batch(QvGpuLane *lane, const GpuSample *s, const float *last, int32_t n,
			 int32_t out_dim, QvError *err)
{
	int			dev = lane->dev;
	int			rc;

	QVC_DO(qvc_gather_rows((float *) lane->out.p, last, s->seed_pos, n, out_dim, lane->stream,
						   dev, err));
	QVC_TRY("cudaMemcpyAsync of the output",
			cudaMemcpyAsync(lane->h_out, lane->out.p, (size_t) n * out_dim * sizeof(float),
							cudaMemcpyDeviceToHost, lane->stream));
	QVC_TRY("cudaMemcpyAsync of the row counters",
			cudaMemcpyAsync(lane->h_ctl->rows, ctl_rows(lane), sizeof(lane->h_ctl->rows),
							cudaMemcpyDeviceToHost, lane->stream));
	QVC_TRY("cudaEventRecord", cudaEventRecord(lane->ev_stop, lane->stream));
	QVC_TRY("cudaStreamSynchronize at the end of a batch", cudaStreamSynchronize(lane->stream));
	return QV_OK;
fail:
	return rc;
}

/* The device work of infer (n_run = L) and embed (n_run = layer < L), its
 * arguments checked: layers 0 .. n_run-1 over the model's hops
 * L-n_run .. L-1, as the CPU's forward() in src/core/forward.c. */
static int
run_infer(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
		  const int32_t *seeds, int32_t n, int32_t n_run, float *out,
		  QvGpuBatchStats *stats, QvError *err)
{
	const int32_t od = model->layers[n_run - 1].out_dim;
	int			dev = lane->dev;
	GpuSample	s;
	const float *last = NULL;
	float		ms = 0.0f;
	int			rc;

	QVC_DO(qvc_set_device(dev, err));
	QVC_DO(qvc_store_check_live(store, err));
	QVC_DO(prepare_batch(lane, n, od, err));
	memcpy(lane->h_seeds, seeds, (size_t) n * sizeof(int32_t));
	QVC_TRY("cudaEventRecord", cudaEventRecord(lane->ev_start, lane->stream));
	QVC_TRY("cudaMemsetAsync of the control block",
			cudaMemsetAsync(lane->d_ctl, 0, sizeof(GpuCtl), lane->stream));
	QVC_TRY("cudaMemcpyAsync of the seeds",
			cudaMemcpyAsync(lane->seeds.p, lane->h_seeds, (size_t) n * sizeof(int32_t),
							cudaMemcpyHostToDevice, lane->stream));
	/* the sample is keyed by the model's seed and the graph's version, read
	 * now (the engine may set it after store_create) */
	QVC_DO(qvc_sample(lane, store, model->fanout, model->n_layers - n_run, n_run,
					  qv_sample_base(model->seed, store->graph->version), n, &s, err));
	QVC_DO(run_layers(lane, model, store, &s, &last, err));
	QVC_DO(finish_batch(lane, &s, last, n, od, err));
	memcpy(out, lane->h_out, (size_t) n * od * sizeof(float));
	if (stats)
	{
		QVC_TRY("cudaEventElapsedTime", cudaEventElapsedTime(&ms, lane->ev_start, lane->ev_stop));
		stats->rows_local = (int64_t) lane->h_ctl->rows[0];
		stats->rows_peer = (int64_t) lane->h_ctl->rows[1];
		stats->rows_host = (int64_t) lane->h_ctl->rows[2];
		stats->device_us = (double) ms * 1000.0;
	}
	return QV_OK;
fail:
	/* leave nothing of this batch running on the lane's buffers */
	(void) cudaStreamSynchronize(lane->stream);
	(void) cudaGetLastError();
	return rc;
}

/* infer and embed: checks, the lane held for the batch of n_run layers
 * (layer 0: every layer). */
static int
infer_layers(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
			 const int32_t *seeds, int32_t n, int32_t layer, float *out,
			 QvGpuBatchStats *stats, QvError *err)
{
	int			expect = 0;
	int			rc;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if ((rc = check_infer(lane, model, store, seeds, n, out, err)) != QV_OK ||
		(layer != 0 && (rc = qv_hidden_layer_check(model->n_layers, layer, err)) != QV_OK))
		return rc;
	if (n == 0)
		return QV_OK;
	if (!lane->busy.compare_exchange_strong(expect, 1))
		return qv_error(err, QV_EINVAL, "infer: the lane of device %d is already serving another call",
						 lane->dev);
	rc = run_infer(lane, model, store, seeds, n, layer != 0 ? layer : model->n_layers, out,
				   stats, err);
	lane->busy.store(0);
	if (rc != QV_OK && stats)
		memset(stats, 0, sizeof(*stats));
	return rc;
}

int
api_infer(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
		  const int32_t *seeds, int32_t n, float *out, QvGpuBatchStats *stats,
		  QvError *err)
{
	return infer_layers(lane, model, store, seeds, n, 0, out, stats, err);
}

int
api_embed(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
		  const int32_t *seeds, int32_t n, int32_t layer, float *out,
		  QvGpuBatchStats *stats, QvError *err)
{
	if (layer == 0)				/* 0 means "every layer" to infer_layers */
		return qv_hidden_layer_check(model ? model->n_layers : 0, layer, err);
	return infer_layers(lane, model, store, seeds, n, layer, out, stats, err);
}
