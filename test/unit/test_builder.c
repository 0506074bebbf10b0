/*
 * test_builder.c — a graph built on its own thread (core/builder.c) is the
 * graph qv_graph_build makes, the caller is told when it is done, and a
 * bad input comes back as the same error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <cmocka.h>

#include "builder.h"

#define N 2000
#define E 20000
#define DIM 3

static atomic_int notified;

static void
notify(void)
{
	atomic_fetch_add(&notified, 1);
}

/* A random graph's rows (malloc'd). */
static QvGraphInput
random_input(int64_t **ids, float **feat, int64_t **src, int64_t **dst)
{
	uint64_t	x = 12345;

	*ids = malloc(sizeof(int64_t) * N);
	*feat = malloc(sizeof(float) * N * DIM);
	*src = malloc(sizeof(int64_t) * E);
	*dst = malloc(sizeof(int64_t) * E);
	for (int i = 0; i < N; i++)
	{
		(*ids)[i] = 7 * (int64_t) i - 5000;
		for (int k = 0; k < DIM; k++)
			(*feat)[i * DIM + k] = (float) (i + k);
	}
	for (int e = 0; e < E; e++)
	{
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		(*src)[e] = (*ids)[(x >> 33) % N];
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		(*dst)[e] = (*ids)[(x >> 33) % N];
	}
	return (QvGraphInput) {N, DIM, *ids, *feat, E, *src, *dst, false};
}

/* Wait (at most 10 s) for the build, as the engine's loop would. */
static void
wait_done(QvBuild *b)
{
	struct timespec ts = {0, 1000000};

	for (int i = 0; i < 10000 && !qv_build_done(b); i++)
		nanosleep(&ts, NULL);
	assert_true(qv_build_done(b));
	qv_build_join(b);
}

static void
test_build_equals_inline(void **state)
{
	int64_t    *ids, *src, *dst;
	float	   *feat;
	QvBuild		b = {0};
	QvGraph    *g = NULL;
	QvError		err = {0};

	(void) state;
	b.in = random_input(&ids, &feat, &src, &dst);
	b.notify = notify;
	atomic_store(&notified, 0);
	assert_int_equal(qv_build_start(&b, &err), QV_OK);
	wait_done(&b);
	assert_int_equal(atomic_load(&notified), 1);
	assert_non_null(b.g);
	assert_int_equal(qv_graph_build(&b.in, &g, &err), QV_OK);
	assert_int_equal(b.g->n_nodes, g->n_nodes);
	assert_int_equal(b.g->n_edges, g->n_edges);
	assert_memory_equal(b.g->rowptr, g->rowptr, sizeof(g->rowptr[0]) * (g->n_nodes + 1));
	assert_memory_equal(b.g->col, g->col, sizeof(g->col[0]) * g->n_edges);
	assert_memory_equal(b.g->feat, g->feat, sizeof(float) * N * DIM);
	qv_graph_free(g);
	qv_graph_free(b.g);
	free(ids);
	free(feat);
	free(src);
	free(dst);
}

static void
test_build_error(void **state)
{
	int64_t    *ids, *src, *dst;
	float	   *feat;
	QvBuild		b = {0};
	QvError		err = {0};

	(void) state;
	b.in = random_input(&ids, &feat, &src, &dst);
	src[17] = 999999;			/* an edge to a node without a feature row */
	b.notify = notify;
	atomic_store(&notified, 0);
	assert_int_equal(qv_build_start(&b, &err), QV_OK);
	wait_done(&b);
	assert_int_equal(atomic_load(&notified), 1);
	assert_null(b.g);
	assert_int_equal(b.err.code, QV_EDATA);
	assert_non_null(strstr(b.err.msg, "999999"));
	free(ids);
	free(feat);
	free(src);
	free(dst);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_equals_inline),
		cmocka_unit_test(test_build_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
