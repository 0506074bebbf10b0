/*
 * prefetch.h — batching of row-at-a-time gnn_predict calls: what the plan
 * rewriting (prefetch_plan.c) and the QuiverPrefetch executor node
 * (prefetch_exec.c) share.  The entry points, prefetch_init and
 * prefetch_lookup, are declared in quiver.h.
 *
 * `SELECT id, gnn_predict('m', id) FROM t WHERE ...` calls gnn_predict once
 * per row, and each call is a round trip to the engine.  After planning, a
 * planner hook finds plan nodes whose projection (or filter) calls
 * gnn_predict on a column, moves that projection into a custom scan node
 * ("QuiverPrefetch") placed above the node, and leaves the node projecting
 * only the columns the moved expressions read:
 *
 *     QuiverPrefetch   tlist and gnn quals of the old node, Vars -> INDEX_VAR
 *       -> old node    tlist = the distinct Vars those expressions read
 *
 * At run time QuiverPrefetch reads ahead a block of its child's rows (1, 2,
 * 4, ... up to quiver.prefetch_rows, so a LIMIT or a one-row lookup costs
 * what it did before), evaluates the id arguments of the gnn_predict calls
 * on them, asks the engine for all distinct ids in one request per slot,
 * and then projects its rows one by one.  gnn_predict looks its (model, id)
 * up in the block being projected (prefetch_lookup) before it makes a
 * round trip of its own.
 *
 * Semantics do not change: every call that is not prefetched, misses, or
 * whose block request failed (an unknown id, say) makes its own request, and
 * so raises its own error at its own row, exactly as without prefetching.
 * Only unconditionally evaluated calls are prefetched (not those under CASE,
 * COALESCE, AND/OR), so a block never asks for predictions a row would not.
 *
 * A QuiverPrefetch node, as prefetch_plan.c makes it and prefetch_exec.c
 * runs it, is a CustomScan whose methods are prefetch_scan_methods, with
 *   - lefttree: the child whose rows it reads;
 *   - custom_scan_tlist: the child's columns (OUTER_VAR), which its
 *     targetlist, qual and custom_exprs read as INDEX_VAR;
 *   - custom_exprs: per prefetched call, its id expression;
 *   - custom_private: (models, limit, layers): per prefetched call its
 *     model expression, NULL for gnn_predict(bigint); NIL, or the count and
 *     offset (NULL when none) of a Limit right above; per prefetched call
 *     gnn_embed's layer expression, NULL for the calls that want the
 *     model's output (gnn_predict, gnn_classify).
 *
 * gnn_embed(model, id, layer) and gnn_classify(model, id) are batched the
 * same way: a block's group is a (model, output) pair, output being the
 * model's output (gnn_predict and gnn_classify share it) or one hidden
 * layer's.
 */
#ifndef QUIVER_PREFETCH_H
#define QUIVER_PREFETCH_H

#include "access/xact.h"
#include "nodes/extensible.h"

/*
 * Hidden: shared by the prefetch files only, and like the file-local
 * statics they were, out of quiver.so's dynamic symbol table.
 */
#pragma GCC visibility push(hidden)

/* prefetch_exec.c */
extern const CustomScanMethods prefetch_scan_methods;
extern void forget_block_at_abort(XactEvent event, void *arg);
extern void forget_block_at_subabort(SubXactEvent event, SubTransactionId sub,
									 SubTransactionId parent, void *arg);

#pragma GCC visibility pop

#endif
