/*
 * crush_do_rule and the bucket choose functions: a direct port of Ceph's src/crush/mapper.c
 * (pacific), so that mappings are bit-identical. Integer arithmetic only; the caller supplies
 * the workspace (see crush_work_size), so nothing here allocates.
 */
#include <stddef.h>
#include <string.h>

#include "crush.h"
#include "crush_ln_table.h"

/* ---- workspace --------------------------------------------------------------------------- */

/* The permutation state of a bucket is valid only within one crush_do_rule call. Instead of
 * clearing every bucket's state per call, each state carries the call number it belongs to. */
struct work_state {
	struct crush_work base;
	uint32_t call;
	int *scratch; /* 3 * result_max ints for crush_do_rule */
};

struct work_bucket_state {
	struct crush_work_bucket base;
	uint32_t call;
};

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

size_t crush_work_size(const struct crush_map *map, int result_max)
{
	size_t size = align8(sizeof(struct work_state));
	int b;

	size += align8(sizeof(struct crush_work_bucket *) * (size_t)map->max_buckets);
	for (b = 0; b < map->max_buckets; b++) {
		if (!map->buckets[b])
			continue;
		size += align8(sizeof(struct work_bucket_state));
		size += align8(sizeof(uint32_t) * (size_t)map->buckets[b]->size);
	}
	size += sizeof(int) * 3 * (size_t)result_max;
	return size;
}

void crush_init_workspace(const struct crush_map *map, void *v)
{
	char *p = v;
	struct work_state *w = (struct work_state *)p;
	int b;

	p += align8(sizeof(struct work_state));
	w->base.work = (struct crush_work_bucket **)p;
	w->call = 1;
	p += align8(sizeof(struct crush_work_bucket *) * (size_t)map->max_buckets);
	for (b = 0; b < map->max_buckets; b++) {
		struct work_bucket_state *wb;

		if (!map->buckets[b]) {
			w->base.work[b] = NULL;
			continue;
		}
		wb = (struct work_bucket_state *)p;
		p += align8(sizeof(struct work_bucket_state));
		wb->base.perm_x = 0;
		wb->base.perm_n = 0;
		wb->base.perm = (uint32_t *)p;
		wb->call = 0;
		p += align8(sizeof(uint32_t) * (size_t)map->buckets[b]->size);
		w->base.work[b] = &wb->base;
	}
	w->scratch = (int *)p;
}

/* Start a new crush_do_rule call: every bucket's permutation state becomes stale. */
static void begin_call(const struct crush_map *map, struct work_state *w)
{
	int b;

	if (++w->call != 0)
		return;
	/* the call counter wrapped: reset every state once */
	for (b = 0; b < map->max_buckets; b++)
		if (w->base.work[b])
			((struct work_bucket_state *)w->base.work[b])->call = 0;
	w->call = 1;
}

/* ---- bucket choose methods --------------------------------------------------------------- */

/* A random permutation of the bucket's items, computed lazily up to position r. */
static int bucket_perm_choose(const struct crush_bucket *bucket, struct work_state *ws,
			      struct crush_work_bucket *work, int x, int r)
{
	struct work_bucket_state *st = (struct work_bucket_state *)work;
	unsigned int pr = r % bucket->size;
	unsigned int i, s;

	if (st->call != ws->call) {
		st->call = ws->call;
		work->perm_x = 0;
		work->perm_n = 0;
	}

	/* start a new permutation if x has changed */
	if (work->perm_x != (uint32_t)x || work->perm_n == 0) {
		work->perm_x = x;

		/* the common r=0 case needs one hash only */
		if (pr == 0) {
			s = crush_hash32_3(x, bucket->id, 0) % bucket->size;
			work->perm[0] = s;
			work->perm_n = 0xffff; /* magic value: only perm[0] is valid */
			goto out;
		}

		for (i = 0; i < bucket->size; i++)
			work->perm[i] = i;
		work->perm_n = 0;
	} else if (work->perm_n == 0xffff) {
		/* expand the r=0 shortcut into a real partial permutation */
		for (i = 1; i < bucket->size; i++)
			work->perm[i] = i;
		work->perm[work->perm[0]] = 0;
		work->perm_n = 1;
	}

	while (work->perm_n <= pr) {
		unsigned int p = work->perm_n;

		if (p < bucket->size - 1) {
			i = crush_hash32_3(x, bucket->id, p) % (bucket->size - p);
			if (i) {
				unsigned int t = work->perm[p + i];

				work->perm[p + i] = work->perm[p];
				work->perm[p] = t;
			}
		}
		work->perm_n++;
	}
	s = work->perm[pr];
out:
	return bucket->items[s];
}

static int bucket_list_choose(const struct crush_bucket *bucket, int x, int r)
{
	int i;

	for (i = bucket->size - 1; i >= 0; i--) {
		uint64_t w = crush_hash32_4(x, bucket->items[i], r, bucket->id);

		w &= 0xffff;
		w *= bucket->sum_weights[i];
		w = w >> 16;
		if (w < bucket->item_weights[i])
			return bucket->items[i];
	}
	return bucket->items[0];
}

static int tree_height(int n)
{
	int h = 0;

	while ((n & 1) == 0) {
		h++;
		n = n >> 1;
	}
	return h;
}

static int tree_left(int x)
{
	return x - (1 << (tree_height(x) - 1));
}

static int tree_right(int x)
{
	return x + (1 << (tree_height(x) - 1));
}

static int bucket_tree_choose(const struct crush_bucket *bucket, int x, int r)
{
	int n = bucket->num_nodes >> 1; /* the root */

	while (!(n & 1)) {
		uint32_t w = bucket->node_weights[n];
		uint64_t t = (uint64_t)crush_hash32_4(x, n, r, bucket->id) * (uint64_t)w;
		int l;

		t = t >> 32;
		l = tree_left(n);
		if (t < bucket->node_weights[l])
			n = l;
		else
			n = tree_right(n);
	}
	return bucket->items[n >> 1];
}

static int bucket_straw_choose(const struct crush_bucket *bucket, int x, int r)
{
	uint32_t i;
	int high = 0;
	uint64_t high_draw = 0;

	for (i = 0; i < bucket->size; i++) {
		uint64_t draw = crush_hash32_3(x, bucket->items[i], r);

		draw &= 0xffff;
		draw *= bucket->straws[i];
		if (i == 0 || draw > high_draw) {
			high = i;
			high_draw = draw;
		}
	}
	return bucket->items[high];
}

/* 2^44 * log2(xin + 1), in fixed point, from two lookup tables. */
uint64_t crush_ln(unsigned int xin)
{
	unsigned int x = xin;
	int iexpon, index1, index2;
	uint64_t RH, LH, LL, xl64, result;

	x++;

	/* normalize input */
	iexpon = 15;
	if (!(x & 0x18000)) {
		int bits = __builtin_clz(x & 0x1FFFF) - 16;

		x <<= bits;
		iexpon = 15 - bits;
	}

	index1 = (x >> 8) << 1;
	RH = RH_LH_TBL[index1 - 256]; /* ~ 2^56 / index1 */
	LH = RH_LH_TBL[index1 + 1 - 256]; /* ~ 2^48 * log2(index1 / 256) */

	xl64 = (int64_t)x * RH; /* ~ 2^48 * (2^15 + xf), xf < 2^8 */
	xl64 >>= 48;

	result = iexpon;
	result <<= (12 + 32);

	index2 = xl64 & 0xff;
	LL = LL_TBL[index2]; /* ~ 2^48 * log2(1.0 + index2 / 2^15) */

	LH = LH + LL;
	LH >>= (48 - 12 - 32);
	result += LH;
	return result;
}

/* The weights straw2 draws with: a choose_args weight set for this result position (the last
 * set for positions beyond it), else the bucket's own. */
static const uint32_t *choose_arg_weights(const struct crush_bucket *bucket,
					  const struct crush_choose_arg *arg, int position)
{
	if (arg == NULL || arg->weight_set == NULL)
		return bucket->item_weights;
	if ((uint32_t)position >= arg->weight_set_positions)
		position = arg->weight_set_positions - 1;
	return arg->weight_set[position].weights;
}

static const int32_t *choose_arg_ids(const struct crush_bucket *bucket,
				     const struct crush_choose_arg *arg)
{
	if (arg == NULL || arg->ids == NULL)
		return bucket->items;
	return arg->ids;
}

/* straw2: each item draws ln(u)/weight; the highest draw wins (exponential races). */
static int bucket_straw2_choose(const struct crush_bucket *bucket, int x, int r,
				const struct crush_choose_arg *arg, int position)
{
	unsigned int i, high = 0;
	int64_t draw, high_draw = 0;
	const uint32_t *weights = choose_arg_weights(bucket, arg, position);
	const int32_t *ids = choose_arg_ids(bucket, arg);

	for (i = 0; i < bucket->size; i++) {
		uint32_t w = weights[i];

		if (w) {
			unsigned int u = crush_hash32_3(x, ids[i], r) & 0xffff;
			int64_t ln = (int64_t)crush_ln(u) - 0x1000000000000ll;

			draw = ln / (int64_t)w;
		} else {
			draw = INT64_MIN;
		}
		if (i == 0 || draw > high_draw) {
			high = i;
			high_draw = draw;
		}
	}
	return bucket->items[high];
}

static int crush_bucket_choose(const struct crush_bucket *in, struct work_state *ws,
			       struct crush_work_bucket *work, int x, int r,
			       const struct crush_choose_arg *arg, int position)
{
	if (in->hash != CRUSH_HASH_RJENKINS1)
		return in->items[0]; /* Ceph's hash returns 0 for unknown hashes; refused earlier */
	switch (in->alg) {
	case CRUSH_BUCKET_UNIFORM:
		return bucket_perm_choose(in, ws, work, x, r);
	case CRUSH_BUCKET_LIST:
		return bucket_list_choose(in, x, r);
	case CRUSH_BUCKET_TREE:
		return bucket_tree_choose(in, x, r);
	case CRUSH_BUCKET_STRAW:
		return bucket_straw_choose(in, x, r);
	case CRUSH_BUCKET_STRAW2:
		return bucket_straw2_choose(in, x, r, arg, position);
	default:
		return in->items[0];
	}
}

/* Is the device out (reweight 0) or, for a partial reweight, rejected for this x? */
static int is_out(const uint32_t *weight, int weight_max, int item, int x)
{
	if (item >= weight_max)
		return 1;
	if (weight[item] >= 0x10000)
		return 0;
	if (weight[item] == 0)
		return 1;
	if ((crush_hash32_2(x, item) & 0xffff) < weight[item])
		return 0;
	return 1;
}

/* ---- choose ------------------------------------------------------------------------------ */

struct choose_ctx {
	const struct crush_map *map;
	struct work_state *ws;
	const uint32_t *weight;
	int weight_max;
	int x;
	const struct crush_choose_arg *choose_args; /* indexed like map->buckets, or NULL */
};

static const struct crush_choose_arg *bucket_arg(const struct choose_ctx *c,
						 const struct crush_bucket *b)
{
	return c->choose_args ? &c->choose_args[-1 - b->id] : NULL;
}

static struct crush_work_bucket *bucket_work(const struct choose_ctx *c,
					     const struct crush_bucket *b)
{
	return c->ws->base.work[-1 - b->id];
}

/*
 * crush_choose_firstn: choose numrep distinct items of the given type, depth first. With
 * recurse_to_leaf, also choose one device under each (chooseleaf) into out2.
 */
static int crush_choose_firstn(const struct choose_ctx *c, const struct crush_bucket *bucket,
			       int numrep, int type, int *out, int outpos, int out_size,
			       unsigned int tries, unsigned int recurse_tries,
			       unsigned int local_retries, unsigned int local_fallback_retries,
			       int recurse_to_leaf, unsigned int vary_r, unsigned int stable,
			       int *out2, int parent_r)
{
	const struct crush_map *map = c->map;
	int rep;
	unsigned int ftotal, flocal;
	int retry_descent, retry_bucket, skip_rep;
	const struct crush_bucket *in = bucket;
	int r, i, item = 0, itemtype, collide, reject;
	int count = out_size;

	for (rep = stable ? 0 : outpos; rep < numrep && count > 0; rep++) {
		/* keep trying until we get a non-out, non-colliding item */
		ftotal = 0;
		skip_rep = 0;
		do {
			retry_descent = 0;
			in = bucket; /* initial bucket */

			/* choose through intervening buckets */
			flocal = 0;
			do {
				collide = 0;
				retry_bucket = 0;
				r = rep + parent_r;
				/* r' = r + f_total */
				r += ftotal;

				if (in->size == 0) {
					reject = 1;
					goto reject;
				}
				if (local_fallback_retries > 0 && flocal >= (in->size >> 1) &&
				    flocal > local_fallback_retries)
					item = bucket_perm_choose(in, c->ws, bucket_work(c, in), c->x, r);
				else
					item = crush_bucket_choose(in, c->ws, bucket_work(c, in), c->x, r,
								   bucket_arg(c, in), outpos);
				if (item >= map->max_devices) {
					skip_rep = 1;
					break;
				}

				/* desired type? */
				if (item < 0)
					itemtype = map->buckets[-1 - item]->type;
				else
					itemtype = 0;

				/* keep going? */
				if (itemtype != type) {
					if (item >= 0 || (-1 - item) >= map->max_buckets) {
						skip_rep = 1;
						break;
					}
					in = map->buckets[-1 - item];
					retry_bucket = 1;
					continue;
				}

				/* collision? */
				for (i = 0; i < outpos; i++) {
					if (out[i] == item) {
						collide = 1;
						break;
					}
				}

				reject = 0;
				if (!collide && recurse_to_leaf) {
					if (item < 0) {
						int sub_r;

						if (vary_r)
							sub_r = r >> (vary_r - 1);
						else
							sub_r = 0;
						if (crush_choose_firstn(
							    c, map->buckets[-1 - item],
							    stable ? 1 : outpos + 1, 0, out2, outpos,
							    count, recurse_tries, 0, local_retries,
							    local_fallback_retries, 0, vary_r, stable,
							    NULL, sub_r) <= outpos)
							/* didn't get leaf */
							reject = 1;
					} else {
						/* we already have a leaf! */
						out2[outpos] = item;
					}
				}

				if (!reject) {
					/* out? */
					if (itemtype == 0)
						reject = is_out(c->weight, c->weight_max, item, c->x);
					else
						reject = 0;
				}

reject:
				if (reject || collide) {
					ftotal++;
					flocal++;

					if (collide && flocal <= local_retries)
						/* retry locally a few times */
						retry_bucket = 1;
					else if (local_fallback_retries > 0 &&
						 flocal <= in->size + local_fallback_retries)
						/* exhaustive bucket search */
						retry_bucket = 1;
					else if (ftotal < tries)
						/* then retry descent */
						retry_descent = 1;
					else
						/* else give up */
						skip_rep = 1;
				}
			} while (retry_bucket);
		} while (retry_descent);

		if (skip_rep)
			continue;

		out[outpos] = item;
		outpos++;
		count--;
	}
	return outpos;
}

/*
 * crush_choose_indep: breadth first, positionally stable; a failed position stays empty
 * (CRUSH_ITEM_NONE) instead of shifting the others, as erasure coding needs.
 */
static void crush_choose_indep(const struct choose_ctx *c, const struct crush_bucket *bucket,
			       int left, int numrep, int type, int *out, int outpos,
			       unsigned int tries, unsigned int recurse_tries, int recurse_to_leaf,
			       int *out2, int parent_r)
{
	const struct crush_map *map = c->map;
	const struct crush_bucket *in = bucket;
	int endpos = outpos + left;
	int rep;
	unsigned int ftotal;
	int r, i, item = 0, itemtype, collide;

	/* initially my result is undefined */
	for (rep = outpos; rep < endpos; rep++) {
		out[rep] = CRUSH_ITEM_UNDEF;
		if (out2)
			out2[rep] = CRUSH_ITEM_UNDEF;
	}

	for (ftotal = 0; left > 0 && ftotal < tries; ftotal++) {
		for (rep = outpos; rep < endpos; rep++) {
			if (out[rep] != CRUSH_ITEM_UNDEF)
				continue;

			in = bucket; /* initial bucket */

			/* choose through intervening buckets */
			for (;;) {
				/* the choice depends on the position even in the nested call, so
				 * a bucket chosen for two positions yields different items */
				r = rep + parent_r;

				if (in->alg == CRUSH_BUCKET_UNIFORM && in->size % numrep == 0)
					/* r' = r + (n+1) * f_total */
					r += (numrep + 1) * ftotal;
				else
					/* r' = r + n * f_total */
					r += numrep * ftotal;

				if (in->size == 0)
					break;

				item = crush_bucket_choose(in, c->ws, bucket_work(c, in), c->x, r,
							   bucket_arg(c, in), outpos);
				if (item >= map->max_devices) {
					out[rep] = CRUSH_ITEM_NONE;
					if (out2)
						out2[rep] = CRUSH_ITEM_NONE;
					left--;
					break;
				}

				/* desired type? */
				if (item < 0)
					itemtype = map->buckets[-1 - item]->type;
				else
					itemtype = 0;

				/* keep going? */
				if (itemtype != type) {
					if (item >= 0 || (-1 - item) >= map->max_buckets) {
						out[rep] = CRUSH_ITEM_NONE;
						if (out2)
							out2[rep] = CRUSH_ITEM_NONE;
						left--;
						break;
					}
					in = map->buckets[-1 - item];
					continue;
				}

				/* collision? */
				collide = 0;
				for (i = outpos; i < endpos; i++) {
					if (out[i] == item) {
						collide = 1;
						break;
					}
				}
				if (collide)
					break;

				if (recurse_to_leaf) {
					if (item < 0) {
						crush_choose_indep(c, map->buckets[-1 - item], 1, numrep,
								   0, out2, rep, recurse_tries, 0, 0,
								   NULL, r);
						if (out2[rep] == CRUSH_ITEM_NONE)
							/* placed nothing; no leaf */
							break;
					} else {
						/* we already have a leaf! */
						out2[rep] = item;
					}
				}

				/* out? */
				if (itemtype == 0 && is_out(c->weight, c->weight_max, item, c->x))
					break;

				/* yay! */
				out[rep] = item;
				left--;
				break;
			}
		}
	}
	for (rep = outpos; rep < endpos; rep++) {
		if (out[rep] == CRUSH_ITEM_UNDEF)
			out[rep] = CRUSH_ITEM_NONE;
		if (out2 && out2[rep] == CRUSH_ITEM_UNDEF)
			out2[rep] = CRUSH_ITEM_NONE;
	}
}

/*
 * crush_do_rule: map input x through rule ruleno into result (at most result_max items).
 * weight[i] is the 16.16 reweight of device i (0 = out). cwin is a workspace initialised with
 * crush_init_workspace for at least result_max. Returns the number of items in result.
 */
int crush_do_rule(const struct crush_map *map, int ruleno, int x, int *result, int result_max,
		  const uint32_t *weight, int weight_max, void *cwin,
		  const struct crush_choose_arg *choose_args)
{
	struct choose_ctx c = {map, (struct work_state *)cwin, weight, weight_max, x, choose_args};
	int result_len;
	int *a = c.ws->scratch;
	int *b = a + result_max;
	int *cc = b + result_max;
	int recurse_to_leaf;
	int *w, *o, *tmp;
	int wsize = 0, osize;
	const struct crush_rule *rule;
	uint32_t step;
	int i, j, numrep, out_size;
	/* choose_total_tries counted retries, not tries: add one (as Ceph does) */
	int choose_tries = map->choose_total_tries + 1;
	int choose_leaf_tries = 0;
	/* the local tries values are retries and need no adjustment */
	int choose_local_retries = map->choose_local_tries;
	int choose_local_fallback_retries = map->choose_local_fallback_tries;
	int vary_r = map->chooseleaf_vary_r;
	int stable = map->chooseleaf_stable;

	if ((uint32_t)ruleno >= map->max_rules || !map->rules[ruleno])
		return 0;
	begin_call(map, c.ws);

	rule = map->rules[ruleno];
	result_len = 0;
	w = a;
	o = b;

	for (step = 0; step < rule->len; step++) {
		int firstn = 0;
		const struct crush_rule_step *curstep = &rule->steps[step];

		switch (curstep->op) {
		case CRUSH_RULE_TAKE:
			if ((curstep->arg1 >= 0 && curstep->arg1 < map->max_devices) ||
			    (-1 - curstep->arg1 >= 0 && -1 - curstep->arg1 < map->max_buckets &&
			     map->buckets[-1 - curstep->arg1])) {
				w[0] = curstep->arg1;
				wsize = 1;
			}
			break;

		case CRUSH_RULE_SET_CHOOSE_TRIES:
			if (curstep->arg1 > 0)
				choose_tries = curstep->arg1;
			break;

		case CRUSH_RULE_SET_CHOOSELEAF_TRIES:
			if (curstep->arg1 > 0)
				choose_leaf_tries = curstep->arg1;
			break;

		case CRUSH_RULE_SET_CHOOSE_LOCAL_TRIES:
			if (curstep->arg1 >= 0)
				choose_local_retries = curstep->arg1;
			break;

		case CRUSH_RULE_SET_CHOOSE_LOCAL_FALLBACK_TRIES:
			if (curstep->arg1 >= 0)
				choose_local_fallback_retries = curstep->arg1;
			break;

		case CRUSH_RULE_SET_CHOOSELEAF_VARY_R:
			if (curstep->arg1 >= 0)
				vary_r = curstep->arg1;
			break;

		case CRUSH_RULE_SET_CHOOSELEAF_STABLE:
			if (curstep->arg1 >= 0)
				stable = curstep->arg1;
			break;

		case CRUSH_RULE_CHOOSELEAF_FIRSTN:
		case CRUSH_RULE_CHOOSE_FIRSTN:
			firstn = 1;
			/* fall through */
		case CRUSH_RULE_CHOOSELEAF_INDEP:
		case CRUSH_RULE_CHOOSE_INDEP:
			if (wsize == 0)
				break;

			recurse_to_leaf = curstep->op == CRUSH_RULE_CHOOSELEAF_FIRSTN ||
					  curstep->op == CRUSH_RULE_CHOOSELEAF_INDEP;

			/* reset output */
			osize = 0;

			for (i = 0; i < wsize; i++) {
				int bno;

				/* numrep <= 0 means relative to result_max (CRUSH_N_MINUS) */
				numrep = curstep->arg1;
				if (numrep <= 0) {
					numrep += result_max;
					if (numrep <= 0)
						continue;
				}
				j = 0;
				/* make sure the bucket id is valid (w[i] may be ITEM_NONE) */
				bno = -1 - w[i];
				if (bno < 0 || bno >= map->max_buckets || !map->buckets[bno])
					continue;
				if (firstn) {
					int recurse_tries;

					if (choose_leaf_tries)
						recurse_tries = choose_leaf_tries;
					else if (map->chooseleaf_descend_once)
						recurse_tries = 1;
					else
						recurse_tries = choose_tries;
					osize += crush_choose_firstn(
						&c, map->buckets[bno], numrep, curstep->arg2, o + osize,
						j, result_max - osize, choose_tries, recurse_tries,
						choose_local_retries, choose_local_fallback_retries,
						recurse_to_leaf, vary_r, stable, cc + osize, 0);
				} else {
					out_size = ((numrep < (result_max - osize)) ?
							    numrep : (result_max - osize));
					crush_choose_indep(&c, map->buckets[bno], out_size, numrep,
							   curstep->arg2, o + osize, j, choose_tries,
							   choose_leaf_tries ? choose_leaf_tries : 1,
							   recurse_to_leaf, cc + osize, 0);
					osize += out_size;
				}
			}

			if (recurse_to_leaf)
				/* copy final _leaf_ values to output set */
				memcpy(o, cc, osize * sizeof(*o));

			/* swap o and w arrays */
			tmp = o;
			o = w;
			w = tmp;
			wsize = osize;
			break;

		case CRUSH_RULE_EMIT:
			for (i = 0; i < wsize && result_len < result_max; i++) {
				result[result_len] = w[i];
				result_len++;
			}
			wsize = 0;
			break;

		default:
			break;
		}
	}
	return result_len;
}
