/*
 * test_variants.c — config "variants", the variant set, profiling, the
 * per-batch choice, EDF order and slicing (variants.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "variants.h"

/* ---- config ---- */

static void
parse_fails(const char *json, const char *needle)
{
	QvModelConfig cfg;
	QvError		err = {QV_OK, ""};

	assert_int_equal(qv_model_config_parse_all(json, &cfg, &err), QV_EINVAL);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("config %s: \"%s\", wanted \"%s\"", json, err.msg, needle);
	assert_int_equal(cfg.n_variants, 0);	/* defaults on failure */
}

static void
test_config_variants(void **state)
{
	QvModelConfig cfg;
	QvError		err = {QV_OK, ""};

	(void) state;
	assert_int_equal(qv_model_config_parse_all("{\"fanout\": [5, 5]}", &cfg, &err), QV_OK);
	assert_int_equal(cfg.n_variants, 0);
	assert_int_equal(qv_model_config_parse_all("{\"variants\": []}", &cfg, &err), QV_OK);
	assert_int_equal(cfg.n_variants, 0);
	assert_int_equal(qv_model_config_parse_all(
											   "{\"variants\": [{\"fanout\": [5, -1]}, {}, {\"precompute\": true, \"recompute\": 0.25, \"fanout\": [3]}],"
											   " \"fanout\": [10, 10]}", &cfg, &err), QV_OK);
	assert_int_equal(cfg.n_variants, 3);
	assert_int_equal(cfg.n_fanout, 2);
	assert_int_equal(cfg.variants[0].n_fanout, 2);
	assert_int_equal(cfg.variants[0].fanout[0], 5);
	assert_int_equal(cfg.variants[0].fanout[1], -1);
	assert_false(cfg.variants[0].has_precompute);
	assert_false(cfg.variants[0].has_recompute);
	assert_int_equal(cfg.variants[1].n_fanout, 0);
	assert_true(cfg.variants[2].has_precompute && cfg.variants[2].precompute);
	assert_true(cfg.variants[2].has_recompute);
	assert_true(cfg.variants[2].recompute == 0.25);
	assert_int_equal(cfg.variants[2].n_fanout, 1);
	/* recompute in a variant of a precomputed model: taken from the model */
	assert_int_equal(qv_model_config_parse_all(
											   "{\"variants\": [{\"recompute\": 1}], \"precompute\": true}", &cfg, &err), QV_OK);
	/* eight variants at most */
	assert_int_equal(qv_model_config_parse_all(
											   "{\"variants\": [{}, {}, {}, {}, {}, {}, {}, {}]}", &cfg, &err), QV_OK);
	assert_int_equal(cfg.n_variants, 8);

	parse_fails("{\"variants\": [{}, {}, {}, {}, {}, {}, {}, {}, {}]}",
				"config \"variants\" has 9 entries, at most 8");
	parse_fails("{\"variants\": {\"fanout\": [1]}}", "config \"variants\" must be an array");
	parse_fails("{\"variants\": [[5, 5]]}", "config variants[0] = [5,5] is not an object");
	parse_fails("{\"variants\": [{}, 3]}", "config variants[1] = 3 is not an object");
	parse_fails("{\"variants\": [{}, {}, {\"fanot\": [1]}]}",
				"unknown key \"fanot\" in config variants[2] (known: fanout, precompute, recompute)");
	parse_fails("{\"variants\": [{}, {\"seed\": 1}]}", "unknown key \"seed\" in config variants[1]");
	parse_fails("{\"variants\": [{}, {}, {\"fanout\": [5, 0]}]}",
				"config variants[2].fanout[1] = 0: must be -1 (all neighbours) or between 1 and");
	parse_fails("{\"variants\": [{\"fanout\": [-2]}]}", "config variants[0].fanout[0] = -2");
	parse_fails("{\"variants\": [{\"fanout\": [1.5]}]}", "config variants[0].fanout[0] is not an integer");
	parse_fails("{\"variants\": [{\"fanout\": 5}]}", "config \"variants[0].fanout\" must be an array");
	parse_fails("{\"variants\": [{\"fanout\": []}]}", "config \"variants[0].fanout\" has 0 entries");
	parse_fails("{\"variants\": [{\"fanout\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}]}",
				"config \"variants[0].fanout\" has 9 entries");
	parse_fails("{\"variants\": [{\"precompute\": 1}]}",
				"config variants[0].precompute = 1 is not a boolean");
	parse_fails("{\"variants\": [{\"precompute\": true, \"recompute\": 1.5}]}",
				"config variants[0].recompute = 1.5 must be a number between 0 and 1");
	parse_fails("{\"variants\": [{\"precompute\": true, \"recompute\": \"x\"}]}",
				"config variants[0].recompute = \"x\" must be a number");
	parse_fails("{\"variants\": [{}, {\"recompute\": 0.5}]}",
				"config variants[1].recompute = 0.5 needs \"precompute\": true");
	parse_fails("{\"precompute\": true, \"variants\": [{\"precompute\": false, \"recompute\": 0.5}]}",
				"config variants[0].recompute = 0.5 needs");
	parse_fails("{\"variants\": [{\"fanout\": [1], \"fanout\": [2]}]}", "duplicate object key");
	parse_fails("{\"variant\": []}", "(known: fanout, seed, precompute, recompute, training, variants)");
}

/* ---- the set ---- */

static const int dims2[] = {4, 8, 3};

static void
test_variants_make(void **state)
{
	QvModelConfig cfg;
	QvError		err = {QV_OK, ""};
	QvVariantSet *set = NULL;
	QvModel    *base = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims2,
										 (const int32_t[]) {10, 10}, false, 1);

	(void) state;
	base->seed = 7;
	base->recompute = 0.0;
	assert_int_equal(qv_model_config_parse_all(
											   "{\"variants\": [{\"fanout\": [2, 3]}, {\"precompute\": true, \"recompute\": 0.5, \"fanout\": [4]}, {}]}",
											   &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_OK);
	assert_int_equal(set->n, 4);
	/* variant 0 is the model */
	assert_int_equal(set->models[0].n_layers, 2);
	assert_memory_equal(set->models[0].fanout, base->fanout, sizeof(base->fanout));
	assert_memory_equal(set->models[0].layers, base->layers, sizeof(base->layers));
	assert_true(set->models[0].seed == 7);
	/* variant 1: own fanouts, the same weights and seed */
	assert_int_equal(set->models[1].fanout[0], 2);
	assert_int_equal(set->models[1].fanout[1], 3);
	assert_ptr_equal(set->models[1].layers[0].weight_l, base->layers[0].weight_l);
	assert_ptr_equal(set->models[1].layers[1].weight_r, base->layers[1].weight_r);
	assert_true(set->models[1].seed == 7);
	assert_false(set->models[1].precompute);
	/* variant 2: precompute, fanout[0] alone */
	assert_true(set->models[2].precompute);
	assert_true(set->models[2].recompute == 0.5);
	assert_int_equal(set->models[2].fanout[0], 4);
	assert_int_equal(set->models[2].fanout[1], -1);
	/* variant 3: the model's settings */
	assert_int_equal(set->models[3].fanout[0], 10);
	assert_int_equal(set->models[3].fanout[1], 10);
	/* the base is untouched */
	assert_int_equal(base->fanout[0], 10);
	assert_false(base->precompute);
	qv_variants_free(set);
	qv_variants_free(NULL);

	/* no variants: variant 0 alone */
	assert_int_equal(qv_model_config_parse_all("{}", &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_OK);
	assert_int_equal(set->n, 1);
	qv_variants_free(set);

	/* fanout lengths checked against the layers, naming the variant */
	assert_int_equal(qv_model_config_parse_all("{\"variants\": [{}, {\"fanout\": [2, 3, 4]}]}",
											   &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_EINVAL);
	assert_null(set);
	assert_non_null(strstr(err.msg, "config variants[1].fanout has 3 entries, model has 2 layers"));
	/* precompute variant inheriting a sampling fanout[1] */
	assert_int_equal(qv_model_config_parse_all("{\"variants\": [{\"precompute\": true}]}",
											   &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "config variants[0].precompute = true computes the hidden layers"));
	assert_non_null(strstr(err.msg, "so variants[0].fanout[1] must be -1, not 10"));
	/* a precomputed model's variant that turns it off: recompute 0 */
	base->precompute = true;
	base->recompute = 0.3;
	base->fanout[1] = -1;
	assert_int_equal(qv_model_config_parse_all(
											   "{\"precompute\": true, \"variants\": [{\"precompute\": false, \"fanout\": [2, 2]}, {\"fanout\": [3]}]}",
											   &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_OK);
	assert_false(set->models[1].precompute);
	assert_true(set->models[1].recompute == 0.0);
	assert_true(set->models[2].precompute);
	assert_true(set->models[2].recompute == 0.3);
	assert_int_equal(set->models[2].fanout[0], 3);
	qv_variants_free(set);
	/* the set freed first, then the base owns and frees the weights */
	test_model_free(base);
}

/* A model loaded with "variants" keeps them: cfg NULL makes its own set,
 * and whether any variant precomputes is known. */
static void
test_variants_of_loaded_model(void **state)
{
	QvModelConfig cfg;
	QvError		err = {QV_OK, ""};
	QvVariantSet *set = NULL;
	QvModel    *base = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims2,
										 (const int32_t[]) {10, 10}, false, 1);

	(void) state;
	assert_false(qv_model_any_precompute(base));
	assert_int_equal(qv_model_config_parse_all(
											   "{\"variants\": [{\"fanout\": [2, 3]}, {\"precompute\": true, \"fanout\": [4]}]}",
											   &cfg, &err), QV_OK);
	base->n_variants = cfg.n_variants;
	memcpy(base->variants, cfg.variants, sizeof(base->variants));
	assert_true(qv_model_any_precompute(base));
	assert_int_equal(qv_variants_make(base, NULL, &set, &err), QV_OK);
	assert_int_equal(set->n, 3);
	assert_int_equal(set->models[1].fanout[0], 2);
	assert_true(set->models[2].precompute);
	/* variant models list no variants of their own */
	assert_int_equal(set->models[1].n_variants, 0);
	assert_false(qv_model_any_precompute(&set->models[1]));
	qv_variants_free(set);
	base->n_variants = 1;		/* the fanout variant alone */
	assert_false(qv_model_any_precompute(base));
	test_model_free(base);
}

/* ---- profiling ---- */

/* n nodes, dim 4 random features, each node with k random in-edges. */
static QvGraph *
random_graph(int n, int k, uint64_t seed)
{
	int64_t    *ids = malloc(sizeof(int64_t) * n);
	float	   *feat = malloc(sizeof(float) * n * 4);
	int64_t    *src = malloc(sizeof(int64_t) * n * k);
	int64_t    *dst = malloc(sizeof(int64_t) * n * k);
	QvGraph    *g = NULL;
	QvError		err = {QV_OK, ""};

	for (int i = 0; i < n; i++)
	{
		ids[i] = 1000 + 3 * i;
		for (int j = 0; j < 4; j++)
			feat[i * 4 + j] = (float) test_rnd(&seed);
		for (int j = 0; j < k; j++)
		{
			src[i * k + j] = 1000 + 3 * (int64_t) ((test_rnd(&seed) + 1.0) / 2.0 * n);
			if (src[i * k + j] >= 1000 + 3 * (int64_t) n)
				src[i * k + j] = 1000;
			dst[i * k + j] = ids[i];
		}
	}
	{
		QvGraphInput in = {n, 4, ids, feat, (int64_t) n * k, src, dst, false};

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	}
	free(ids);
	free(feat);
	free(src);
	free(dst);
	return g;
}

static void
test_sample_nodes(void **state)
{
	QvGraph    *g = random_graph(3000, 2, 5);
	int32_t    *a = malloc(sizeof(int32_t) * 3000);
	int32_t    *b = malloc(sizeof(int32_t) * 3000);
	int64_t		na,
				nb;
	QvError		err = {QV_OK, ""};
	int			differ = 0;

	(void) state;
	assert_int_equal(qv_variants_sample_nodes(g, 1000, 42, a, &na, &err), QV_OK);
	assert_int_equal(na, 1000);
	for (int64_t i = 1; i < na; i++)
		assert_true(a[i - 1] < a[i]);	/* distinct, increasing */
	assert_true(a[0] >= 0 && a[na - 1] < 3000);
	/* the same seed, the same nodes; another seed, others */
	assert_int_equal(qv_variants_sample_nodes(g, 1000, 42, b, &nb, &err), QV_OK);
	assert_memory_equal(a, b, sizeof(int32_t) * 1000);
	assert_int_equal(qv_variants_sample_nodes(g, 1000, 43, b, &nb, &err), QV_OK);
	for (int64_t i = 0; i < 1000; i++)
		differ += a[i] != b[i];
	assert_true(differ > 0);
	/* more than the graph holds: every node */
	assert_int_equal(qv_variants_sample_nodes(g, 5000, 1, a, &na, &err), QV_OK);
	assert_int_equal(na, 3000);
	for (int64_t i = 0; i < na; i++)
		assert_int_equal(a[i], i);
	assert_int_equal(qv_variants_sample_nodes(g, 0, 1, a, &na, &err), QV_EINVAL);
	free(a);
	free(b);
	qv_graph_free(g);
}

static void
test_profile(void **state)
{
	QvGraph    *g = random_graph(1500, 6, 11);
	QvModel    *base = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims2, NULL, false, 3);
	QvModelConfig cfg;
	QvVariantSet *set = NULL;
	QvVariantStats st[4];
	QvError		err = {QV_OK, ""};
	QvPool	   *pool = qv_pool_create(1, NULL);

	(void) state;
	assert_int_equal(qv_model_config_parse_all(
											   "{\"variants\": [{\"fanout\": [2, 1]}, {}, {\"precompute\": true, \"fanout\": [1]}]}",
											   &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_OK);
	assert_int_equal(qv_variants_profile(set->models, set->n, g, NULL, pool, st, &err), QV_OK);
	/* variant 0 against itself */
	assert_true(st[0].profiled);
	assert_true(st[0].agreement == 1.0);
	assert_true(st[0].mean_rel_error == 0.0);
	assert_int_equal(st[0].n_sampled, 1000);
	/* a smaller fanout: some disagreement, an error > 0 */
	assert_true(st[1].profiled);
	assert_int_equal(st[1].n_sampled, 1000);
	assert_true(st[1].agreement <= 1.0 && st[1].agreement >= 0.0);
	assert_true(st[1].agreement < 1.0);	/* 6 in-edges sampled down to 2 */
	assert_true(st[1].mean_rel_error > 0.0);
	/* the same settings as the model: exact agreement */
	assert_true(st[2].agreement == 1.0);
	assert_true(st[2].mean_rel_error == 0.0);
	/* precompute (fanout [1, -1]): measured, not timed */
	assert_true(st[3].profiled);
	assert_true(st[3].mean_rel_error > 0.0);
	assert_int_equal(st[3].cost.n_samples, 0);
	/* ... until its rows are built: then timed over them */
	{
		QvPrecomputed *pc = NULL;
		QvVariantStats pst = st[3];
		int64_t		left = 1;

		assert_int_equal(qv_precompute_create(&set->models[3], g, &pc, &err), QV_OK);
		assert_int_equal(qv_variants_time_precomputed(&set->models[3], g, pc, NULL, pool, &pst,
													  &err), QV_EINVAL);	/* not built */
		while (left > 0)
			assert_int_equal(qv_precompute_step(pc, &set->models[3], g, 4096, pool, &left, &err),
							 QV_OK);
		assert_int_equal(qv_variants_time_precomputed(&set->models[3], g, pc, NULL, pool, &pst,
													  &err), QV_OK);
		assert_int_equal(pst.cost.n_samples, 6);
		assert_true(isfinite(qv_costmodel_predict(&pst.cost, 100.0)));
		/* a variant that reads no rows is refused */
		assert_int_equal(qv_variants_time_precomputed(&set->models[1], g, pc, NULL, pool, &pst,
													  &err), QV_EINVAL);
		assert_non_null(strstr(err.msg, "does not read precomputed rows"));
		qv_precompute_free(pc);
	}
	/* cost lines seeded: 3 sizes x 2 repeats, a finite prediction */
	for (int i = 0; i < 3; i++)
	{
		assert_int_equal(st[i].cost.n_samples, 6);
		assert_true(isfinite(qv_costmodel_predict(&st[i].cost, 100.0)));
		assert_true(qv_costmodel_predict(&st[i].cost, 100.0) >= 0.0);
	}

	/* explicit options; sample sizes below 1000 refused */
	{
		QvProfileOptions o = {.sample_size = 1200, .seed = 9,
			.n_batch_sizes = 2, .batch_sizes = (const int32_t[]) {1, 32},
		.repeats = 1};

		assert_int_equal(qv_variants_profile(set->models, 2, g, &o, pool, st, &err), QV_OK);
		assert_int_equal(st[1].n_sampled, 1200);
		assert_int_equal(st[0].cost.n_samples, 2);
		o.sample_size = 999;
		assert_int_equal(qv_variants_profile(set->models, 2, g, &o, pool, st, &err), QV_EINVAL);
		assert_non_null(strstr(err.msg, "sample size 999 is below the minimum 1000"));
	}
	qv_variants_free(set);
	qv_graph_free(g);

	/* a graph of fewer than 1000 nodes: all of them */
	g = random_graph(120, 3, 4);
	assert_int_equal(qv_model_config_parse_all("{\"variants\": [{\"fanout\": [1, 1]}]}",
											   &cfg, &err), QV_OK);
	assert_int_equal(qv_variants_make(base, &cfg, &set, &err), QV_OK);
	assert_int_equal(qv_variants_profile(set->models, set->n, g, NULL, pool, st, &err), QV_OK);
	assert_int_equal(st[0].n_sampled, 120);
	assert_int_equal(st[1].n_sampled, 120);
	assert_true(st[1].agreement <= 1.0);
	assert_true(st[1].mean_rel_error > 0.0);
	qv_variants_free(set);
	qv_graph_free(g);
	qv_pool_destroy(pool);
	test_model_free(base);
}

/* ---- the choice ---- */

/* Stats with agreement a and cost line cost = c0 + c1 x (two samples). */
static QvVariantStats
stats(double a, double c0, double c1)
{
	QvVariantStats s;

	memset(&s, 0, sizeof(s));
	s.profiled = !isnan(a);
	s.agreement = a;
	qv_costmodel_init(&s.cost, 1.0, NULL);
	if (!isnan(c0))
	{
		qv_costmodel_add(&s.cost, 0.0, c0, NULL);
		qv_costmodel_add(&s.cost, 100.0, c0 + 100.0 * c1, NULL);
	}
	return s;
}

/* A line with a negative intercept never predicts a batch cheaper than
 * its per-seed part. */
static void
test_choose_negative_intercept(void **state)
{
	QvVariantStats v[2];
	QvVariantChoice c;

	(void) state;
	v[0] = stats(1.0, 100.0, 10.0);
	v[1] = stats(0.8, NAN, NAN);
	v[1].agreement = 0.8;
	(void) qv_costmodel_add(&v[1].cost, 10.0, 5.0, NULL);
	(void) qv_costmodel_add(&v[1].cost, 100.0, 185.0, NULL);	/* b = 2, a = -15 */
	assert_true(qv_costmodel_fit(&v[1].cost).a < 0);
	assert_int_equal(qv_variant_choose(v, 2, 0.0, 1.0, 1.0, 0.0, &c), QV_OK);
	assert_int_equal(c.variant, 1);
	assert_true(c.missed);		/* b x 1 > 1 us, although a + b < 0 */
	assert_true(c.cost_us == qv_costmodel_fit(&v[1].cost).b);
	assert_int_equal(qv_variant_choose(v, 2, 0.0, 1.0, c.cost_us + 0.5, 0.0, &c), QV_OK);
	assert_int_equal(c.variant, 1);
	assert_false(c.missed);
}

static void
test_choose(void **state)
{
	QvVariantStats v[4];
	QvVariantChoice c;

	(void) state;
	v[0] = stats(1.0, 100.0, 10.0);	/* x = 100: 1100 us */
	v[1] = stats(0.95, 50.0, 5.0);	/* 550 */
	v[2] = stats(0.80, 20.0, 1.0);	/* 120 */
	v[3] = stats(0.95, 40.0, 4.0);	/* 440: as accurate as 1, cheaper */

	/* no target: variant 0 */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 0.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_false(c.missed);
	assert_close(c.cost_us, 1100.0, 1e-6);
	assert_non_null(strstr(c.reason, "no latency target"));
	assert_int_equal(qv_variant_choose(v, 4, 5000.0, 100.0, -1.0, 0.0, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_false(c.missed);

	/* a loose target: variant 0 meets it */
	assert_int_equal(qv_variant_choose(v, 4, 100.0, 100.0, 2000.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_false(c.missed);
	assert_close(c.finish_us, 1200.0, 1e-6);

	/* tighter: the most accurate that fits, ties to the cheaper (3, not 1) */
	assert_int_equal(qv_variant_choose(v, 4, 100.0, 100.0, 700.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 3);
	assert_false(c.missed);
	assert_close(c.finish_us, 540.0, 1e-6);
	assert_non_null(strstr(c.reason, "most accurate meeting the target"));
	/* the queue wait counts: 300 + 440 > 700; nothing above 0.9 fits */
	assert_int_equal(qv_variant_choose(v, 4, 300.0, 100.0, 700.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 3);	/* the cheapest above the floor */
	assert_true(c.missed);
	assert_non_null(strstr(c.reason, "target missed"));
	/* with a lower floor, variant 2 fits */
	assert_int_equal(qv_variant_choose(v, 4, 300.0, 100.0, 700.0, 0.8, &c), QV_OK);
	assert_int_equal(c.variant, 2);
	assert_false(c.missed);

	/* agreement tied with variant 0 (every variant picks the same
	 * classes): the lower error wins, variant 0 itself */
	{
		QvVariantStats t[2];

		t[0] = stats(1.0, 100.0, 10.0);
		t[1] = stats(1.0, 10.0, 1.0);
		t[1].mean_rel_error = 0.3;
		assert_int_equal(qv_variant_choose(t, 2, 0.0, 100.0, 5000.0, 0.0, &c), QV_OK);
		assert_int_equal(c.variant, 0);
		/* only the cheap one meets a tight target */
		assert_int_equal(qv_variant_choose(t, 2, 0.0, 100.0, 200.0, 0.0, &c), QV_OK);
		assert_int_equal(c.variant, 1);
		assert_false(c.missed);
	}

	/* the floor is respected even when only a cheap variant fits */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 130.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 3);
	assert_true(c.missed);
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 130.0, 0.5, &c), QV_OK);
	assert_int_equal(c.variant, 2);
	assert_false(c.missed);
	/* floor 1: only variant 0, missed when it does not fit */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 130.0, 1.0, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_true(c.missed);
	/* nothing fits, floor 0: the cheapest of all */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 10.0, 0.0, &c), QV_OK);
	assert_int_equal(c.variant, 2);
	assert_true(c.missed);

	/* the batch size moves the costs: at x = 0 variant 0 (100 us) fits 150 */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 0.0, 150.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_false(c.missed);

	/* unprofiled (NaN agreement) and untimed variants are never picked */
	v[2] = stats(NAN, 1.0, 0.0);
	v[3] = stats(0.99, NAN, NAN);
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 600.0, 0.0, &c), QV_OK);
	assert_int_equal(c.variant, 1);
	assert_false(c.missed);
	/* variant 0 without a cost line, nothing else eligible: 0, missed */
	v[0] = stats(1.0, NAN, NAN);
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 600.0, 0.99, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_true(c.missed);
	assert_non_null(strstr(c.reason, "no variant with agreement >= 0.990 has a cost line"));
	/* ... but a timed variant above the floor is preferred to it */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 100.0, 600.0, 0.9, &c), QV_OK);
	assert_int_equal(c.variant, 1);

	/* a single variant */
	v[0] = stats(1.0, 100.0, 0.0);
	assert_int_equal(qv_variant_choose(v, 1, 0.0, 10.0, 50.0, 0.5, &c), QV_OK);
	assert_int_equal(c.variant, 0);
	assert_true(c.missed);

	/* bad arguments: variant 0 with the reason */
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 10.0, 50.0, 1.5, &c), QV_EINVAL);
	assert_int_equal(c.variant, 0);
	assert_non_null(strstr(c.reason, "min_agreement"));
	assert_int_equal(qv_variant_choose(v, 4, -1.0, 10.0, 50.0, 0.5, &c), QV_EINVAL);
	assert_int_equal(qv_variant_choose(v, 4, 0.0, NAN, 50.0, 0.5, &c), QV_EINVAL);
	assert_int_equal(qv_variant_choose(v, 4, 0.0, 1.0, NAN, 0.5, &c), QV_EINVAL);
	assert_int_equal(qv_variant_choose(v, 0, 0.0, 1.0, 5.0, 0.5, &c), QV_EINVAL);
	assert_int_equal(qv_variant_choose(v, 10, 0.0, 1.0, 5.0, 0.5, &c), QV_EINVAL);
	assert_int_equal(qv_variant_choose(NULL, 1, 0.0, 1.0, 5.0, 0.5, &c), QV_EINVAL);
	assert_int_equal(qv_variant_choose(v, 1, 0.0, 1.0, 5.0, 0.5, NULL), QV_EINVAL);
}

/* ---- EDF and slices ---- */

static void
test_edf_order(void **state)
{
	QvPendingRequest r[7] = {
		{false, 0.0, 10},		/* 0: no target */
		{true, 500.0, 1},		/* 1 */
		{true, 200.0, 5},		/* 2 */
		{false, 0.0, 3},		/* 3: no target */
		{true, 500.0, 2},		/* 4: ties 1, after it */
		{true, NAN, 4},			/* 5: NaN = none */
		{true, -50.0, 9},		/* 6: already late: first */
	};
	int32_t		order[7];
	const int32_t want[7] = {6, 2, 1, 4, 0, 3, 5};
	QvError		err = {QV_OK, ""};

	(void) state;
	assert_int_equal(qv_edf_order(r, 7, order, &err), QV_OK);
	assert_memory_equal(order, want, sizeof(want));
	assert_int_equal(qv_edf_order(r, 0, NULL, &err), QV_OK);
	assert_int_equal(qv_edf_order(r, -1, order, &err), QV_EINVAL);
	assert_int_equal(qv_edf_order(NULL, 2, order, &err), QV_EINVAL);

	/* without a deadline, the least served first; served does not reorder
	 * requests with one */
	{
		QvPendingRequest s4[5] = {
			{false, 0.0, 100, 512},	/* 0: a large one, half served */
			{false, 0.0, 100, 256},	/* 1: another, less served */
			{false, 0.0, 1, 0},		/* 2: a new small one */
			{true, 900.0, 1, 5},	/* 3 */
			{true, 100.0, 1, 0},	/* 4 */
		};
		int32_t		o4[5];
		const int32_t want4[5] = {4, 3, 2, 1, 0};

		assert_int_equal(qv_edf_order(s4, 5, o4, &err), QV_OK);
		assert_memory_equal(o4, want4, sizeof(want4));
	}

	/* a larger shuffled case: sorted, stable */
	{
		enum
		{
		N = 500};
		QvPendingRequest big[N];
		int32_t		o[N];
		uint64_t	s = 77;

		for (int i = 0; i < N; i++)
		{
			big[i].has_deadline = test_rnd(&s) > -0.5;
			big[i].deadline_us = (double) (int) ((test_rnd(&s) + 1.0) * 10.0);
			big[i].size = 1;
			big[i].served = 0;
		}
		assert_int_equal(qv_edf_order(big, N, o, &err), QV_OK);
		for (int i = 1; i < N; i++)
		{
			const QvPendingRequest *a = &big[o[i - 1]],
					   *b = &big[o[i]];

			if (a->has_deadline && b->has_deadline)
				assert_true(a->deadline_us < b->deadline_us ||
							(a->deadline_us == b->deadline_us && o[i - 1] < o[i]));
			else if (!a->has_deadline)
			{
				assert_false(b->has_deadline);
				assert_true(o[i - 1] < o[i]);
			}
		}
	}
}

static void
test_slice_plan(void **state)
{
	/* a large request with the earliest deadline, two small ones, an empty one */
	QvPendingRequest r[4] = {
		{false, 0.0, 3},		/* 0 */
		{true, 10.0, 250},		/* 1: 3 slices of 100 */
		{true, 20.0, 100},		/* 2: exactly one slice */
		{false, 0.0, 0},		/* 3: one empty slice */
	};
	int32_t		order[4];
	QvSlice		s[8];
	int64_t		n = -1;
	QvError		err = {QV_OK, ""};
	const QvSlice want[6] = {
		{1, 0, 100}, {2, 0, 100}, {0, 0, 3}, {3, 0, 0},
		{1, 100, 100},
		{1, 200, 50},
	};

	(void) state;
	assert_int_equal(qv_edf_order(r, 4, order, &err), QV_OK);
	assert_int_equal(qv_slice_count(r, 4, 100), 6);
	assert_int_equal(qv_slice_plan(r, order, 4, 100, s, 8, &n, &err), QV_OK);
	assert_int_equal(n, 6);
	for (int i = 0; i < 6; i++)
	{
		assert_int_equal(s[i].request, want[i].request);
		assert_int_equal(s[i].offset, want[i].offset);
		assert_int_equal(s[i].count, want[i].count);
	}
	/* slices cover each request exactly, in order */
	{
		int64_t		next[4] = {0};

		for (int i = 0; i < n; i++)
		{
			assert_int_equal(s[i].offset, next[s[i].request]);
			next[s[i].request] += s[i].count;
		}
		for (int q = 0; q < 4; q++)
			assert_int_equal(next[q], r[q].size);
	}
	/* a slice as large as everything: one slice each, in service order */
	assert_int_equal(qv_slice_plan(r, order, 4, 1000, s, 8, &n, &err), QV_OK);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(s[i].request, order[i]);

	/* errors */
	assert_int_equal(qv_slice_plan(r, order, 4, 100, s, 5, &n, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "the plan has 6 slices, room for 5"));
	assert_int_equal(qv_slice_plan(r, order, 4, 0, s, 8, &n, &err), QV_EINVAL);
	assert_int_equal(qv_slice_plan(r, (const int32_t[]) {0, 1, 1, 3}, 4, 100, s, 8, &n, &err),
					 QV_EINVAL);
	assert_non_null(strstr(err.msg, "order[2] = 1"));
	r[0].size = -1;
	assert_int_equal(qv_slice_plan(r, order, 4, 100, s, 8, &n, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "request 0 has size -1"));
	assert_int_equal(qv_slice_plan(r, order, 0, 100, s, 8, &n, &err), QV_OK);
	assert_int_equal(n, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_variants),
		cmocka_unit_test(test_variants_make),
		cmocka_unit_test(test_sample_nodes),
		cmocka_unit_test(test_profile),
		cmocka_unit_test(test_choose),
		cmocka_unit_test(test_variants_of_loaded_model),
		cmocka_unit_test(test_choose_negative_intercept),
		cmocka_unit_test(test_edf_order),
		cmocka_unit_test(test_slice_plan),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
