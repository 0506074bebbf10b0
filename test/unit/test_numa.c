/*
 * test_numa.c — NUMA lookups and binding through hwloc on this machine:
 * an unknown PCI device, the node count, binding a buffer to node 0 and to
 * no node, and rejecting a node that does not exist.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "numa.h"

static void
test_lookup(void **state)
{
	int			n = qv_numa_node_count();
	int			node;

	(void) state;
	assert_true(n >= 1);
	node = qv_numa_of_pci("0000:ff:1f.7");	/* no such device */
	if (n == 1)
		assert_true(node >= 0);	/* the only node */
	else
		assert_int_equal(node, -1);
	assert_int_equal(qv_numa_of_pci(NULL), -1);
}

static void
test_bind(void **state)
{
	size_t		bytes = 8 << 20;
	char	   *buf = aligned_alloc(4096, bytes);
	int			first = qv_numa_of_pci("0000:ff:1f.7");
	int			none[2] = {-1, -1};
	int			bogus = 4000;
	QvError		err = {0};

	(void) state;
	assert_non_null(buf);
	memset(buf, 1, bytes);
	assert_int_equal(qv_numa_bind(buf, bytes, none, 2, &err), QV_OK);
	assert_int_equal(qv_numa_bind(NULL, bytes, &first, 1, &err), QV_OK);
	if (first >= 0)
		assert_int_equal(qv_numa_bind(buf, bytes, &first, 1, &err), QV_OK);
	assert_int_equal(qv_numa_bind(buf, bytes, &bogus, 1, &err), QV_EDEVICE);
	assert_non_null(strstr(err.msg, "NUMA"));
	assert_int_equal(buf[bytes - 1], 1);	/* the data stays */
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_bind),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
