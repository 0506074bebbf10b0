/*
 * bench.cu — gather_bench: the bandwidth of the first layer's feature
 * gather on a device, against a device-to-device copy of the same bytes.
 *
 * The gather is the inference's own path: aggregate_kernel reading its
 * rows through the location words (aggregate.cu), float4 loads when the
 * store allows them, here with one neighbour per target so that each
 * output row is one gathered row and the mean is the row itself.  The rows
 * are random slots of the store's local rows, so every read is a cached
 * row in the device's memory; the row counters check that.  The copy is
 * cudaMemcpyAsync of the same byte count from the store into the output
 * buffer.  Both are timed with events on the lane's stream, after one
 * untimed run each.  quiver-bench prints the two and their ratio
 * (docs/bench.md).
 */
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.cuh"

/* Device buffers of one gather_bench call. */
typedef struct BenchBufs
{
	int32_t    *nbr;			/* n_rows graph indices */
	int64_t    *offsets;		/* 0, 1, ..., n_rows */
	float	   *out;			/* n_rows x dim */
	size_t		held;
} BenchBufs;

/* Host checks of a gather_bench call: nothing has reached the device yet. */
static int
check_bench(const QvGpuLane *lane, const QvGpuStore *store, int32_t n_rows,
			int32_t reps, const double *gather_gbps, const double *copy_gbps,
			QvError *err)
{
	if (lane == NULL || store == NULL || gather_gbps == NULL || copy_gbps == NULL)
		return qv_error(err, QV_EINVAL, "gather_bench: NULL lane, store or output");
	if (lane->dev != store->dev)
		return qv_error(err, QV_EINVAL,
						 "gather_bench: lane on device %d and store on device %d must share one device",
						 lane->dev, store->dev);
	if (n_rows < 1 || reps < 1)
		return qv_error(err, QV_EINVAL,
						 "gather_bench: %d rows and %d repetitions must both be positive",
						 (int) n_rows, (int) reps);
	if (n_rows > store->n_local)
		return qv_error(err, QV_EINVAL,
						 "gather_bench: %d rows asked, but the store of device %d holds %lld local rows",
						 (int) n_rows, store->dev, (long long) store->n_local);
	return QV_OK;
}

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#define ROWS_PER_TARGET 16

/* Rows gathered per target for a bench of n rows (n is rounded down to a
 * multiple of it). */
static int32_t
rows_per_target(int32_t n)
{
	return n >= ROWS_PER_TARGET ? ROWS_PER_TARGET : 1;
}

/* Upload the nodes of n uniform random local slots and the offsets of
 * n / rows_per_target(n) targets. */
static int
upload_rows(const QvGpuStore *st, int32_t n, uint64_t seed, BenchBufs *b, QvError *err)
{
	int32_t    *nodes = (int32_t *) malloc((size_t) n * sizeof(int32_t));
	int64_t    *off = (int64_t *) calloc((size_t) n + 1, sizeof(int64_t));
	uint64_t	x = seed;
	int			rc;

	if (nodes == NULL || off == NULL)
		rc = qv_error(err, QV_ENOMEM, "gather_bench: out of host memory for %d rows", (int) n);
	else
	{
		for (int32_t i = 0; i < n; i++)
		{
			uint64_t	slot = ((splitmix64(&x) >> 32) * (uint64_t) st->n_local) >> 32;

			nodes[i] = st->h_local_rows[slot];
		}
		for (int32_t t = 0; t <= n / rows_per_target(n); t++)
			off[t] = (int64_t) t * rows_per_target(n);
		rc = qvc_upload((void **) &b->nbr, nodes, (size_t) n * sizeof(int32_t),
						"gathered rows", st->dev, &b->held, err);
		if (rc == QV_OK)
			rc = qvc_upload((void **) &b->offsets, off, ((size_t) n + 1) * sizeof(int64_t),
							"gather offsets", st->dev, &b->held, err);
	}
	free(nodes);
	free(off);
	return rc;
}

/* The first layer's gather job over the rows in b: one row per target. */
static AggJob
gather_job(const QvGpuLane *lane, const QvGpuStore *st, int32_t n, const BenchBufs *b)
{
	AggJob		job;

	memset(&job, 0, sizeof(job));
	job.from_tiers = 1;
	job.vec4 = st->dim % 4 == 0 && st->feat_vec4;
	job.n_dst = n / rows_per_target(n);
	job.dim = st->dim;
	job.offsets = b->offsets;
	job.nbr = b->nbr;
	job.tiers = qvc_store_tiers(st);
	job.deg = st->d_deg;
	job.out = b->out;
	job.ldo = st->dim;
	job.self_col = -1;
	job.rows = (unsigned long long *) ((char *) lane->d_ctl + offsetof(GpuCtl, rows));
	return job;
}

/* Milliseconds between the lane's two events, once the stop event is done. */
static int
elapsed_ms(const QvGpuLane *lane, float *ms, QvError *err)
{
	int			dev = lane->dev;
	int			rc = QV_OK;

	QVC_TRY("cudaEventSynchronize", cudaEventSynchronize(lane->ev_stop));
	QVC_TRY("cudaEventElapsedTime", cudaEventElapsedTime(ms, lane->ev_start, lane->ev_stop));
fail:
	return rc;
}

/* Time reps gathers of job (one untimed first); *ms for all reps. */
static int
time_gathers(QvGpuLane *lane, const AggJob *job, int32_t reps, float *ms, QvError *err)
{
	int			dev = lane->dev;
	int			rc = QV_OK;

	QVC_TRY("cudaMemsetAsync of the row counters",
			cudaMemsetAsync(job->rows, 0, QVC_N_KINDS * sizeof(unsigned long long), lane->stream));
	QVC_DO(qvc_aggregate(job, lane->stream, dev, err));
	QVC_TRY("cudaEventRecord", cudaEventRecord(lane->ev_start, lane->stream));
	for (int32_t r = 0; r < reps; r++)
		QVC_DO(qvc_aggregate(job, lane->stream, dev, err));
	QVC_TRY("cudaEventRecord", cudaEventRecord(lane->ev_stop, lane->stream));
	QVC_DO(elapsed_ms(lane, ms, err));
fail:
	return rc;
}

/* Time reps device-to-device copies of bytes (one untimed first). */
static int
time_copies(QvGpuLane *lane, void *dst, const void *src, size_t bytes, int32_t reps,
			float *ms, QvError *err)
{
	int			dev = lane->dev;
	int			rc = QV_OK;

	QVC_TRY("cudaMemcpyAsync device to device",
			cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, lane->stream));
	QVC_TRY("cudaEventRecord", cudaEventRecord(lane->ev_start, lane->stream));
	for (int32_t r = 0; r < reps; r++)
		QVC_TRY("cudaMemcpyAsync device to device",
				cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, lane->stream));
	QVC_TRY("cudaEventRecord", cudaEventRecord(lane->ev_stop, lane->stream));
	QVC_DO(elapsed_ms(lane, ms, err));
fail:
	return rc;
}

/* Every gathered row must have read as LOCAL: (reps + 1) x n_rows of them. */
static int
check_counters(QvGpuLane *lane, int32_t n, int32_t reps, QvError *err)
{
	const unsigned long long want = (unsigned long long) n * (unsigned long long) (reps + 1);
	const unsigned long long *got = lane->h_ctl->rows;
	int			dev = lane->dev;
	int			rc = QV_OK;

	QVC_TRY("cudaMemcpyAsync of the row counters",
			cudaMemcpyAsync(lane->h_ctl->rows, (char *) lane->d_ctl + offsetof(GpuCtl, rows),
							sizeof(lane->h_ctl->rows), cudaMemcpyDeviceToHost, lane->stream));
	QVC_TRY("cudaStreamSynchronize", cudaStreamSynchronize(lane->stream));
	if (got[0] != want || got[1] != 0 || got[2] != 0)
		return qv_error(err, QV_EDATA,
						 "gather_bench on device %d: rows read local %llu, peer %llu, host %llu; expected %llu local",
						 dev, got[0], got[1], got[2], want);
fail:
	return rc;
}

/* The device work of gather_bench, its arguments checked. */
static int
run_bench(QvGpuLane *lane, const QvGpuStore *store, int32_t n, int32_t reps, uint64_t seed,
		  double *gather_gbps, double *copy_gbps, QvError *err)
{
	BenchBufs	b = {NULL, NULL, NULL, 0};
	size_t		bytes;
	int			dev = lane->dev;
	float		ms_gather = 0.0f,
				ms_copy = 0.0f;
	AggJob		job;
	int			rc;

	n -= n % rows_per_target(n);	/* whole targets */
	bytes = (size_t) n * (size_t) store->dim * sizeof(float);
	QVC_DO(qvc_set_device(dev, err));
	QVC_DO(upload_rows(store, n, seed, &b, err));
	QVC_TRY("cudaMalloc of the gather output", cudaMalloc((void **) &b.out, bytes));
	job = gather_job(lane, store, n, &b);
	QVC_DO(time_gathers(lane, &job, reps, &ms_gather, err));
	QVC_DO(time_copies(lane, b.out, store->d_local, bytes, reps, &ms_copy, err));
	QVC_DO(check_counters(lane, n, reps, err));
	if (ms_gather <= 0.0f || ms_copy <= 0.0f)
	{
		rc = qv_error(err, QV_EDEVICE, "gather_bench on device %d: event times %.6f and %.6f ms",
					   dev, (double) ms_gather, (double) ms_copy);
		goto fail;
	}
	/* memory traffic, as bandwidthTest counts a copy: bytes read + written */
	*gather_gbps = (double) (bytes + bytes / rows_per_target(n)) * reps /
		((double) ms_gather * 1e-3) / 1e9;
	*copy_gbps = 2.0 * (double) bytes * reps / ((double) ms_copy * 1e-3) / 1e9;
	rc = QV_OK;
fail:
	/* leave nothing running on the buffers freed below */
	(void) cudaStreamSynchronize(lane->stream);
	if (b.nbr)
		(void) cudaFree(b.nbr);
	if (b.offsets)
		(void) cudaFree(b.offsets);
	if (b.out)
		(void) cudaFree(b.out);
	(void) cudaGetLastError();
	return rc;
}

int
api_gather_bench(QvGpuLane *lane, const QvGpuStore *store, int32_t n_rows, int32_t reps,
				 uint64_t seed, double *gather_gbps, double *copy_gbps, QvError *err)
{
	int			expect = 0;
	int			rc;

	if (gather_gbps)
		*gather_gbps = 0.0;
	if (copy_gbps)
		*copy_gbps = 0.0;
	if ((rc = check_bench(lane, store, n_rows, reps, gather_gbps, copy_gbps, err)) != QV_OK)
		return rc;
	if (!lane->busy.compare_exchange_strong(expect, 1))
		return qv_error(err, QV_EINVAL, "gather_bench: the lane of device %d is already serving another call",
						 lane->dev);
	rc = run_bench(lane, store, n_rows, reps, seed, gather_gbps, copy_gbps, err);
	lane->busy.store(0);
	return rc;
}
