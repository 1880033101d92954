#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#include <chimaera/pool_query.h>

#include "log.h"

/* Lane entries are 32-bit offsets, so one client segment stays within 4 GiB. */
#define SHM_SEG_MAX_SIZE_CFG (4ull << 30)
#define CPU_SETSIZE_CFG 1024

enum key_type {
	KEY_U32,     /* integer within [min, max] */
	KEY_U64,     /* integer within [min, max] */
	KEY_PORT,    /* int within [min, max] */
	KEY_SIZE,    /* size string within [min, max] */
	KEY_STRING,  /* copied into a char array of `max` bytes */
	KEY_LOGLEVEL,
	KEY_CPUS,    /* sequence of cpu ids, or "a-b,c" text */
	KEY_INT,     /* signed int within [-1, max] */
	KEY_CHOICE,  /* one word of key_choices(), stored like KEY_STRING */
	KEY_ADDR,    /* numeric IPv4 or IPv6 address (or ""), stored like KEY_STRING */
	KEY_IGNORED, /* accepted for compatibility with upstream files; warned about */
};

struct key_desc {
	const char *name; /* "section.key" */
	enum key_type type;
	size_t offset;
	uint64_t min;
	uint64_t max;
};

#define OFF(field) offsetof(struct config, field)
#define STR(field) KEY_STRING, OFF(field), 0, sizeof(((struct config *)0)->field)
#define CHOICE(field) KEY_CHOICE, OFF(field), 0, sizeof(((struct config *)0)->field)
#define ADDR(field) KEY_ADDR, OFF(field), 0, sizeof(((struct config *)0)->field)

static const struct key_desc keys[] = {
	{ "runtime.num_threads", KEY_U32, OFF(num_threads), 1, CONFIG_MAX_WORKERS },
	{ "runtime.queue_depth", KEY_U32, OFF(queue_depth), 2, 65536 },
	{ "runtime.local_sched", STR(local_sched) },
	{ "runtime.first_busy_wait", KEY_U64, OFF(first_busy_wait_us), 0, 10000000 },
	{ "runtime.conf_dir", STR(conf_dir) },
	{ "runtime.run_dir", STR(run_dir) },
	{ "runtime.data_dir", STR(data_dir) },
	{ "runtime.stack_size", KEY_SIZE, OFF(stack_size), 16384, 1ull << 30 },
	{ "runtime.cpus", KEY_CPUS, OFF(cpus), 0, 0 },
	{ "runtime.numa_node", KEY_INT, OFF(numa_node), 0, 1023 },
	{ "runtime.stall_report_ms", KEY_U32, OFF(stall_report_ms), 0, 3600000 },
	{ "runtime.steal_after_ms", KEY_U32, OFF(steal_after_ms), 0, 3600000 },
	{ "runtime.destroy_cancel_after_ms", KEY_U32, OFF(destroy_cancel_after_ms), 0, 86400000 },
	{ "runtime.client_max_timers", KEY_U32, OFF(client_max_timers), 1, 1u << 30 },
	{ "runtime.client_max_coroutines", KEY_U32, OFF(client_max_coroutines), 1, 1u << 30 },
	{ "runtime.client_max_subtasks", KEY_U32, OFF(client_max_subtasks), 1, 1u << 30 },
	{ "runtime.client_max_pool_jobs", KEY_U32, OFF(client_max_pool_jobs), 1, 1u << 20 },
	{ "runtime.client_max_memory", KEY_SIZE, OFF(client_max_memory), 1ull << 20, 1ull << 40 },
	{ "runtime.client_max_bad_submissions", KEY_U32, OFF(client_max_bad_submissions), 1,
	  1u << 30 },
	{ "runtime.heartbeat_interval", KEY_IGNORED, 0, 0, 0 },
	{ "runtime.max_sleep", KEY_IGNORED, 0, 0, 0 },
	{ "memory.client_data_segment_size", KEY_SIZE, OFF(client_data_segment_size),
	  1ull << 20, SHM_SEG_MAX_SIZE_CFG },
	{ "memory.lanes_per_client", KEY_U32, OFF(lanes_per_client), 1, 256 },
	{ "memory.max_clients", KEY_U32, OFF(max_clients), 1, 65536 },
	{ "memory.main_segment_size", KEY_IGNORED, 0, 0, 0 },
	{ "memory.runtime_data_segment_size", KEY_IGNORED, 0, 0, 0 },
	{ "networking.port", KEY_PORT, OFF(port), 1, 65535 },
	{ "networking.neighborhood_size", KEY_U32, OFF(neighborhood_size), 1, 1u << 20 },
	{ "networking.bootstrap", CHOICE(bootstrap) },
	{ "networking.hostfile", STR(hostfile) },
	{ "networking.wait_for_restart", KEY_U64, OFF(wait_for_restart_s), 0, 86400 },
	{ "networking.heartbeat_ms", KEY_U64, OFF(heartbeat_ms), 0, 3600000 },
	{ "networking.transport", CHOICE(transport) },
	{ "networking.bind", ADDR(bind) },
	{ "networking.secret_file", STR(secret_file) },
	{ "networking.rdma_device", STR(rdma_device) },
	{ "logging.level", KEY_LOGLEVEL, OFF(log_level), 0, 0 },
	{ "logging.file", STR(log_file) },
	{ "workers.sched_threads", KEY_IGNORED, 0, 0, 0 },
	{ "workers.slow_threads", KEY_IGNORED, 0, 0, 0 },
	{ "heartbeat_interval", KEY_IGNORED, 0, 0, 0 },
	{ "max_sleep", KEY_IGNORED, 0, 0, 0 },
};

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->num_threads = 4;
	cfg->queue_depth = 1024;
	snprintf(cfg->local_sched, sizeof(cfg->local_sched), "default");
	cfg->first_busy_wait_us = 50;
	snprintf(cfg->conf_dir, sizeof(cfg->conf_dir), "/tmp/chimaera");
	cfg->stack_size = 64 * 1024;
	cfg->numa_node = -1;
	cfg->stall_report_ms = 1000;
	cfg->steal_after_ms = 100;
	cfg->destroy_cancel_after_ms = 30000;
	cfg->client_max_timers = 65536;
	cfg->client_max_coroutines = 131072;
	cfg->client_max_subtasks = 65536;
	cfg->client_max_pool_jobs = 64;
	cfg->client_max_memory = 256ull << 20;
	cfg->client_max_bad_submissions = 1000;
	cfg->client_data_segment_size = 256ull << 20;
	cfg->lanes_per_client = 16;
	cfg->max_clients = 1024;
	cfg->port = 9413;
	cfg->neighborhood_size = 32;
	snprintf(cfg->bootstrap, sizeof(cfg->bootstrap), "none");
	cfg->wait_for_restart_s = 30;
	cfg->heartbeat_ms = 1000;
	snprintf(cfg->transport, sizeof(cfg->transport), "auto");
	cfg->log_level = CHI_LOG_LEVEL_WARN;
}

void config_fini(struct config *cfg)
{
	free(cfg->compose);
	cfg->compose = NULL;
	cfg->num_compose = 0;
}

/* ---- number parsing ---- */

int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{ "", 0 },    { "b", 0 },    { "k", 10 },  { "kb", 10 }, { "kib", 10 },
		{ "m", 20 },  { "mb", 20 },  { "mib", 20 }, { "g", 30 },  { "gb", 30 },
		{ "gib", 30 }, { "t", 40 },  { "tb", 40 },  { "tib", 40 },
	};
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -EINVAL;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
			return -EINVAL;
		*out = (uint64_t)v << units[i].shift;
		return 0;
	}
	return -EINVAL;
}

/* ---- YAML walking ---- */

struct load_ctx {
	struct config *cfg;
	const char *name;
	yaml_document_t *doc;
	char *err;
	size_t err_len;
	size_t bootstrap_line; /* where networking.bootstrap was given; 0: not given */
	int hostfile_given;
};

static int fail(struct load_ctx *lc, const yaml_node_t *node, const char *key, const char *fmt,
		...) __attribute__((format(printf, 4, 5)));

static int fail(struct load_ctx *lc, const yaml_node_t *node, const char *key, const char *fmt,
		...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(lc->err, lc->err_len, "%s:%zu:%zu: %s%s%s", lc->name,
		 node ? node->start_mark.line + 1 : 0, node ? node->start_mark.column + 1 : 0,
		 key ? key : "", key ? ": " : "", what);
	return -EINVAL;
}

static void warn(struct load_ctx *lc, const yaml_node_t *node, const char *key, const char *what)
{
	CHI_LOG_WARN("%s:%zu:%zu: %s: %s", lc->name, node->start_mark.line + 1,
		     node->start_mark.column + 1, key, what);
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int set_cpus(struct load_ctx *lc, const yaml_node_t *v, const char *key)
{
	struct config *cfg = lc->cfg;
	uint64_t id;

	cfg->num_cpus = 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(lc, v, key, "expected a list of cpu ids, e.g. [0, 1]");
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		const yaml_node_t *item = yaml_document_get_node(lc->doc, *it);
		if (parse_u64(scalar(item), &id) != 0 || id >= CPU_SETSIZE_CFG)
			return fail(lc, item, key, "expected a cpu id in [0, %d)", CPU_SETSIZE_CFG);
		if (cfg->num_cpus == CONFIG_MAX_CPUS)
			return fail(lc, item, key, "more than %d cpus", CONFIG_MAX_CPUS);
		cfg->cpus[cfg->num_cpus++] = (int)id;
	}
	return 0;
}

/* The words a KEY_CHOICE key takes, the default first. */
static const char *const *key_choices(const char *name)
{
	static const char *const bootstrap[] = { "none", "hostfile", "pmix", NULL };
	static const char *const transport[] = { "auto", "tcp", "verbs", NULL };

	return strcmp(name, "networking.bootstrap") == 0 ? bootstrap : transport;
}

static int set_choice(struct load_ctx *lc, const struct key_desc *k, const yaml_node_t *v,
		      const char *s)
{
	const char *const *words = key_choices(k->name);
	char list[128] = "";

	for (size_t i = 0; words[i]; i++) {
		if (strcasecmp(s, words[i]) != 0)
			continue;
#ifndef CHI_HAVE_PMIX
		if (strcmp(words[i], "pmix") == 0)
			return fail(lc, v, k->name,
				    "pmix: built without PMIx support: install libpmix-dev and "
				    "rebuild, or use hostfile (docs/config.md, \"PMIx\")");
#endif
		snprintf((char *)lc->cfg + k->offset, k->max, "%s", words[i]);
		if (strcmp(k->name, "networking.bootstrap") == 0)
			lc->bootstrap_line = v->start_mark.line + 1;
		return 0;
	}
	for (size_t i = 0; words[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
			 i == 0 ? "" : words[i + 1] ? ", " : " or ", words[i]);
	return fail(lc, v, k->name, "expected %s, got '%s'", list, s);
}

static int set_key(struct load_ctx *lc, const struct key_desc *k, const yaml_node_t *v)
{
	char *field = (char *)lc->cfg + k->offset;
	const char *s = scalar(v);
	uint64_t num;
	int rc;

	if (k->type == KEY_IGNORED) {
		warn(lc, v, k->name, "accepted for compatibility with upstream files; ignored here");
		return 0;
	}
	if (k->type == KEY_CPUS)
		return set_cpus(lc, v, k->name);
	if (!s)
		return fail(lc, v, k->name, "expected a single value, not a list or mapping");

	switch (k->type) {
	case KEY_STRING:
		if (strlen(s) >= k->max)
			return fail(lc, v, k->name, "longer than %llu characters",
				    (unsigned long long)k->max - 1);
		snprintf(field, k->max, "%s", s);
		if (strcmp(k->name, "networking.hostfile") == 0)
			lc->hostfile_given = 1;
		return 0;
	case KEY_CHOICE:
		return set_choice(lc, k, v, s);
	case KEY_ADDR: {
		unsigned char a[sizeof(struct in6_addr)];
		if (*s && inet_pton(AF_INET, s, a) != 1 && inet_pton(AF_INET6, s, a) != 1)
			return fail(lc, v, k->name,
				    "expected a numeric IPv4 or IPv6 address such as 10.0.0.1 "
				    "or fd00::1, got '%s'",
				    s);
		snprintf(field, k->max, "%s", s);
		return 0;
	}
	case KEY_LOGLEVEL:
		rc = log_level_parse(s);
		if (rc < 0)
			return fail(lc, v, k->name,
				    "expected debug, info, warning or error, got '%s'", s);
		*(int *)field = rc;
		return 0;
	case KEY_SIZE:
		if (parse_size(s, &num) != 0)
			return fail(lc, v, k->name,
				    "expected a size such as 512MB or 4096, got '%s'", s);
		break;
	case KEY_INT:
		if (strcmp(s, "-1") == 0) {
			*(int *)field = -1;
			return 0;
		}
		/* fall through */
	default:
		if (parse_u64(s, &num) != 0)
			return fail(lc, v, k->name, "expected a whole number, got '%s'", s);
		break;
	}
	if (num < k->min || num > k->max)
		return fail(lc, v, k->name, "%s is out of range [%llu, %llu]", s,
			    (unsigned long long)k->min, (unsigned long long)k->max);
	switch (k->type) {
	case KEY_U32:
		*(uint32_t *)field = (uint32_t)num;
		break;
	case KEY_PORT:
	case KEY_INT:
		*(int *)field = (int)num;
		break;
	default:
		*(uint64_t *)field = num;
		break;
	}
	return 0;
}

static const struct key_desc *find_key(const char *name)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Keys of one mapping must be unique scalars. */
static int check_mapping_keys(struct load_ctx *lc, const yaml_node_t *map, const char *where)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
		if (!scalar(k))
			return fail(lc, k, where, "keys must be plain names");
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			const char *prev = scalar(yaml_document_get_node(lc->doc, q->key));
			if (prev && strcmp(prev, scalar(k)) == 0)
				return fail(lc, k, scalar(k), "duplicate key");
		}
	}
	return 0;
}

static int apply_pair(struct load_ctx *lc, const char *section, const yaml_node_t *k,
		      const yaml_node_t *v)
{
	char name[256];

	snprintf(name, sizeof(name), "%s%s%s", section ? section : "", section ? "." : "",
		 scalar(k));
	const struct key_desc *desc = find_key(name);
	if (desc)
		return set_key(lc, desc, v);
	warn(lc, k, name, "unknown key (ignored)");
	return 0;
}

static int load_section(struct load_ctx *lc, const yaml_node_t *k, const yaml_node_t *v)
{
	const char *section = scalar(k);
	int rc = check_mapping_keys(lc, v, section);
	if (rc)
		return rc;
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
	     p++) {
		rc = apply_pair(lc, section, yaml_document_get_node(lc->doc, p->key),
				yaml_document_get_node(lc->doc, p->value));
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_pool_id(const char *s, struct chi_pool_id *out)
{
	char buf[64];
	char *dot;
	uint64_t major, minor;

	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	dot = strchr(buf, '.');
	if (!dot)
		return -EINVAL;
	*dot = '\0';
	if (parse_u64(buf, &major) || parse_u64(dot + 1, &minor) || major > UINT32_MAX ||
	    minor > UINT32_MAX)
		return -EINVAL;
	out->major = (uint32_t)major;
	out->minor = (uint32_t)minor;
	return 0;
}

static int keep_kv(struct load_ctx *lc, struct config_compose_entry *e, const yaml_node_t *v,
		   const char *key, const char *val)
{
	if (!val)
		return fail(lc, v, key, "compose keys take single values, not lists or mappings");
	size_t need = strlen(key) + strlen(val) + 2;
	if (need > sizeof(e->kv) - e->kv_size)
		return fail(lc, v, key, "the entry's keys exceed %d bytes", CONFIG_KV_LEN);
	memcpy(e->kv + e->kv_size, key, strlen(key) + 1);
	memcpy(e->kv + e->kv_size + strlen(key) + 1, val, strlen(val) + 1);
	e->kv_size += (uint32_t)need;
	e->num_kv++;
	return 0;
}

static int compose_field(struct load_ctx *lc, struct config_compose_entry *e, const yaml_node_t *k,
			 const yaml_node_t *v)
{
	const char *key = scalar(k);
	const char *s = scalar(v);
	int rc = keep_kv(lc, e, v, key, s);
	if (rc)
		return rc;

	if (strcmp(key, "mod_name") == 0 || strcmp(key, "pool_name") == 0 ||
	    strcmp(key, "pool_query") == 0) {
		if (!s || !*s || strlen(s) >= CONFIG_NAME_LEN)
			return fail(lc, v, key, "expected a non-empty name under %d characters",
				    CONFIG_NAME_LEN);
		char *dst = key[0] == 'm' ? e->mod_name :
			    key[5] == 'n' ? e->pool_name : e->pool_query;
		snprintf(dst, CONFIG_NAME_LEN, "%s", s);
		if (dst == e->pool_query && chi_pool_query_parse(s, &e->query) != 0)
			return fail(lc, v, key,
				    "'%s' is not a pool query (local, dynamic, broadcast, "
				    "direct_id:N, direct_hash:N, range:OFF:COUNT, physical:NODE)",
				    s);
		return 0;
	}
	if (strcmp(key, "pool_id") == 0) {
		if (parse_pool_id(s, &e->pool_id) != 0)
			return fail(lc, v, key, "expected \"major.minor\", e.g. 512.0");
		e->has_pool_id = 1;
		return 0;
	}
	if (strcmp(key, "restart") == 0) {
		if (!s || (strcasecmp(s, "true") && strcasecmp(s, "false")))
			return fail(lc, v, key, "expected true or false");
		e->restart = strcasecmp(s, "true") == 0;
		return 0;
	}
	if (strcmp(key, "num_containers") == 0) {
		uint64_t n;
		if (parse_u64(s, &n) != 0 || n < 1 || n > 4096)
			return fail(lc, v, key, "expected a count in [1, 4096]");
		e->num_containers = (uint32_t)n;
		return 0;
	}
	return 0; /* module-specific keys: only handed to the module's create callback */
}

static int load_compose(struct load_ctx *lc, const yaml_node_t *v)
{
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(lc, v, "compose", "expected a list of pool definitions");
	size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	struct config_compose_entry *entries = calloc(n ? n : 1, sizeof(*entries));
	if (!entries)
		return fail(lc, v, "compose", "out of memory");
	free(lc->cfg->compose);
	lc->cfg->compose = entries;
	lc->cfg->num_compose = 0;

	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item = yaml_document_get_node(lc->doc, v->data.sequence.items.start[i]);
		struct config_compose_entry *e = &entries[i];
		int rc;
		if (item->type != YAML_MAPPING_NODE)
			return fail(lc, item, "compose", "entry %zu is not a mapping", i);
		rc = check_mapping_keys(lc, item, "compose");
		if (rc)
			return rc;
		e->line = (int)item->start_mark.line + 1;
		snprintf(e->pool_query, sizeof(e->pool_query), "local");
		e->query = chi_query_local();
		for (yaml_node_pair_t *p = item->data.mapping.pairs.start;
		     p < item->data.mapping.pairs.top; p++) {
			rc = compose_field(lc, e, yaml_document_get_node(lc->doc, p->key),
					   yaml_document_get_node(lc->doc, p->value));
			if (rc)
				return rc;
		}
		if (!e->mod_name[0] || !e->pool_name[0])
			return fail(lc, item, "compose",
				    "entry %zu needs both mod_name and pool_name", i);
		lc->cfg->num_compose++;
	}
	return 0;
}

static int load_root(struct load_ctx *lc, const yaml_node_t *root)
{
	int rc;

	if (!root)
		return 0; /* empty file: all defaults */
	if (root->type != YAML_MAPPING_NODE)
		return fail(lc, root, NULL, "the top level must be a mapping of sections");
	rc = check_mapping_keys(lc, root, "top level");
	if (rc)
		return rc;
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
		const yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
		if (strcmp(scalar(k), "compose") == 0)
			rc = load_compose(lc, v);
		else if (v->type == YAML_MAPPING_NODE)
			rc = load_section(lc, k, v);
		else if (v->type == YAML_SCALAR_NODE && v->data.scalar.length == 0 &&
			 v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			rc = 0; /* "section:" with nothing under it */
		else
			rc = apply_pair(lc, NULL, k, v);
		if (rc)
			return rc;
	}
	return 0;
}

/* networking.bootstrap against networking.hostfile. Upstream files name only the hostfile:
 * a file that sets networking.hostfile and not networking.bootstrap gets `hostfile`. */
static int check_bootstrap(struct load_ctx *lc)
{
	struct config *cfg = lc->cfg;

	if (!lc->bootstrap_line && lc->hostfile_given && cfg->hostfile[0] &&
	    strcmp(cfg->bootstrap, "none") == 0)
		snprintf(cfg->bootstrap, sizeof(cfg->bootstrap), "hostfile");
	if (strcmp(cfg->bootstrap, "hostfile") == 0 && !cfg->hostfile[0]) {
		snprintf(lc->err, lc->err_len,
			 "%s:%zu: networking.bootstrap: hostfile needs networking.hostfile, the "
			 "path of the hostfile",
			 lc->name, lc->bootstrap_line);
		return -EINVAL;
	}
	if (strcmp(cfg->bootstrap, "none") == 0 && cfg->hostfile[0])
		CHI_LOG_WARN("%s:%zu: networking.hostfile is ignored: networking.bootstrap is none "
			     "(a single node)",
			     lc->name, lc->bootstrap_line);
	return 0;
}

static int load_parser(struct config *cfg, const char *name, yaml_parser_t *parser, char *err,
		       size_t err_len)
{
	yaml_document_t doc;
	struct load_ctx lc = { .cfg = cfg, .name = name, .doc = &doc, .err = err,
			       .err_len = err_len };
	int rc;

	if (!yaml_parser_load(parser, &doc)) {
		snprintf(err, err_len, "%s:%zu:%zu: malformed YAML: %s", name,
			 parser->problem_mark.line + 1, parser->problem_mark.column + 1,
			 parser->problem ? parser->problem : "unknown error");
		return -EINVAL;
	}
	rc = load_root(&lc, yaml_document_get_root_node(&doc));
	yaml_document_delete(&doc);
	if (rc == 0)
		rc = check_bootstrap(&lc);
	if (rc == 0) {
		if (cfg->num_cpus && cfg->num_cpus < cfg->num_threads) {
			snprintf(err, err_len,
				 "%s: runtime.cpus lists %u cpus but runtime.num_threads is %u; "
				 "list one cpu per worker",
				 name, cfg->num_cpus, cfg->num_threads);
			return -EINVAL;
		}
		snprintf(cfg->source, sizeof(cfg->source), "%s", name);
	}
	return rc;
}

int config_load_string(struct config *cfg, const char *name, const char *text, size_t len,
			   char *err, size_t err_len)
{
	yaml_parser_t parser;

	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, err_len, "%s: cannot initialise the YAML parser", name);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	int rc = load_parser(cfg, name, &parser, err, err_len);
	yaml_parser_delete(&parser);
	return rc;
}

int config_load_file(struct config *cfg, const char *path, char *err, size_t err_len)
{
	yaml_parser_t parser;
	FILE *f = fopen(path, "re");

	if (!f) {
		int e = errno;
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, err_len, "%s: cannot initialise the YAML parser", path);
		return -ENOMEM;
	}
	yaml_parser_set_input_file(&parser, f);
	int rc = load_parser(cfg, path, &parser, err, err_len);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

int config_locate(char *path, size_t len)
{
	static const char *vars[] = { "CHI_SERVER_CONF", "WRP_RUNTIME_CONF" };

	for (size_t i = 0; i < 2; i++) {
		const char *v = getenv(vars[i]);
		if (v && *v) {
			snprintf(path, len, "%s", v);
			return access(v, F_OK) == 0 ? 1 : -ENOENT;
		}
	}
	const char *home = getenv("HOME");
	if (home && *home) {
		snprintf(path, len, "%s/.chimaera/chimaera.yaml", home);
		if (access(path, F_OK) == 0)
			return 1;
	}
	path[0] = '\0';
	return 0;
}

int config_load(struct config *cfg, const char *path, char *err, size_t err_len)
{
	char found[PATH_MAX];
	int rc = 0;

	config_defaults(cfg);
	if (!path) {
		rc = config_locate(found, sizeof(found));
		if (rc < 0) {
			snprintf(err, err_len, "%s (named by the environment): no such file", found);
			return rc;
		}
		path = rc == 1 ? found : NULL;
	}
	if (path && (rc = config_load_file(cfg, path, err, err_len)) != 0)
		return rc;
	const char *port = getenv("CHI_PORT");
	if (port && *port) {
		uint64_t p;
		if (parse_u64(port, &p) != 0 || p == 0 || p > 65535) {
			snprintf(err, err_len, "CHI_PORT='%s': expected a port in [1, 65535]", port);
			return -EINVAL;
		}
		cfg->port = (int)p;
	}
	return 0;
}

void config_run_dir(const struct config *cfg, char *buf, size_t len)
{
	if (cfg->run_dir[0])
		snprintf(buf, len, "%s", cfg->run_dir);
	else
		snprintf(buf, len, "/tmp/chimaera-%u", (unsigned)geteuid());
}

int config_data_dir(const struct config *cfg, char *buf, size_t len)
{
	char run_dir[PATH_MAX];
	int n;

	if (cfg->data_dir[0]) {
		n = snprintf(buf, len, "%s", cfg->data_dir);
	} else {
		config_run_dir(cfg, run_dir, sizeof(run_dir));
		n = snprintf(buf, len, "%s/data", run_dir);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* @s as a YAML double-quoted scalar, so that the dump reads back as what was loaded. */
static void dump_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\x%02x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

/* A compose key: plain when it is a plain word, else quoted. */
static void dump_key(FILE *out, const char *key)
{
	int plain = *key != '\0';
	for (const char *p = key; *p && plain; p++)
		plain = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.';
	if (plain)
		fputs(key, out);
	else
		dump_quoted(out, key);
}

/* The keys printed from the entry's fields; every other key is printed as it was given. */
static int dumped_from_fields(const char *key)
{
	return !strcmp(key, "mod_name") || !strcmp(key, "pool_name") ||
	       !strcmp(key, "pool_query") || !strcmp(key, "pool_id");
}

void config_dump(const struct config *cfg, FILE *out)
{
	static const char *levels[] = { "error", "warning", "info", "debug" };
	char run_dir[PATH_MAX], data_dir[PATH_MAX];

	config_run_dir(cfg, run_dir, sizeof(run_dir));
	if (config_data_dir(cfg, data_dir, sizeof(data_dir)) != 0)
		data_dir[0] = '\0'; /* cannot happen with PATH_MAX each; the start refuses it */
	fprintf(out, "# effective configuration (source: %s)\n",
		cfg->source[0] ? cfg->source : "built-in defaults");
	fprintf(out, "runtime:\n  num_threads: %u\n  queue_depth: %u\n  local_sched: %s\n",
		cfg->num_threads, cfg->queue_depth, cfg->local_sched);
	fprintf(out, "  first_busy_wait: %llu\n  conf_dir: %s\n  run_dir: %s\n",
		(unsigned long long)cfg->first_busy_wait_us, cfg->conf_dir, run_dir);
	fputs("  data_dir: ", out);
	dump_quoted(out, data_dir);
	fputc('\n', out);
	fprintf(out,
		"  stack_size: %llu\n  numa_node: %d\n  stall_report_ms: %u\n  steal_after_ms: %u\n",
		(unsigned long long)cfg->stack_size, cfg->numa_node, cfg->stall_report_ms,
		cfg->steal_after_ms);
	fprintf(out, "  destroy_cancel_after_ms: %u\n", cfg->destroy_cancel_after_ms);
	fprintf(out,
		"  client_max_timers: %u\n  client_max_coroutines: %u\n  client_max_subtasks: %u\n"
		"  client_max_pool_jobs: %u\n  client_max_memory: %llu\n"
		"  client_max_bad_submissions: %u\n",
		cfg->client_max_timers, cfg->client_max_coroutines, cfg->client_max_subtasks,
		cfg->client_max_pool_jobs, (unsigned long long)cfg->client_max_memory,
		cfg->client_max_bad_submissions);
	fprintf(out, "  cpus: [");
	for (uint32_t i = 0; i < cfg->num_cpus; i++)
		fprintf(out, "%s%d", i ? ", " : "", cfg->cpus[i]);
	fprintf(out,
		"]\nmemory:\n  client_data_segment_size: %llu\n  lanes_per_client: %u\n"
		"  max_clients: %u\n",
		(unsigned long long)cfg->client_data_segment_size, cfg->lanes_per_client,
		cfg->max_clients);
	fprintf(out, "networking:\n  port: %d\n  neighborhood_size: %u\n  bootstrap: %s\n",
		cfg->port, cfg->neighborhood_size, cfg->bootstrap);
	fputs("  hostfile: ", out);
	dump_quoted(out, cfg->hostfile);
	fprintf(out, "\n  wait_for_restart: %llu\n  heartbeat_ms: %llu\n  transport: %s\n"
		     "  bind: \"%s\"\n",
		(unsigned long long)cfg->wait_for_restart_s, (unsigned long long)cfg->heartbeat_ms,
		cfg->transport, cfg->bind);
	fputs("  secret_file: ", out);
	dump_quoted(out, cfg->secret_file);
	fprintf(out, "\n  rdma_device: \"%s\"\n", cfg->rdma_device);
	fprintf(out, "logging:\n  level: %s\n  file: \"%s\"\n", levels[cfg->log_level & 3],
		cfg->log_file);
	fprintf(out, "compose:%s\n", cfg->num_compose ? "" : " []");
	for (uint32_t i = 0; i < cfg->num_compose; i++) {
		const struct config_compose_entry *e = &cfg->compose[i];
		fprintf(out, "  - mod_name: ");
		dump_quoted(out, e->mod_name);
		fprintf(out, "\n    pool_name: ");
		dump_quoted(out, e->pool_name);
		fprintf(out, "\n    pool_query: ");
		dump_quoted(out, e->pool_query);
		fputc('\n', out);
		if (e->has_pool_id)
			fprintf(out, "    pool_id: \"%u.%u\"\n", e->pool_id.major, e->pool_id.minor);
		/* num_containers, restart and the module's own keys, which only its create
		 * callback reads: an effective config that dropped them would hide half the
		 * entry. */
		for (uint32_t off = 0, k = 0; off < e->kv_size && k < e->num_kv; k++) {
			const char *key = e->kv + off;
			const char *val = key + strlen(key) + 1;
			off += (uint32_t)(strlen(key) + strlen(val) + 2);
			if (dumped_from_fields(key))
				continue;
			fputs("    ", out);
			dump_key(out, key);
			fputs(": ", out);
			dump_quoted(out, val);
			fputc('\n', out);
		}
	}
}
