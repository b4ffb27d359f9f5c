/*
 * The hashes placement is built on: Robert Jenkins' 32-bit mix as CRUSH uses it (seeded,
 * 1 to 5 inputs), Ceph's object-name hash (ceph_str_hash_rjenkins), and ceph_stable_mod,
 * which folds a hash into a PG count that need not be a power of two.
 */
#include "crush.h"

#define HASHMIX(a, b, c)                                                                           \
	do {                                                                                       \
		a = a - b; a = a - c; a = a ^ (c >> 13);                                           \
		b = b - c; b = b - a; b = b ^ (a << 8);                                            \
		c = c - a; c = c - b; c = c ^ (b >> 13);                                           \
		a = a - b; a = a - c; a = a ^ (c >> 12);                                           \
		b = b - c; b = b - a; b = b ^ (a << 16);                                           \
		c = c - a; c = c - b; c = c ^ (b >> 5);                                            \
		a = a - b; a = a - c; a = a ^ (c >> 3);                                            \
		b = b - c; b = b - a; b = b ^ (a << 10);                                           \
		c = c - a; c = c - b; c = c ^ (b >> 15);                                           \
	} while (0)

#define CRUSH_HASH_SEED 1315423911u

uint32_t crush_hash32(uint32_t a)
{
	uint32_t hash = CRUSH_HASH_SEED ^ a;
	uint32_t b = a, x = 231232, y = 1232;

	HASHMIX(b, x, hash);
	HASHMIX(y, a, hash);
	return hash;
}

uint32_t crush_hash32_2(uint32_t a, uint32_t b)
{
	uint32_t hash = CRUSH_HASH_SEED ^ a ^ b;
	uint32_t x = 231232, y = 1232;

	HASHMIX(a, b, hash);
	HASHMIX(x, a, hash);
	HASHMIX(b, y, hash);
	return hash;
}

uint32_t crush_hash32_3(uint32_t a, uint32_t b, uint32_t c)
{
	uint32_t hash = CRUSH_HASH_SEED ^ a ^ b ^ c;
	uint32_t x = 231232, y = 1232;

	HASHMIX(a, b, hash);
	HASHMIX(c, x, hash);
	HASHMIX(y, a, hash);
	HASHMIX(b, x, hash);
	HASHMIX(y, c, hash);
	return hash;
}

uint32_t crush_hash32_4(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	uint32_t hash = CRUSH_HASH_SEED ^ a ^ b ^ c ^ d;
	uint32_t x = 231232, y = 1232;

	HASHMIX(a, b, hash);
	HASHMIX(c, d, hash);
	HASHMIX(a, x, hash);
	HASHMIX(y, b, hash);
	HASHMIX(c, x, hash);
	HASHMIX(y, d, hash);
	return hash;
}

uint32_t crush_hash32_5(uint32_t a, uint32_t b, uint32_t c, uint32_t d, uint32_t e)
{
	uint32_t hash = CRUSH_HASH_SEED ^ a ^ b ^ c ^ d ^ e;
	uint32_t x = 231232, y = 1232;

	HASHMIX(a, b, hash);
	HASHMIX(c, d, hash);
	HASHMIX(e, x, hash);
	HASHMIX(y, a, hash);
	HASHMIX(b, x, hash);
	HASHMIX(y, c, hash);
	HASHMIX(d, x, hash);
	HASHMIX(y, e, hash);
	return hash;
}

static uint32_t le32(const unsigned char *k)
{
	return k[0] | ((uint32_t)k[1] << 8) | ((uint32_t)k[2] << 16) | ((uint32_t)k[3] << 24);
}

uint32_t ceph_str_hash_rjenkins(const unsigned char *k, uint32_t length)
{
	uint32_t a = 0x9e3779b9, b = 0x9e3779b9, c = 0;
	uint32_t len = length;

	while (len >= 12) {
		a += le32(k);
		b += le32(k + 4);
		c += le32(k + 8);
		HASHMIX(a, b, c);
		k += 12;
		len -= 12;
	}
	/* The tail: the low byte of c is reserved for the length. */
	c += length;
	switch (len) {
	case 11: c += (uint32_t)k[10] << 24; /* fall through */
	case 10: c += (uint32_t)k[9] << 16;  /* fall through */
	case 9:  c += (uint32_t)k[8] << 8;   /* fall through */
	case 8:  b += (uint32_t)k[7] << 24;  /* fall through */
	case 7:  b += (uint32_t)k[6] << 16;  /* fall through */
	case 6:  b += (uint32_t)k[5] << 8;   /* fall through */
	case 5:  b += k[4];                  /* fall through */
	case 4:  a += (uint32_t)k[3] << 24;  /* fall through */
	case 3:  a += (uint32_t)k[2] << 16;  /* fall through */
	case 2:  a += (uint32_t)k[1] << 8;   /* fall through */
	case 1:  a += k[0];
	}
	HASHMIX(a, b, c);
	return c;
}

uint32_t ceph_stable_mod(uint32_t x, uint32_t b, uint32_t bmask)
{
	if ((x & bmask) < b)
		return x & bmask;
	return x & (bmask >> 1);
}
