/*
 * finite.c — checks that float32 data holds no NaN and no infinity.
 *
 * The scan looks at blocks of 64 values with a branch-free test (the
 * compiler vectorises it) and only looks for the index inside a block that
 * has a bad value, so a feature matrix of millions of rows costs about a
 * memory pass.
 */
#include "finite.h"

#include <stdint.h>
#include <string.h>

#define EXP_MASK 0x7f800000u
#define MANT_MASK 0x007fffffu
#define BLOCK 64

static inline uint32_t
bits_of(float x)
{
	uint32_t	b;

	memcpy(&b, &x, sizeof(b));
	return b;
}

static inline bool
bits_finite(uint32_t b)
{
	return (b & EXP_MASK) != EXP_MASK;
}

bool
qv_check_finite(const float *v, size_t n, size_t *bad_index)
{
	size_t		i = 0;

	while (i < n)
	{
		size_t		end = n - i > BLOCK ? i + BLOCK : n;
		uint32_t	any = 0;
		size_t		j;

		/* any NaN or infinity in the block sets the flag */
		for (j = i; j < end; j++)
			any |= (uint32_t) ((bits_of(v[j]) & EXP_MASK) == EXP_MASK);
		if (any)
		{
			for (j = i; j < end; j++)
				if (!bits_finite(bits_of(v[j])))
				{
					if (bad_index != NULL)
						*bad_index = j;
					return false;
				}
		}
		i = end;
	}
	return true;
}

const char *
qv_nonfinite_name(float x)
{
	uint32_t	b = bits_of(x);

	if (bits_finite(b))
		return "finite";
	if (b & MANT_MASK)
		return "NaN";
	return (b & 0x80000000u) ? "-Inf" : "+Inf";
}
