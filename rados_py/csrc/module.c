/*
 * rados_py._placement: the Python face of the CRUSH port.
 *
 * Maps arrive as flat int32 buffers built and validated by rados_py.crush.compiled; this file
 * re-checks their structure (so no buffer can make the mapper read out of bounds or loop
 * forever), builds the C map once, and maps single inputs or whole ranges in one call with the
 * GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crush.h"

#define MAX_BUCKETS (1 << 16)
#define MAX_BUCKET_SIZE (1 << 16)
#define MAX_DEVICES (1 << 20)
#define MAX_RULES 256
#define MAX_RULE_STEPS 1024
#define MAX_TRIES 1000
#define MAX_RESULT 256

typedef struct {
	PyObject_HEAD
	struct crush_map map;
	uint32_t *default_weights; /* every device in (0x10000) */
	/* choose_args sets: each an array of max_buckets crush_choose_arg, in one allocation */
	struct crush_choose_arg **arg_sets;
	void **arg_memory;
	Py_ssize_t n_arg_sets;
	/* do_rule's workspace, sized for MAX_RESULT, made on first use and reused (its bucket
	 * states carry a call counter, so nothing is cleared per call); the GIL serialises use */
	void *work;
} CrushMapObject;

/* ---- buffer reading --------------------------------------------------------------------- */

struct reader {
	const int32_t *w;
	Py_ssize_t n, pos;
};

static int take(struct reader *rd, int32_t *out)
{
	if (rd->pos >= rd->n) {
		PyErr_SetString(PyExc_ValueError, "crush map buffer is truncated");
		return -1;
	}
	*out = rd->w[rd->pos++];
	return 0;
}

static int take_range(struct reader *rd, int32_t *out, int32_t lo, int32_t hi, const char *what)
{
	if (take(rd, out) < 0)
		return -1;
	if (*out < lo || *out > hi) {
		PyErr_Format(PyExc_ValueError, "%s %d out of range [%d, %d]", what, *out, lo, hi);
		return -1;
	}
	return 0;
}

static void free_map(struct crush_map *map)
{
	int32_t b;
	uint32_t r;

	if (map->buckets) {
		for (b = 0; b < map->max_buckets; b++) {
			struct crush_bucket *bk = map->buckets[b];

			if (!bk)
				continue;
			free(bk->items);
			free(bk->item_weights);
			free(bk->sum_weights);
			free(bk->straws);
			free(bk->node_weights);
			free(bk);
		}
		free(map->buckets);
		map->buckets = NULL;
	}
	if (map->rules) {
		for (r = 0; r < map->max_rules; r++) {
			if (map->rules[r]) {
				free(map->rules[r]->steps);
				free(map->rules[r]);
			}
		}
		free(map->rules);
		map->rules = NULL;
	}
}

static struct crush_bucket *read_bucket(struct crush_map *map, struct reader *rd, int32_t slot)
{
	struct crush_bucket *b = calloc(1, sizeof(*b));
	int32_t id, type, alg, hash, size, v;
	int32_t i;

	if (!b) {
		PyErr_NoMemory();
		return NULL;
	}
	if (take(rd, &id) < 0 || take_range(rd, &type, 1, 0xffff, "bucket type") < 0 ||
	    take_range(rd, &alg, CRUSH_BUCKET_UNIFORM, CRUSH_BUCKET_STRAW2, "bucket alg") < 0 ||
	    take_range(rd, &hash, 0, 0, "bucket hash (only 0, rjenkins1, exists)") < 0 ||
	    take_range(rd, &size, 0, MAX_BUCKET_SIZE, "bucket size") < 0)
		goto fail;
	/* type 0 is the device type: the mapper would read a device weight for the bucket */
	if (id != -1 - slot) {
		PyErr_Format(PyExc_ValueError, "bucket slot %d holds id %d", slot, id);
		goto fail;
	}
	b->id = id;
	b->type = type;
	b->alg = alg;
	b->hash = hash;
	b->size = size;
	b->items = malloc(sizeof(int32_t) * (size ? size : 1));
	b->item_weights = malloc(sizeof(uint32_t) * (size ? size : 1));
	if (!b->items || !b->item_weights) {
		PyErr_NoMemory();
		goto fail;
	}
	for (i = 0; i < size; i++)
		if (take(rd, &b->items[i]) < 0)
			goto fail;
	for (i = 0; i < size; i++) {
		if (take_range(rd, &v, 0, INT32_MAX, "item weight") < 0)
			goto fail;
		b->item_weights[i] = v;
		if (alg == CRUSH_BUCKET_UNIFORM && b->item_weights[i] != b->item_weights[0]) {
			PyErr_Format(PyExc_ValueError, "uniform bucket %d has unequal weights", id);
			goto fail;
		}
	}
	if (alg == CRUSH_BUCKET_LIST)
		b->sum_weights = malloc(sizeof(uint32_t) * (size ? size : 1));
	if (alg == CRUSH_BUCKET_STRAW)
		b->straws = malloc(sizeof(uint32_t) * (size ? size : 1));
	if (alg == CRUSH_BUCKET_TREE) {
		b->num_nodes = size ? 1u << crush_tree_depth(size) : 0;
		b->node_weights = malloc(sizeof(uint32_t) * (b->num_nodes ? b->num_nodes : 1));
	}
	if ((alg == CRUSH_BUCKET_LIST && !b->sum_weights) ||
	    (alg == CRUSH_BUCKET_STRAW && !b->straws) ||
	    (alg == CRUSH_BUCKET_TREE && !b->node_weights)) {
		PyErr_NoMemory();
		goto fail;
	}
	if (crush_finish_bucket(map, b) < 0) {
		PyErr_Format(PyExc_ValueError, "weights of bucket %d overflow 32 bits", id);
		goto fail;
	}
	return b;
fail:
	free(b->items);
	free(b->item_weights);
	free(b->sum_weights);
	free(b->straws);
	free(b->node_weights);
	free(b);
	return NULL;
}

/* Every item must exist and no bucket may contain itself, directly or not: the mapper
 * descends until it finds the wanted type and would never stop on a cycle. */
static int check_items(struct crush_map *map)
{
	int32_t b, n = map->max_buckets;
	uint32_t i;
	char *state = calloc(n ? n : 1, 1); /* 0 new, 1 on stack, 2 done */
	int32_t *stack = malloc(sizeof(int32_t) * (n ? n : 1));
	uint32_t *next = calloc(n ? n : 1, sizeof(uint32_t));
	int ok = -1;

	if (!state || !stack || !next) {
		PyErr_NoMemory();
		goto out;
	}
	for (b = 0; b < n; b++) {
		struct crush_bucket *bk = map->buckets[b];

		if (!bk)
			continue;
		for (i = 0; i < bk->size; i++) {
			int32_t it = bk->items[i];

			if (it >= 0 ? it >= map->max_devices
				    : (-1 - it >= n || !map->buckets[-1 - it])) {
				PyErr_Format(PyExc_ValueError, "bucket %d holds unknown item %d",
					     bk->id, it);
				goto out;
			}
		}
	}
	for (b = 0; b < n; b++) {
		int32_t top = 0;

		if (!map->buckets[b] || state[b])
			continue;
		stack[top++] = b;
		state[b] = 1;
		while (top) {
			int32_t cur = stack[top - 1];
			struct crush_bucket *bk = map->buckets[cur];

			if (next[cur] < bk->size) {
				int32_t it = bk->items[next[cur]++];
				int32_t child;

				if (it >= 0)
					continue;
				child = -1 - it;
				if (state[child] == 1) {
					PyErr_Format(PyExc_ValueError,
						     "bucket %d is its own ancestor", -1 - child);
					goto out;
				}
				if (state[child] == 0) {
					state[child] = 1;
					stack[top++] = child;
				}
			} else {
				state[cur] = 2;
				top--;
			}
		}
	}
	ok = 0;
out:
	free(state);
	free(stack);
	free(next);
	return ok;
}

static int read_rules(struct crush_map *map, struct reader *rd)
{
	int32_t n, present, len, r, s;

	if (take_range(rd, &n, 0, MAX_RULES, "rule count") < 0)
		return -1;
	map->max_rules = n;
	map->rules = calloc(n ? n : 1, sizeof(struct crush_rule *));
	if (!map->rules) {
		PyErr_NoMemory();
		return -1;
	}
	for (r = 0; r < n; r++) {
		struct crush_rule *rule;

		if (take_range(rd, &present, 0, 1, "rule presence") < 0)
			return -1;
		if (!present)
			continue;
		if (take_range(rd, &len, 0, MAX_RULE_STEPS, "rule length") < 0)
			return -1;
		rule = calloc(1, sizeof(*rule));
		if (!rule) {
			PyErr_NoMemory();
			return -1;
		}
		map->rules[r] = rule;
		rule->len = len;
		rule->steps = calloc(len ? len : 1, sizeof(struct crush_rule_step));
		if (!rule->steps) {
			PyErr_NoMemory();
			return -1;
		}
		for (s = 0; s < len; s++) {
			struct crush_rule_step *st = &rule->steps[s];

			if (take(rd, &st->op) < 0 || take(rd, &st->arg1) < 0 || take(rd, &st->arg2) < 0)
				return -1;
			switch (st->op) {
			case CRUSH_RULE_SET_CHOOSE_TRIES:
			case CRUSH_RULE_SET_CHOOSELEAF_TRIES:
			case CRUSH_RULE_SET_CHOOSE_LOCAL_TRIES:
			case CRUSH_RULE_SET_CHOOSE_LOCAL_FALLBACK_TRIES:
				if (st->arg1 > MAX_TRIES) {
					PyErr_Format(PyExc_ValueError, "rule %d: tries %d above %d", r,
						     st->arg1, MAX_TRIES);
					return -1;
				}
				break;
			case CRUSH_RULE_SET_CHOOSELEAF_VARY_R:
			case CRUSH_RULE_SET_CHOOSELEAF_STABLE:
				/* vary_r shifts r by vary_r - 1: more than 32 would shift past 31 bits */
				if (st->arg1 > 32) {
					PyErr_Format(PyExc_ValueError, "rule %d: value %d above 32", r,
						     st->arg1);
					return -1;
				}
				break;
			case CRUSH_RULE_CHOOSE_FIRSTN:
			case CRUSH_RULE_CHOOSE_INDEP:
			case CRUSH_RULE_CHOOSELEAF_FIRSTN:
			case CRUSH_RULE_CHOOSELEAF_INDEP:
				if (st->arg1 > MAX_RESULT || st->arg1 < -MAX_RESULT) {
					PyErr_Format(PyExc_ValueError, "rule %d: count %d out of range",
						     r, st->arg1);
					return -1;
				}
				break;
			}
		}
	}
	return 0;
}

static void free_arg_sets(CrushMapObject *self)
{
	Py_ssize_t i;

	for (i = 0; i < self->n_arg_sets; i++)
		free(self->arg_memory[i]);
	free(self->arg_sets);
	free(self->arg_memory);
	self->arg_sets = NULL;
	self->arg_memory = NULL;
	self->n_arg_sets = 0;
}

/*
 * One choose_args set from int32 words: [n], then per entry: bucket_id, positions, size,
 * positions*size weights, has_ids, and size ids when has_ids. Everything lives in one block so
 * one free() releases it; sizes must match the buckets they refer to.
 */
static int read_arg_set(CrushMapObject *self, const int32_t *w, Py_ssize_t n_words,
			struct crush_choose_arg **out, void **memory)
{
	struct reader rd = {w, n_words, 0};
	struct crush_map *map = &self->map;
	int32_t n, e, bucket_id, positions, size, has_ids, v, p, i;
	size_t slots = (size_t)(map->max_buckets ? map->max_buckets : 1);
	size_t need = sizeof(struct crush_choose_arg) * slots;
	char *block, *cursor;
	struct crush_choose_arg *args;

	/* first pass: validate and size */
	if (take_range(&rd, &n, 0, map->max_buckets, "choose_args entries") < 0)
		return -1;
	for (e = 0; e < n; e++) {
		if (take(&rd, &bucket_id) < 0 ||
		    take_range(&rd, &positions, 0, MAX_RESULT, "weight_set positions") < 0 ||
		    take_range(&rd, &size, 0, MAX_BUCKET_SIZE, "choose_args size") < 0)
			return -1;
		if (bucket_id >= 0 || -1 - bucket_id >= map->max_buckets ||
		    !map->buckets[-1 - bucket_id] ||
		    map->buckets[-1 - bucket_id]->size != (uint32_t)size) {
			PyErr_Format(PyExc_ValueError, "choose_args for bucket %d do not match it",
				     bucket_id);
			return -1;
		}
		for (i = 0; i < positions * size; i++)
			if (take_range(&rd, &v, 0, INT32_MAX, "weight_set weight") < 0)
				return -1;
		if (take_range(&rd, &has_ids, 0, 1, "choose_args ids flag") < 0)
			return -1;
		for (i = 0; has_ids && i < size; i++)
			if (take(&rd, &v) < 0)
				return -1;
		need += 8 + /* slack to align the weight_set array */
			sizeof(struct crush_weight_set) * (size_t)positions +
			sizeof(uint32_t) * (size_t)positions * (size_t)size +
			(has_ids ? sizeof(int32_t) * (size_t)size : 0);
	}
	if (rd.pos != rd.n) {
		PyErr_SetString(PyExc_ValueError, "trailing data after the choose_args");
		return -1;
	}
	block = calloc(1, need);
	if (!block) {
		PyErr_NoMemory();
		return -1;
	}
	/* second pass: fill (the input was validated above) */
	args = (struct crush_choose_arg *)block;
	cursor = block + sizeof(struct crush_choose_arg) * slots;
	rd.pos = 1;
	for (e = 0; e < n; e++) {
		struct crush_choose_arg *a;

		bucket_id = w[rd.pos++];
		positions = w[rd.pos++];
		size = w[rd.pos++];
		a = &args[-1 - bucket_id];
		if (positions > 0) {
			cursor = block + (((size_t)(cursor - block) + 7) & ~(size_t)7);
			a->weight_set = (struct crush_weight_set *)cursor;
			cursor += sizeof(struct crush_weight_set) * (size_t)positions;
			a->weight_set_positions = positions;
			for (p = 0; p < positions; p++) {
				a->weight_set[p].weights = (uint32_t *)cursor;
				a->weight_set[p].size = size;
				cursor += sizeof(uint32_t) * (size_t)size;
				for (i = 0; i < size; i++)
					a->weight_set[p].weights[i] = (uint32_t)w[rd.pos++];
			}
		}
		has_ids = w[rd.pos++];
		if (has_ids) {
			a->ids = (int32_t *)cursor;
			a->ids_size = size;
			cursor += sizeof(int32_t) * (size_t)size;
			for (i = 0; i < size; i++)
				a->ids[i] = w[rd.pos++];
		}
	}
	*out = args;
	*memory = block;
	return 0;
}

static int read_arg_sets(CrushMapObject *self, PyObject *sets)
{
	PyObject *seq = PySequence_Fast(sets, "choose_args must be a sequence of buffers");
	Py_ssize_t n, i;
	int ret = -1;

	if (!seq)
		return -1;
	n = PySequence_Fast_GET_SIZE(seq);
	self->arg_sets = calloc(n ? n : 1, sizeof(*self->arg_sets));
	self->arg_memory = calloc(n ? n : 1, sizeof(*self->arg_memory));
	if (!self->arg_sets || !self->arg_memory) {
		PyErr_NoMemory();
		goto out;
	}
	for (i = 0; i < n; i++) {
		Py_buffer b;
		int r;

		if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &b, PyBUF_SIMPLE) < 0)
			goto out;
		if (b.len % 4) {
			PyBuffer_Release(&b);
			PyErr_SetString(PyExc_ValueError, "choose_args buffers hold int32 words");
			goto out;
		}
		r = read_arg_set(self, b.buf, b.len / 4, &self->arg_sets[i], &self->arg_memory[i]);
		PyBuffer_Release(&b);
		if (r < 0)
			goto out;
		self->n_arg_sets = i + 1;
	}
	ret = 0;
out:
	Py_DECREF(seq);
	return ret;
}

static int CrushMap_init(CrushMapObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"max_devices", "tunables", "buckets", "rules", "choose_args", NULL};
	int max_devices;
	unsigned int t[7];
	Py_buffer bb = {0}, rb = {0};
	PyObject *arg_sets = NULL;
	struct reader rd;
	int32_t slot, present, nb;
	int ret = -1;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "i(IIIIIII)y*y*|O", kwlist, &max_devices, &t[0],
					 &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &bb, &rb,
					 &arg_sets))
		return -1;
	free_arg_sets(self);
	free_map(&self->map);
	free(self->default_weights);
	self->default_weights = NULL;
	memset(&self->map, 0, sizeof(self->map));

	if (max_devices < 0 || max_devices > MAX_DEVICES) {
		PyErr_Format(PyExc_ValueError, "max_devices %d out of range", max_devices);
		goto out;
	}
	if (t[0] > MAX_TRIES || t[1] > MAX_TRIES || t[2] > MAX_TRIES || t[3] > 1 || t[4] > 32 ||
	    t[5] > 1 || t[6] > 255) {
		PyErr_SetString(PyExc_ValueError, "crush tunables out of range");
		goto out;
	}
	if (bb.len % 4 || rb.len % 4) {
		PyErr_SetString(PyExc_ValueError, "crush buffers must hold int32 words");
		goto out;
	}
	self->map.max_devices = max_devices;
	self->map.choose_local_tries = t[0];
	self->map.choose_local_fallback_tries = t[1];
	self->map.choose_total_tries = t[2];
	self->map.chooseleaf_descend_once = t[3];
	self->map.chooseleaf_vary_r = t[4];
	self->map.chooseleaf_stable = t[5];
	self->map.straw_calc_version = t[6];

	rd.w = bb.buf;
	rd.n = bb.len / 4;
	rd.pos = 0;
	if (take_range(&rd, &nb, 0, MAX_BUCKETS, "bucket count") < 0)
		goto out;
	self->map.max_buckets = nb;
	self->map.buckets = calloc(nb ? nb : 1, sizeof(struct crush_bucket *));
	if (!self->map.buckets) {
		PyErr_NoMemory();
		goto out;
	}
	for (slot = 0; slot < nb; slot++) {
		if (take_range(&rd, &present, 0, 1, "bucket presence") < 0)
			goto out;
		if (present && !(self->map.buckets[slot] = read_bucket(&self->map, &rd, slot)))
			goto out;
	}
	if (rd.pos != rd.n) {
		PyErr_SetString(PyExc_ValueError, "trailing data after the buckets");
		goto out;
	}
	if (check_items(&self->map) < 0)
		goto out;

	rd.w = rb.buf;
	rd.n = rb.len / 4;
	rd.pos = 0;
	if (read_rules(&self->map, &rd) < 0)
		goto out;
	if (rd.pos != rd.n) {
		PyErr_SetString(PyExc_ValueError, "trailing data after the rules");
		goto out;
	}

	if (arg_sets != NULL && arg_sets != Py_None && read_arg_sets(self, arg_sets) < 0)
		goto out;
	self->default_weights = malloc(sizeof(uint32_t) * (max_devices ? max_devices : 1));
	if (!self->default_weights) {
		PyErr_NoMemory();
		goto out;
	}
	for (slot = 0; slot < max_devices; slot++)
		self->default_weights[slot] = 0x10000;
	ret = 0;
out:
	if (ret < 0) {
		free_arg_sets(self);
		free_map(&self->map);
	}
	PyBuffer_Release(&bb);
	PyBuffer_Release(&rb);
	return ret;
}

static void CrushMap_dealloc(CrushMapObject *self)
{
	free_arg_sets(self);
	free_map(&self->map);
	free(self->default_weights);
	free(self->work);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- mapping ----------------------------------------------------------------------------- */

struct mapping_args {
	int rule, result_max;
	const uint32_t *weights;
	int weight_max;
	Py_buffer wbuf;
	int arg_set; /* index into the map's choose_args sets, -1 for none */
	const struct crush_choose_arg *choose_args;
};

static int ready(CrushMapObject *self)
{
	if (!self->map.buckets || !self->map.rules || !self->default_weights) {
		PyErr_SetString(PyExc_RuntimeError, "CrushMap is not initialised");
		return 0;
	}
	return 1;
}

/* Check rule/result_max and pick the weight vector (None: every device in). */
static int mapping_setup(CrushMapObject *self, struct mapping_args *a, PyObject *weights)
{
	if (!ready(self))
		return -1;
	if (a->rule < 0 || (uint32_t)a->rule >= self->map.max_rules || !self->map.rules[a->rule]) {
		PyErr_Format(PyExc_KeyError, "no crush rule %d", a->rule);
		return -1;
	}
	if (a->arg_set < -1 || a->arg_set >= self->n_arg_sets) {
		PyErr_Format(PyExc_ValueError, "no choose_args set %d", a->arg_set);
		return -1;
	}
	a->choose_args = a->arg_set >= 0 ? self->arg_sets[a->arg_set] : NULL;
	if (a->result_max < 1 || a->result_max > MAX_RESULT) {
		PyErr_Format(PyExc_ValueError, "result_max %d out of range [1, %d]", a->result_max,
			     MAX_RESULT);
		return -1;
	}
	if (weights == NULL || weights == Py_None) {
		a->weights = self->default_weights;
		a->weight_max = self->map.max_devices;
		return 0;
	}
	if (PyObject_GetBuffer(weights, &a->wbuf, PyBUF_SIMPLE) < 0)
		return -1;
	if (a->wbuf.len % 4) {
		PyBuffer_Release(&a->wbuf);
		PyErr_SetString(PyExc_ValueError, "weights must be a buffer of uint32");
		return -1;
	}
	a->weights = a->wbuf.buf;
	a->weight_max = (int)(a->wbuf.len / 4);
	return 0;
}

static void mapping_done(struct mapping_args *a)
{
	if (a->wbuf.obj)
		PyBuffer_Release(&a->wbuf);
}

static PyObject *CrushMap_do_rule(CrushMapObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"rule", "x", "result_max", "weights", "choose_args", NULL};
	struct mapping_args a = {.arg_set = -1};
	PyObject *weights = NULL, *list = NULL;
	unsigned int x;
	int n, i;
	int result[MAX_RESULT];

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "iIi|Oi", kwlist, &a.rule, &x, &a.result_max,
					 &weights, &a.arg_set))
		return NULL;
	if (mapping_setup(self, &a, weights) < 0)
		return NULL;
	if (!self->work) {
		self->work = malloc(crush_work_size(&self->map, MAX_RESULT));
		if (!self->work) {
			mapping_done(&a);
			return PyErr_NoMemory();
		}
		crush_init_workspace(&self->map, self->work);
	}
	n = crush_do_rule(&self->map, a.rule, (int)x, result, a.result_max, a.weights, a.weight_max,
			  self->work, a.choose_args);
	mapping_done(&a);
	list = PyList_New(n);
	if (!list)
		return NULL;
	for (i = 0; i < n; i++)
		PyList_SET_ITEM(list, i, PyLong_FromLong(result[i]));
	return list;
}

/*
 * Map `count` inputs in one call. Row i of the result holds the mapping of input i, padded
 * with CRUSH_ITEM_NONE to result_max; lengths[i] says how many entries are real. For pgs,
 * input i is PG seed i of a pool and x is its placement seed (pps) as Ceph computes it.
 * Large batches are split across threads (one workspace each): the map is read-only.
 */
struct batch {
	const struct crush_map *map;
	const struct mapping_args *a;
	int64_t first;
	Py_ssize_t begin, end;
	int pgs, hashpspool;
	int64_t pool;
	uint32_t pgp_num, pgp_mask;
	int32_t *out, *len;
	void *work;
};

static void *run_batch(void *arg)
{
	struct batch *bt = arg;
	const struct mapping_args *a = bt->a;
	Py_ssize_t i;
	int j;

	crush_init_workspace(bt->map, bt->work);
	for (i = bt->begin; i < bt->end; i++) {
		int x;
		int32_t *row = bt->out + i * a->result_max;

		if (bt->pgs) {
			uint32_t ps = ceph_stable_mod((uint32_t)i, bt->pgp_num, bt->pgp_mask);

			x = bt->hashpspool ? (int)crush_hash32_2(ps, (uint32_t)bt->pool)
					   : (int)(ps + (uint32_t)bt->pool);
		} else {
			x = (int)(bt->first + i);
		}
		bt->len[i] = crush_do_rule(bt->map, a->rule, x, row, a->result_max, a->weights,
					   a->weight_max, bt->work, a->choose_args);
		for (j = bt->len[i]; j < a->result_max; j++)
			row[j] = CRUSH_ITEM_NONE;
	}
	return NULL;
}

#define MAX_THREADS 8
#define MIN_PER_THREAD 20000

/* threads: what the caller asked for, 0 for one per CPU; small batches stay on one thread */
static int batch_threads(Py_ssize_t count, int threads)
{
	long cpus = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
	Py_ssize_t n = count / MIN_PER_THREAD;

	if (cpus < 1)
		cpus = 1;
	if (n > cpus)
		n = cpus;
	if (n > MAX_THREADS)
		n = MAX_THREADS;
	return n < 1 ? 1 : (int)n;
}

static PyObject *map_many(CrushMapObject *self, struct mapping_args *a, int64_t first,
			  Py_ssize_t count, int pgs, int64_t pool, uint32_t pgp_num, int hashpspool,
			  int threads)
{
	PyObject *rows = NULL, *lens = NULL, *ret = NULL;
	struct batch bt[MAX_THREADS];
	pthread_t tid[MAX_THREADS];
	int started[MAX_THREADS] = {0};
	int nthreads = batch_threads(count, threads), t;
	size_t wsize = crush_work_size(&self->map, a->result_max);
	uint32_t pgp_mask = 0;

	if (count < 0 || count > (Py_ssize_t)1 << 26) {
		PyErr_SetString(PyExc_ValueError, "count out of range");
		return NULL;
	}
	if (pgs) {
		while (pgp_mask < pgp_num - 1)
			pgp_mask = (pgp_mask << 1) | 1;
	}
	memset(bt, 0, sizeof(bt));
	rows = PyBytes_FromStringAndSize(NULL, count * a->result_max * 4);
	lens = PyBytes_FromStringAndSize(NULL, count * 4);
	if (!rows || !lens)
		goto out;
	for (t = 0; t < nthreads; t++) {
		bt[t].map = &self->map;
		bt[t].a = a;
		bt[t].first = first;
		bt[t].begin = count * t / nthreads;
		bt[t].end = count * (t + 1) / nthreads;
		bt[t].pgs = pgs;
		bt[t].hashpspool = hashpspool;
		bt[t].pool = pool;
		bt[t].pgp_num = pgp_num;
		bt[t].pgp_mask = pgp_mask;
		bt[t].out = (int32_t *)PyBytes_AS_STRING(rows);
		bt[t].len = (int32_t *)PyBytes_AS_STRING(lens);
		bt[t].work = malloc(wsize);
		if (!bt[t].work) {
			PyErr_NoMemory();
			goto out;
		}
	}
	Py_BEGIN_ALLOW_THREADS
	/* threads 1.. run in the background; this thread takes slice 0 (and any slice whose
	 * thread could not start) */
	for (t = 1; t < nthreads; t++)
		started[t] = pthread_create(&tid[t], NULL, run_batch, &bt[t]) == 0;
	run_batch(&bt[0]);
	for (t = 1; t < nthreads; t++) {
		if (started[t])
			pthread_join(tid[t], NULL);
		else
			run_batch(&bt[t]);
	}
	Py_END_ALLOW_THREADS
	ret = PyTuple_Pack(2, rows, lens);
out:
	for (t = 0; t < nthreads; t++)
		free(bt[t].work);
	Py_XDECREF(rows);
	Py_XDECREF(lens);
	return ret;
}

static PyObject *CrushMap_map_range(CrushMapObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"rule", "first", "count", "result_max", "weights", "threads",
				 "choose_args", NULL};
	struct mapping_args a = {.arg_set = -1};
	PyObject *weights = NULL, *ret;
	long long first;
	Py_ssize_t count;
	int threads = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "iLni|Oii", kwlist, &a.rule, &first, &count,
					 &a.result_max, &weights, &threads, &a.arg_set))
		return NULL;
	if (first < INT32_MIN || first + count - 1 > INT32_MAX) {
		PyErr_SetString(PyExc_ValueError, "x range must fit a signed 32-bit integer");
		return NULL;
	}
	if (mapping_setup(self, &a, weights) < 0)
		return NULL;
	ret = map_many(self, &a, first, count, 0, 0, 0, 0, threads);
	mapping_done(&a);
	return ret;
}

static PyObject *CrushMap_map_pgs(CrushMapObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"rule", "pool", "pg_num", "pgp_num", "result_max", "hashpspool",
				 "weights", "threads", "choose_args", NULL};
	struct mapping_args a = {.arg_set = -1};
	PyObject *weights = NULL, *ret;
	long long pool;
	unsigned int pg_num, pgp_num;
	int hashpspool = 1, threads = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "iLIIi|pOii", kwlist, &a.rule, &pool, &pg_num,
					 &pgp_num, &a.result_max, &hashpspool, &weights, &threads,
					 &a.arg_set))
		return NULL;
	if (pg_num < 1 || pgp_num < 1 || pgp_num > pg_num || pg_num > (1u << 26)) {
		PyErr_SetString(PyExc_ValueError, "need 1 <= pgp_num <= pg_num <= 2^26");
		return NULL;
	}
	if (mapping_setup(self, &a, weights) < 0)
		return NULL;
	ret = map_many(self, &a, 0, pg_num, 1, pool, pgp_num, hashpspool, threads);
	mapping_done(&a);
	return ret;
}

static PyObject *CrushMap_get_max_devices(CrushMapObject *self, void *closure)
{
	return PyLong_FromLong(self->map.max_devices);
}

static PyMethodDef CrushMap_methods[] = {
	{"do_rule", (PyCFunction)(void (*)(void))CrushMap_do_rule, METH_VARARGS | METH_KEYWORDS,
	 "do_rule(rule, x, result_max, weights=None) -> list: crush_do_rule for one input."},
	{"map_range", (PyCFunction)(void (*)(void))CrushMap_map_range,
	 METH_VARARGS | METH_KEYWORDS,
	 "map_range(rule, first, count, result_max, weights=None, threads=0) -> (rows, lengths): "
	 "map inputs first..first+count-1; rows is int32 count*result_max padded with ITEM_NONE; "
	 "threads=0 uses every CPU for large batches."},
	{"map_pgs", (PyCFunction)(void (*)(void))CrushMap_map_pgs, METH_VARARGS | METH_KEYWORDS,
	 "map_pgs(rule, pool, pg_num, pgp_num, result_max, hashpspool=True, weights=None, "
	 "threads=0) -> (rows, lengths): the raw CRUSH mapping of every PG of a pool."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef CrushMap_getset[] = {
	{"max_devices", (getter)CrushMap_get_max_devices, NULL, "one past the highest device id",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CrushMapType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rados_py._placement.CrushMap",
	.tp_basicsize = sizeof(CrushMapObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "CrushMap(max_devices, tunables, buckets, rules): a compiled CRUSH map.",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)CrushMap_init,
	.tp_dealloc = (destructor)CrushMap_dealloc,
	.tp_methods = CrushMap_methods,
	.tp_getset = CrushMap_getset,
};

/* ---- module functions -------------------------------------------------------------------- */

static PyObject *py_str_hash_rjenkins(PyObject *mod, PyObject *arg)
{
	Py_buffer b;
	uint32_t h;

	if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
		return NULL;
	if (b.len > UINT32_MAX) {
		PyBuffer_Release(&b);
		PyErr_SetString(PyExc_ValueError, "name too long");
		return NULL;
	}
	h = ceph_str_hash_rjenkins(b.buf, (uint32_t)b.len);
	PyBuffer_Release(&b);
	return PyLong_FromUnsignedLong(h);
}

static PyObject *py_hash32(PyObject *mod, PyObject *args)
{
	uint32_t v[5];
	Py_ssize_t n = PyTuple_GET_SIZE(args), i;

	if (n < 1 || n > 5) {
		PyErr_SetString(PyExc_TypeError, "hash32 takes 1 to 5 integers");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		/* wrap like C: negative ids hash as their two's complement */
		PyObject *o = PyTuple_GET_ITEM(args, i);
		unsigned long long u = PyLong_AsUnsignedLongLongMask(o);

		if (u == (unsigned long long)-1 && PyErr_Occurred())
			return NULL;
		v[i] = (uint32_t)u;
	}
	switch (n) {
	case 1: return PyLong_FromUnsignedLong(crush_hash32(v[0]));
	case 2: return PyLong_FromUnsignedLong(crush_hash32_2(v[0], v[1]));
	case 3: return PyLong_FromUnsignedLong(crush_hash32_3(v[0], v[1], v[2]));
	case 4: return PyLong_FromUnsignedLong(crush_hash32_4(v[0], v[1], v[2], v[3]));
	default: return PyLong_FromUnsignedLong(crush_hash32_5(v[0], v[1], v[2], v[3], v[4]));
	}
}

static PyObject *py_stable_mod(PyObject *mod, PyObject *args)
{
	unsigned int x, b, bmask;

	if (!PyArg_ParseTuple(args, "III", &x, &b, &bmask))
		return NULL;
	return PyLong_FromUnsignedLong(ceph_stable_mod(x, b, bmask));
}

static PyObject *py_crush_ln(PyObject *mod, PyObject *arg)
{
	unsigned long x = PyLong_AsUnsignedLong(arg);

	if (x == (unsigned long)-1 && PyErr_Occurred())
		return NULL;
	if (x > 0xffff) {
		PyErr_SetString(PyExc_ValueError, "crush_ln takes 0..0xffff");
		return NULL;
	}
	return PyLong_FromUnsignedLongLong(crush_ln((unsigned int)x));
}

static PyMethodDef module_methods[] = {
	{"str_hash_rjenkins", py_str_hash_rjenkins, METH_O,
	 "Ceph's ceph_str_hash_rjenkins of a bytes-like object (object name -> 32-bit hash)."},
	{"hash32", py_hash32, METH_VARARGS,
	 "crush_hash32_rjenkins1 of 1 to 5 32-bit integers."},
	{"stable_mod", py_stable_mod, METH_VARARGS,
	 "ceph_stable_mod(x, b, bmask): fold x into b buckets stably as b grows."},
	{"crush_ln", py_crush_ln, METH_O, "CRUSH's fixed-point 2^44*log2(x+1) for x in 0..0xffff."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT, "rados_py._placement",
	"CRUSH placement (Ceph-identical) in C: hashes, stable_mod and crush_do_rule.", -1,
	module_methods,
};

PyMODINIT_FUNC PyInit__placement(void)
{
	PyObject *m;

	if (PyType_Ready(&CrushMapType) < 0)
		return NULL;
	m = PyModule_Create(&module_def);
	if (!m)
		return NULL;
	Py_INCREF(&CrushMapType);
	if (PyModule_AddObject(m, "CrushMap", (PyObject *)&CrushMapType) < 0 ||
	    PyModule_AddIntConstant(m, "ITEM_NONE", CRUSH_ITEM_NONE) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_RESULT", MAX_RESULT) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_TRIES", MAX_TRIES) < 0) {
		Py_DECREF(&CrushMapType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
