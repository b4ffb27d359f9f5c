/*
 * The derived arrays of each bucket algorithm, computed as Ceph's src/crush/builder.c computes
 * them when a map is compiled: running sums (list), node weights (tree) and straw lengths
 * (straw v1, both straw_calc_version behaviours). Mappings depend on these bit for bit.
 */
#include <math.h>
#include <stdlib.h>

#include "crush.h"

static int addition_is_unsafe(uint32_t a, uint32_t b)
{
	return (UINT32_MAX - b) < a;
}

static int finish_list(struct crush_bucket *b)
{
	uint32_t w = 0, i;

	for (i = 0; i < b->size; i++) {
		if (addition_is_unsafe(w, b->item_weights[i]))
			return -1;
		w += b->item_weights[i];
		b->sum_weights[i] = w;
	}
	b->weight = w;
	return 0;
}

/* Tree nodes are labelled so that leaf i is node 2i+1 and the root is num_nodes/2. */
static int tree_height(int n)
{
	int h = 0;

	while ((n & 1) == 0) {
		h++;
		n = n >> 1;
	}
	return h;
}

static int tree_parent(int n)
{
	int h = tree_height(n);

	if (n & (1 << (h + 1))) /* a right child */
		return n - (1 << h);
	return n + (1 << h);
}

int crush_tree_depth(uint32_t size)
{
	int depth = 1;
	uint32_t t;

	if (size == 0)
		return 0;
	t = size - 1;
	while (t) {
		t = t >> 1;
		depth++;
	}
	return depth;
}

static int finish_tree(struct crush_bucket *b)
{
	int depth = crush_tree_depth(b->size);
	uint32_t i;
	int j;

	b->weight = 0;
	for (i = 0; i < b->num_nodes; i++)
		b->node_weights[i] = 0;
	for (i = 0; i < b->size; i++) {
		int node = ((i + 1) << 1) - 1;

		b->node_weights[node] = b->item_weights[i];
		if (addition_is_unsafe(b->weight, b->item_weights[i]))
			return -1;
		b->weight += b->item_weights[i];
		for (j = 1; j < depth; j++) {
			node = tree_parent(node);
			if (addition_is_unsafe(b->node_weights[node], b->item_weights[i]))
				return -1;
			b->node_weights[node] += b->item_weights[i];
		}
	}
	return 0;
}

/*
 * Straw lengths: sort the weights ascending and scale each straw so that the chance of the
 * longest draw matches the weight. Version 0 mishandles runs of equal weights; maps compiled
 * with straw_calc_version 0 keep that behaviour, so both are reproduced.
 */
static int finish_straw(const struct crush_map *map, struct crush_bucket *b)
{
	int *reverse;
	int i, j, k;
	double straw, wbelow, lastw, wnext, pbelow;
	int numleft;
	int size = (int)b->size;
	const uint32_t *weights = b->item_weights;
	uint32_t total = 0;

	for (i = 0; i < size; i++) {
		if (addition_is_unsafe(total, weights[i]))
			return -1;
		total += weights[i];
	}
	b->weight = total;

	reverse = malloc(sizeof(int) * ((size_t)b->size + 1));
	if (!reverse)
		return -1;
	/* insertion sort of indexes by ascending weight, stable */
	if (size)
		reverse[0] = 0;
	for (i = 1; i < size; i++) {
		for (j = 0; j < i; j++) {
			if (weights[i] < weights[reverse[j]]) {
				for (k = i; k > j; k--)
					reverse[k] = reverse[k - 1];
				reverse[j] = i;
				break;
			}
		}
		if (j == i)
			reverse[i] = i;
	}

	numleft = size;
	straw = 1.0;
	wbelow = 0;
	lastw = 0;

	i = 0;
	while (i < size) {
		if (map->straw_calc_version == 0) {
			/* zero weight items get 0 length straws */
			if (weights[reverse[i]] == 0) {
				b->straws[reverse[i]] = 0;
				i++;
				continue;
			}
			b->straws[reverse[i]] = straw * 0x10000;
			i++;
			if (i == size)
				break;
			if (weights[reverse[i]] == weights[reverse[i - 1]])
				continue;
			wbelow += ((double)weights[reverse[i - 1]] - lastw) * numleft;
			for (j = i; j < size; j++)
				if (weights[reverse[j]] == weights[reverse[i]])
					numleft--;
				else
					break;
			wnext = (uint32_t)(numleft * (weights[reverse[i]] - weights[reverse[i - 1]]));
			pbelow = wbelow / (wbelow + wnext);
			straw *= pow((double)1.0 / pbelow, (double)1.0 / (double)numleft);
			lastw = weights[reverse[i - 1]];
		} else {
			if (weights[reverse[i]] == 0) {
				b->straws[reverse[i]] = 0;
				i++;
				numleft--;
				continue;
			}
			b->straws[reverse[i]] = straw * 0x10000;
			i++;
			if (i == size)
				break;
			wbelow += ((double)weights[reverse[i - 1]] - lastw) * numleft;
			numleft--;
			wnext = (uint32_t)(numleft * (weights[reverse[i]] - weights[reverse[i - 1]]));
			pbelow = wbelow / (wbelow + wnext);
			straw *= pow((double)1.0 / pbelow, (double)1.0 / (double)numleft);
			lastw = weights[reverse[i - 1]];
		}
	}
	free(reverse);
	return 0;
}

int crush_finish_bucket(const struct crush_map *map, struct crush_bucket *b)
{
	uint32_t i, total = 0;

	switch (b->alg) {
	case CRUSH_BUCKET_LIST:
		return finish_list(b);
	case CRUSH_BUCKET_TREE:
		return finish_tree(b);
	case CRUSH_BUCKET_STRAW:
		return finish_straw(map, b);
	case CRUSH_BUCKET_UNIFORM:
		/* all items weigh the same; Ceph stores size * item_weight */
		b->weight = b->size ? b->size * b->item_weights[0] : 0;
		return 0;
	default:
		for (i = 0; i < b->size; i++) {
			if (addition_is_unsafe(total, b->item_weights[i]))
				return -1;
			total += b->item_weights[i];
		}
		b->weight = total;
		return 0;
	}
}
