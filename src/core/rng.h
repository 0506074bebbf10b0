/*
 * rng.h — the engine core's random numbers: splitmix64 to seed and mix,
 * xoshiro256** to draw.  Header-only so the hot loops inline them.
 */
#ifndef QV_RNG_H
#define QV_RNG_H

#include <stdint.h>

typedef struct QvRng
{
	uint64_t	s[4];
} QvRng;

/* splitmix64: advance *x and return the next mixed value. */
static inline uint64_t
qv_splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Seed the four words of r from x by splitmix64. */
static inline void
qv_rng_seed(QvRng *r, uint64_t x)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = qv_splitmix64(&x);
}

static inline uint64_t
qv_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t
qv_rng_next(QvRng *r)
{
	uint64_t   *s = r->s;
	uint64_t	result = qv_rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = qv_rotl(s[3], 45);
	return result;
}

#endif
