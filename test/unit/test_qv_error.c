/*
 * test_qv_error.c — unit tests of the core's error helpers (src/core/qv_error.c):
 * qv_error formats, sets the code, and always leaves a message that is
 * valid UTF-8 (qv_utf8_sanitize), however its arguments or the length
 * limit cut it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qv_error.h"
#include "utf8_check.h"


/* sanitize(in) must give out, replacing `replaced` bytes. */
static void
check_sanitize(const char *in, const char *out, size_t replaced)
{
	char		buf[64];

	assert_true(strlen(in) < sizeof(buf));
	strcpy(buf, in);
	assert_int_equal(qv_utf8_sanitize(buf), replaced);
	assert_string_equal(buf, out);
	assert_true(valid_utf8(buf));
	/* sanitizing twice changes nothing */
	assert_int_equal(qv_utf8_sanitize(buf), 0);
}

static void
test_sanitize(void **state)
{
	(void) state;
	/* well-formed: 1 to 4 bytes, the edges of each range */
	check_sanitize("", "", 0);
	check_sanitize("plain ascii", "plain ascii", 0);
	check_sanitize("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80", 0);
	check_sanitize("\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf",
				   "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf", 0);
	check_sanitize("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 0);
	/* cut sequences, at the end and in the middle */
	check_sanitize("caf\xc3", "caf?", 1);
	check_sanitize("x\xe4\xb8", "x??", 2);
	check_sanitize("x\xf0\x9f\x98", "x???", 3);
	check_sanitize("\"aa\xc3\": entry", "\"aa?\": entry", 1);
	check_sanitize("\xe4\xb8\xe4\xb8\xad", "??\xe4\xb8\xad", 2);
	/* stray continuation bytes, bytes never used */
	check_sanitize("\x80\xbf", "??", 2);
	check_sanitize("a\xc0\xc1\xf5\xff", "a????", 4);
	/* overlong forms, surrogates, beyond U+10FFFF */
	check_sanitize("\xc0\xaf", "??", 2);
	check_sanitize("\xe0\x80\xaf", "???", 3);
	check_sanitize("\xf0\x80\x80\xaf", "????", 4);
	check_sanitize("\xed\xa0\x80", "???", 3);
	check_sanitize("\xed\xbf\xbf", "???", 3);
	check_sanitize("\xf4\x90\x80\x80", "????", 4);
	assert_int_equal(qv_utf8_sanitize(NULL), 0);
}

/* A name cut with %.*s in the middle of a character. */
static void
test_error_cuts_name(void **state)
{
	QvError		err = {QV_OK, ""};
	const char *name = "ab\xc3\xa9";	/* "abé" */

	(void) state;
	assert_int_equal(qv_error(&err, QV_EDATA, "tensor \"%.*s\": bad", 3, name), QV_EDATA);
	assert_int_equal(err.code, QV_EDATA);
	assert_string_equal(err.msg, "tensor \"ab?\": bad");
	assert_int_equal(qv_error(&err, QV_EINVAL, "tensor \"%.*s\": bad", 4, name), QV_EINVAL);
	assert_string_equal(err.msg, "tensor \"ab\xc3\xa9\": bad");
	assert_int_equal(err.code, QV_EINVAL);
	/* NULL err: only the code */
	assert_int_equal(qv_error(NULL, QV_ELIMIT, "%s", name), QV_ELIMIT);
}

/* A message cut at QV_ERRMSG_LEN - 1 bytes in the middle of a character. */
static void
test_error_cut_at_length(void **state)
{
	char		arg[QV_ERRMSG_LEN * 2];
	QvError		err = {QV_OK, ""};
	size_t		i,
				shift;

	(void) state;
	for (shift = 0; shift < 4; shift++)
	{
		/* shift ASCII bytes, then 4-byte characters past the limit */
		for (i = 0; i < shift; i++)
			arg[i] = 'x';
		for (; i + 4 < sizeof(arg); i += 4)
			memcpy(arg + i, "\xf0\x9f\x98\x80", 4);
		arg[i] = '\0';
		qv_error(&err, QV_EDATA, "%s", arg);
		assert_int_equal(strlen(err.msg), QV_ERRMSG_LEN - 1);
		assert_true(valid_utf8(err.msg));
		/* the full characters before the cut are kept */
		assert_int_equal(memcmp(err.msg, arg, QV_ERRMSG_LEN - 4), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_error_cuts_name),
		cmocka_unit_test(test_error_cut_at_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
