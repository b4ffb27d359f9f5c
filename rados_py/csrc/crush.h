/*
 * CRUSH placement, a direct port of Ceph's algorithms (hash.c, mapper.c, builder.c) so that every
 * mapping is bit-identical to Ceph's. Plain C, no Python: the extension module wraps it.
 *
 * The map is immutable once built; all per-call state lives in a caller-supplied workspace, so the
 * mapping path never allocates and several threads may map with one map at once.
 */
#ifndef LOLIGO_CRUSH_H
#define LOLIGO_CRUSH_H

#include <stddef.h>
#include <stdint.h>

#define CRUSH_ITEM_UNDEF 0x7ffffffe /* undefined result (internal use only) */
#define CRUSH_ITEM_NONE 0x7fffffff  /* no result */

enum {
	CRUSH_BUCKET_UNIFORM = 1,
	CRUSH_BUCKET_LIST = 2,
	CRUSH_BUCKET_TREE = 3,
	CRUSH_BUCKET_STRAW = 4,
	CRUSH_BUCKET_STRAW2 = 5,
};

enum {
	CRUSH_RULE_NOOP = 0,
	CRUSH_RULE_TAKE = 1,
	CRUSH_RULE_CHOOSE_FIRSTN = 2,
	CRUSH_RULE_CHOOSE_INDEP = 3,
	CRUSH_RULE_EMIT = 4,
	CRUSH_RULE_CHOOSELEAF_FIRSTN = 6,
	CRUSH_RULE_CHOOSELEAF_INDEP = 7,
	CRUSH_RULE_SET_CHOOSE_TRIES = 8,
	CRUSH_RULE_SET_CHOOSELEAF_TRIES = 9,
	CRUSH_RULE_SET_CHOOSE_LOCAL_TRIES = 10,
	CRUSH_RULE_SET_CHOOSE_LOCAL_FALLBACK_TRIES = 11,
	CRUSH_RULE_SET_CHOOSELEAF_VARY_R = 12,
	CRUSH_RULE_SET_CHOOSELEAF_STABLE = 13,
};

#define CRUSH_HASH_RJENKINS1 0

struct crush_bucket {
	int32_t id;
	uint16_t type;
	uint8_t alg;
	uint8_t hash;
	uint32_t weight; /* 16.16 */
	uint32_t size;
	int32_t *items;
	uint32_t *item_weights; /* 16.16, one per item */
	/* derived per algorithm (builder): */
	uint32_t *sum_weights;  /* list: running sums */
	uint32_t *straws;       /* straw (v1): straw lengths */
	uint32_t num_nodes;     /* tree */
	uint32_t *node_weights; /* tree */
};

struct crush_rule_step {
	int32_t op;
	int32_t arg1;
	int32_t arg2;
};

struct crush_rule {
	uint32_t len;
	struct crush_rule_step *steps;
};

struct crush_map {
	struct crush_bucket **buckets; /* index -1-id; NULL for an unused id */
	struct crush_rule **rules;     /* index rule id; NULL for an unused id */
	int32_t max_buckets;
	uint32_t max_rules;
	int32_t max_devices;

	uint32_t choose_local_tries;
	uint32_t choose_local_fallback_tries;
	uint32_t choose_total_tries;
	uint32_t chooseleaf_descend_once;
	uint8_t chooseleaf_vary_r;
	uint8_t chooseleaf_stable;
	uint8_t straw_calc_version;
};

/* choose_args: per-bucket alternative straw2 weights (one set per result position) and ids to
 * hash instead of the items' own, as the balancer's weight-sets use them. An array of these,
 * indexed like map->buckets, is one choose_args set. */
struct crush_weight_set {
	uint32_t *weights; /* one per item, 16.16 */
	uint32_t size;
};

struct crush_choose_arg {
	int32_t *ids;      /* NULL: hash the items themselves */
	uint32_t ids_size;
	struct crush_weight_set *weight_set; /* NULL: the bucket's own weights */
	uint32_t weight_set_positions;
};

/* Per-bucket permutation state of bucket_perm_choose (uniform buckets, local fallback). */
struct crush_work_bucket {
	uint32_t perm_x;
	uint32_t perm_n;
	uint32_t *perm;
};

struct crush_work {
	struct crush_work_bucket **work; /* index -1-id, parallel to map->buckets */
};

uint32_t crush_hash32(uint32_t a);
uint32_t crush_hash32_2(uint32_t a, uint32_t b);
uint32_t crush_hash32_3(uint32_t a, uint32_t b, uint32_t c);
uint32_t crush_hash32_4(uint32_t a, uint32_t b, uint32_t c, uint32_t d);
uint32_t crush_hash32_5(uint32_t a, uint32_t b, uint32_t c, uint32_t d, uint32_t e);
uint32_t ceph_str_hash_rjenkins(const unsigned char *str, uint32_t length);
uint32_t ceph_stable_mod(uint32_t x, uint32_t b, uint32_t bmask);
uint64_t crush_ln(unsigned int xin);

/* builder: fill the derived arrays of a bucket whose items and item_weights are set.
 * Returns 0, or -1 when a weight sum overflows 32 bits (Ceph refuses such buckets too). */
int crush_tree_depth(uint32_t size);
int crush_finish_bucket(const struct crush_map *map, struct crush_bucket *b);

/* workspace: one block laid out by crush_work_size / crush_init_workspace. */
size_t crush_work_size(const struct crush_map *map, int result_max);
void crush_init_workspace(const struct crush_map *map, void *v);

int crush_do_rule(const struct crush_map *map, int ruleno, int x, int *result, int result_max,
		  const uint32_t *weight, int weight_max, void *cwin,
		  const struct crush_choose_arg *choose_args);

#endif
