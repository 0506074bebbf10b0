/*
 * transfer.c — bulk inputs carried from a backend to the engine in DSM.
 *
 * The backend creates a segment, lays the rows out behind a small header and
 * passes the handle in its slot; the engine attaches, builds its own copies
 * and detaches.  The segment dies with the last detach.
 */
#include "postgres.h"

#include "quiver.h"

typedef struct GraphPayload
{
	int64		n_nodes;
	int64		n_edges;
	int32		dim;
	bool		undirected;
	bool		live;
	LiveFrom	from;			/* xip: after the features */
} GraphPayload;

typedef struct ModelPayload
{
	Size		arch_len;
	Size		config_len;
	Size		weights_len;
} ModelPayload;

#define ALIGN8(x) TYPEALIGN(8, (x))

static dsm_segment *
create_segment(Size size, dsm_handle *handle)
{
	dsm_segment *seg = dsm_create(size, DSM_CREATE_NULL_IF_MAXSEGMENTS);

	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not create a %zu-byte shared memory segment for the quiver engine", size)));
	*handle = dsm_segment_handle(seg);
	return seg;
}

/* Copy graph rows into a new segment. */
dsm_segment *
transfer_graph_rows(const GraphRows *rows, dsm_handle *handle)
{
	Size		ids = ALIGN8(sizeof(int64) * rows->n_nodes);
	Size		edges = ALIGN8(sizeof(int64) * rows->n_edges);
	Size		feat = ALIGN8(sizeof(float) * (Size) rows->n_nodes * rows->dim);
	Size		xip = rows->live ? ALIGN8(sizeof(uint64) * rows->from.n_xip) : 0;
	Size		size = ALIGN8(sizeof(GraphPayload)) + ids + 2 * edges + feat + xip;
	dsm_segment *seg = create_segment(size, handle);
	char	   *p = dsm_segment_address(seg);
	GraphPayload *hdr = (GraphPayload *) p;

	hdr->n_nodes = rows->n_nodes;
	hdr->n_edges = rows->n_edges;
	hdr->dim = rows->dim;
	hdr->undirected = rows->undirected;
	hdr->live = rows->live;
	if (rows->live)
	{
		hdr->from = rows->from;
		hdr->from.xip = NULL;
		memcpy(p + size - xip, rows->from.xip, sizeof(uint64) * rows->from.n_xip);
	}
	p += ALIGN8(sizeof(GraphPayload));
	memcpy(p, rows->ids, sizeof(int64) * rows->n_nodes);
	p += ids;
	if (rows->n_edges > 0)
	{
		memcpy(p, rows->src, sizeof(int64) * rows->n_edges);
		memcpy(p + edges, rows->dst, sizeof(int64) * rows->n_edges);
	}
	p += 2 * edges;
	memcpy(p, rows->feat, sizeof(float) * (Size) rows->n_nodes * rows->dim);
	return seg;
}

/* Point rows at the arrays of a mapped graph segment (no copy). */
void
transfer_graph_view(void *base, GraphRows *rows)
{
	char	   *p = base;
	GraphPayload *hdr = (GraphPayload *) p;

	rows->n_nodes = hdr->n_nodes;
	rows->n_edges = hdr->n_edges;
	rows->dim = hdr->dim;
	rows->undirected = hdr->undirected;
	rows->live = hdr->live;
	p += ALIGN8(sizeof(GraphPayload));
	rows->ids = (int64 *) p;
	p += ALIGN8(sizeof(int64) * rows->n_nodes);
	rows->src = (int64 *) p;
	rows->dst = (int64 *) (p + ALIGN8(sizeof(int64) * rows->n_edges));
	p += 2 * ALIGN8(sizeof(int64) * rows->n_edges);
	rows->feat = (float *) p;
	if (rows->live)
	{
		rows->from = hdr->from;
		rows->from.xip = (uint64 *) (p + ALIGN8(sizeof(float) * (Size) rows->n_nodes * rows->dim));
	}
}

/* Copy a model's arch, config text and weights into a new segment. */
dsm_segment *
transfer_model(const char *arch, const char *config, const bytea *weights, dsm_handle *handle)
{
	ModelPayload hdr;
	dsm_segment *seg;
	char	   *p;

	hdr.arch_len = strlen(arch) + 1;
	hdr.config_len = strlen(config) + 1;
	hdr.weights_len = VARSIZE_ANY_EXHDR(weights);
	seg = create_segment(sizeof(hdr) + hdr.arch_len + hdr.config_len + hdr.weights_len, handle);
	p = dsm_segment_address(seg);
	memcpy(p, &hdr, sizeof(hdr));
	p += sizeof(hdr);
	memcpy(p, arch, hdr.arch_len);
	p += hdr.arch_len;
	memcpy(p, config, hdr.config_len);
	p += hdr.config_len;
	memcpy(p, VARDATA_ANY(weights), hdr.weights_len);
	return seg;
}

/* Point at the parts of a mapped model segment. */
void
transfer_model_view(void *base, const char **arch, const char **config,
					const uint8 **weights, size_t *weights_len)
{
	ModelPayload hdr;
	const char *p = base;

	memcpy(&hdr, p, sizeof(hdr));
	p += sizeof(hdr);
	*arch = p;
	p += hdr.arch_len;
	*config = p;
	p += hdr.config_len;
	*weights = (const uint8 *) p;
	*weights_len = hdr.weights_len;
}

/* gnn_train's request: the labelled nodes and the config. */
typedef struct TrainPayload
{
	int64		n;
	Size		arch_len;
	Size		config_len;
} TrainPayload;

/* Copy a training request (arch, config, n labelled nodes) into a new
 * segment. */
dsm_segment *
transfer_train(const char *arch, const char *config, const int64 *ids, const int32 *labels,
			   int64 n, dsm_handle *handle)
{
	TrainPayload hdr = {n, strlen(arch) + 1, strlen(config) + 1};
	Size		size = ALIGN8(sizeof(hdr)) + ALIGN8(sizeof(int64) * n) +
		ALIGN8(sizeof(int32) * n) + hdr.arch_len + hdr.config_len;
	dsm_segment *seg = create_segment(size, handle);
	char	   *p = dsm_segment_address(seg);

	memcpy(p, &hdr, sizeof(hdr));
	p += ALIGN8(sizeof(hdr));
	memcpy(p, ids, sizeof(int64) * n);
	p += ALIGN8(sizeof(int64) * n);
	memcpy(p, labels, sizeof(int32) * n);
	p += ALIGN8(sizeof(int32) * n);
	memcpy(p, arch, hdr.arch_len);
	memcpy(p + hdr.arch_len, config, hdr.config_len);
	return seg;
}

/* Point at the parts of a mapped training request (no copy). */
void
transfer_train_view(void *base, const char **arch, const char **config, const int64 **ids,
					const int32 **labels, int64 *n)
{
	TrainPayload hdr;
	const char *p = base;

	memcpy(&hdr, p, sizeof(hdr));
	p += ALIGN8(sizeof(hdr));
	*n = hdr.n;
	*ids = (const int64 *) p;
	p += ALIGN8(sizeof(int64) * hdr.n);
	*labels = (const int32 *) p;
	p += ALIGN8(sizeof(int32) * hdr.n);
	*arch = p;
	*config = p + hdr.arch_len;
}
