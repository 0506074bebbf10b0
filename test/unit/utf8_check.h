/*
 * utf8_check.h — an independent check that a message is well-formed UTF-8,
 * for the unit tests and the fuzz harness (test code only).
 */
#ifndef QV_TEST_UTF8_CHECK_H
#define QV_TEST_UTF8_CHECK_H

#include <stdint.h>

/*
 * Independent check that s is well-formed UTF-8 as PostgreSQL's UTF8
 * accepts it: decode each sequence and check the code point against the
 * shortest form, the surrogates and U+10FFFF.
 */
static inline int
valid_utf8(const char *str)
{
	const unsigned char *s = (const unsigned char *) str;

	while (*s)
	{
		uint32_t	cp;
		int			n,
					i;

		if (s[0] < 0x80)
		{
			s++;
			continue;
		}
		if ((s[0] & 0xe0) == 0xc0)
			n = 2, cp = s[0] & 0x1f;
		else if ((s[0] & 0xf0) == 0xe0)
			n = 3, cp = s[0] & 0x0f;
		else if ((s[0] & 0xf8) == 0xf0)
			n = 4, cp = s[0] & 0x07;
		else
			return 0;
		for (i = 1; i < n; i++)
		{
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
			return 0;			/* overlong */
		if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		s += n;
	}
	return 1;
}

#endif
