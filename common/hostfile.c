/* Hostfile syntax (docs/config.md, "Hostfile"): one host per line, '#' comments, bracket
 * ranges expanded in order, IPv4 and bare IPv6 literals, names, an optional ":port". Every
 * error names name:line and the reason; nothing here resolves a name. */
#include "hostfile.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Numbers in a range have at most this many digits, so every value fits a uint32_t. */
#define MAX_DIGITS 9
/* Longest expanded "host:port" we assemble before checking it. */
#define MAX_EXPANDED (HOSTFILE_HOST_MAX + sizeof(":65535"))
/* A group holds at least one digit and a separator or bracket per item. */
#define MAX_ITEMS  (HOSTFILE_MAX_LINE / 2)
#define MAX_GROUPS (HOSTFILE_MAX_LINE / 3)

struct range_item {
	uint32_t lo, hi;
	int width; /* digits of lo as written: zero-padding is kept */
};

struct range_group {
	size_t open, close;    /* offsets of '[' and ']' in the line */
	uint32_t first, count; /* its items in builder.items */
	uint32_t item, value;  /* where the expansion stands */
};

struct builder {
	const char *name;
	char *err;
	size_t err_len;
	struct hostfile_entry *entries;
	size_t *offs; /* each entry's host in strings, until the end fixes the pointers */
	uint32_t n, cap;
	char *strings;
	size_t used, strings_cap;
	struct range_item *items;
	struct range_group *groups;
};

static int fail(struct builder *b, uint32_t line, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct builder *b, uint32_t line, int rc, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(b->err, b->err_len, "%s:%u: %s", b->name, line, what);
	else
		snprintf(b->err, b->err_len, "%s: %s", b->name, what);
	return rc;
}

/* @s for a message: long lines and names are cut, so the reason still fits. */
#define CLIP_LEN 72
#define CLIP(s)	 clip((s), (char[CLIP_LEN + 4]){0})

static const char *clip(const char *s, char *buf)
{
	if (strlen(s) <= CLIP_LEN)
		return s;
	memcpy(buf, s, CLIP_LEN - 3);
	memcpy(buf + CLIP_LEN - 3, "...", 4);
	return buf;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* 1 when @s is a bare IPv6 literal. */
static int is_ipv6(const char *s)
{
	struct in6_addr a;
	return strchr(s, ':') && inet_pton(AF_INET6, s, &a) == 1;
}

/* A name the resolver may be asked about: letters, digits, '-', '_' and dots between
 * labels of 1..63 characters, no label starting with '-', one trailing dot allowed. */
static const char *bad_name(const char *s)
{
	size_t label = 0, len = strlen(s);

	if (len > HOSTFILE_HOST_MAX)
		return "is longer than 253 characters";
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return "has an empty label ('..' or a leading '.')";
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return "may hold only letters, digits, '-', '_' and '.'";
		if (label == 0 && *p == '-')
			return "has a label that starts with '-'";
		if (++label > 63)
			return "has a label longer than 63 characters";
	}
	return NULL;
}

static int grow(struct builder *b)
{
	uint32_t cap = b->cap ? b->cap * 2 : 64;
	struct hostfile_entry *e = realloc(b->entries, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	b->entries = e;
	size_t *o = realloc(b->offs, cap * sizeof(*o));
	if (!o)
		return -ENOMEM;
	b->offs = o;
	b->cap = cap;
	return 0;
}

static int keep_string(struct builder *b, const char *s, size_t len, size_t *off)
{
	if (b->used + len + 1 > b->strings_cap) {
		size_t cap = b->strings_cap ? b->strings_cap * 2 : 4096;
		while (cap < b->used + len + 1)
			cap *= 2;
		char *p = realloc(b->strings, cap);
		if (!p)
			return -ENOMEM;
		b->strings = p;
		b->strings_cap = cap;
	}
	memcpy(b->strings + b->used, s, len);
	b->strings[b->used + len] = '\0';
	*off = b->used;
	b->used += len + 1;
	return 0;
}

static int add_entry(struct builder *b, uint32_t line, const char *host, size_t len, uint16_t port,
		     enum hostfile_kind kind)
{
	size_t off;

	if (b->n >= HOSTFILE_MAX_NODES) /* the expansion count stops this first */
		return fail(b, line, -E2BIG, "more than %u hosts in all", HOSTFILE_MAX_NODES);
	if (b->n == b->cap && grow(b) != 0)
		return fail(b, line, -ENOMEM, "out of memory");
	if (keep_string(b, host, len, &off) != 0)
		return fail(b, line, -ENOMEM, "out of memory");
	b->offs[b->n] = off;
	b->entries[b->n] = (struct hostfile_entry){.line = line, .port = port, .kind = kind};
	b->n++;
	return 0;
}

/* One host after expansion: "ipv4[:port]" or "name[:port]". @from is the line's text, for
 * messages about hosts that a range made. */
static int add_host(struct builder *b, uint32_t line, const char *s, const char *from)
{
	const char *colon = strchr(s, ':');
	size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
	uint16_t port = 0;
	char host[MAX_EXPANDED];
	char via[256] = "";

	if (strcmp(s, from) != 0)
		snprintf(via, sizeof(via), " (from '%s')", CLIP(from));
	if (colon) {
		const char *p = colon + 1;
		unsigned long v = 0;
		if (strchr(p, ':'))
			return fail(b, line, -EINVAL,
				    "'%s'%s is neither an IPv6 address nor host[:port]", CLIP(s),
				    via);
		if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p) ||
		    (v = strtoul(p, NULL, 10)) == 0 || v > 65535)
			return fail(b, line, -EINVAL, "bad port '%s' in '%s'%s: expected 1..65535",
				    CLIP(p), CLIP(s), via);
		if (hlen == 0)
			return fail(b, line, -EINVAL, "'%s'%s: no host before the port", CLIP(s),
				    via);
		port = (uint16_t)v;
	}
	if (hlen >= sizeof(host))
		return fail(b, line, -EINVAL, "host name%s longer than %u characters", via,
			    HOSTFILE_HOST_MAX);
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	if (strspn(host, "0123456789.") == hlen) {
		struct in_addr a;
		if (inet_pton(AF_INET, host, &a) != 1)
			return fail(b, line, -EINVAL,
				    "'%s'%s is not an IPv4 address (four numbers 0..255 "
				    "written without leading zeros, like 127.0.0.1)",
				    CLIP(host), via);
		return add_entry(b, line, host, hlen, port, HOSTFILE_IPV4);
	}
	const char *why = bad_name(host);
	if (why)
		return fail(b, line, -EINVAL, "'%s'%s is not a host name: it %s", CLIP(host), via,
			    why);
	return add_entry(b, line, host, hlen, port, HOSTFILE_NAME);
}

/* A decimal of 1..MAX_DIGITS digits at *p. */
static int parse_number(const char **p, const char *end, uint32_t *v, int *width)
{
	const char *s = *p;
	uint32_t x = 0;

	while (*p < end && isdigit((unsigned char)**p)) {
		if (*p - s == MAX_DIGITS)
			return -1;
		x = x * 10 + (uint32_t)(**p - '0');
		(*p)++;
	}
	if (*p == s)
		return -1;
	*v = x;
	*width = (int)(*p - s);
	return 0;
}

/* The items of the group between @open and @close in @s; adds to *total the hosts it makes. */
static int parse_group(struct builder *b, uint32_t line, const char *s, struct range_group *g,
		       uint32_t *num_items, uint64_t *count)
{
	const char *p = s + g->open + 1, *end = s + g->close;
	int len = (int)(g->close - g->open + 1);
	const char *text = s + g->open;

	*count = 0;
	g->first = *num_items;
	g->count = 0;
	if (p == end)
		return fail(b, line, -EINVAL, "empty brackets '[]' in '%s'", CLIP(s));
	for (;;) {
		const char *item = p;
		struct range_item *it = &b->items[*num_items];
		int hw;

		if (*num_items == MAX_ITEMS) /* the line length keeps below it */
			goto bad;
		if (parse_number(&p, end, &it->lo, &it->width) != 0)
			goto bad;
		it->hi = it->lo;
		if (p < end && *p == '-') {
			p++;
			if (parse_number(&p, end, &it->hi, &hw) != 0)
				goto bad;
			if (it->hi < it->lo)
				return fail(b, line, -EINVAL, "reversed range %.*s in '%s'",
					    (int)(p - item), item, CLIP(s));
		}
		if (p < end && *p != ',')
			goto bad;
		*count += (uint64_t)it->hi - it->lo + 1;
		(*num_items)++;
		g->count++;
		if (p == end)
			return 0;
		p++; /* ',' */
		if (p == end)
			goto bad;
	}
bad:
	return fail(b, line, -EINVAL,
		    "bad range %.*s in '%s': expected numbers (at most %d digits) and "
		    "ranges N-M, separated by commas, like [1-3,7,10-11]",
		    len < CLIP_LEN ? len : CLIP_LEN, text, CLIP(s), MAX_DIGITS);
}

/* Expand @s ("node[01-04]-ib[0-1]:9500") into hosts, leftmost group slowest. */
static int expand(struct builder *b, uint32_t line, const char *s)
{
	uint32_t num_groups = 0, num_items = 0;
	uint64_t total = 1;
	size_t len = strlen(s);
	int rc;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == ']')
			return fail(b, line, -EINVAL, "']' without '[' in '%s'", CLIP(s));
		if (s[i] != '[')
			continue;
		size_t j = i + 1;
		while (j < len && s[j] != ']' && s[j] != '[')
			j++;
		if (j == len)
			return fail(b, line, -EINVAL, "'[' without ']' in '%s'", CLIP(s));
		if (s[j] == '[')
			return fail(b, line, -EINVAL, "nested '[' in '%s'", CLIP(s));
		if (num_groups == MAX_GROUPS) /* the line length keeps below it */
			return fail(b, line, -EINVAL, "too many '[' groups in '%s'", CLIP(s));
		struct range_group *g = &b->groups[num_groups++];
		uint64_t count;
		g->open = i;
		g->close = j;
		rc = parse_group(b, line, s, g, &num_items, &count);
		if (rc)
			return rc;
		/* total <= HOSTFILE_MAX_NODES + 1 and count < 2^43: no overflow */
		total *= count;
		if (total > HOSTFILE_MAX_NODES)
			total = HOSTFILE_MAX_NODES + 1;
		i = j;
	}
	if (total > HOSTFILE_MAX_NODES)
		return fail(b, line, -E2BIG, "range too large: '%s' expands to more than %u hosts",
			    CLIP(s), HOSTFILE_MAX_NODES);
	if (total > HOSTFILE_MAX_NODES - b->n && num_groups == 0)
		return fail(b, line, -E2BIG, "more than %u hosts in all", HOSTFILE_MAX_NODES);
	if (total > HOSTFILE_MAX_NODES - b->n)
		return fail(b, line, -E2BIG,
			    "range too large: '%s' expands to %llu hosts, which with the %u "
			    "before it makes more than %u",
			    CLIP(s), (unsigned long long)total, b->n, HOSTFILE_MAX_NODES);
	if (num_groups == 0)
		return add_host(b, line, s, s);

	for (uint32_t k = 0; k < num_groups; k++) {
		b->groups[k].item = b->groups[k].first;
		b->groups[k].value = b->items[b->groups[k].first].lo;
	}
	for (;;) {
		char host[MAX_EXPANDED];
		size_t n = 0, at = 0;
		int too_long = 0;
		for (uint32_t k = 0; k <= num_groups && !too_long; k++) {
			size_t stop = k < num_groups ? b->groups[k].open : len;
			size_t piece = stop - at;
			char num[MAX_DIGITS + 1] = "";
			if (k < num_groups) {
				const struct range_group *g = &b->groups[k];
				snprintf(num, sizeof(num), "%0*u", b->items[g->item].width,
					 g->value);
			}
			if (n + piece + strlen(num) >= sizeof(host)) {
				too_long = 1;
				break;
			}
			memcpy(host + n, s + at, piece);
			n += piece;
			memcpy(host + n, num, strlen(num));
			n += strlen(num);
			if (k < num_groups)
				at = b->groups[k].close + 1;
		}
		if (too_long)
			return fail(b, line, -EINVAL,
				    "'%s' makes a host name longer than %u "
				    "characters",
				    CLIP(s), HOSTFILE_HOST_MAX);
		host[n] = '\0';
		rc = add_host(b, line, host, s);
		if (rc)
			return rc;
		/* Next: the rightmost group moves fastest. */
		uint32_t k = num_groups;
		while (k > 0) {
			struct range_group *g = &b->groups[k - 1];
			if (g->value < b->items[g->item].hi) {
				g->value++;
				break;
			}
			if (g->item + 1 < g->first + g->count) {
				g->item++;
				g->value = b->items[g->item].lo;
				break;
			}
			g->item = g->first;
			g->value = b->items[g->item].lo;
			k--;
		}
		if (k == 0)
			return 0;
	}
}

static int parse_line(struct builder *b, uint32_t line, const char *raw, size_t len)
{
	char buf[HOSTFILE_MAX_LINE + 1];
	char *s = buf, *end;

	if (len > HOSTFILE_MAX_LINE)
		return fail(b, line, -EINVAL, "line too long (more than %u bytes)",
			    HOSTFILE_MAX_LINE);
	if (memchr(raw, '\0', len))
		return fail(b, line, -EINVAL, "NUL byte in the line");
	memcpy(buf, raw, len);
	buf[len] = '\0';
	char *hash = strchr(buf, '#');
	if (hash)
		*hash = '\0';
	while (is_blank(*s))
		s++;
	end = s + strlen(s);
	while (end > s && is_blank(end[-1]))
		*--end = '\0';
	if (!*s)
		return 0;
	for (const char *p = s; *p; p++) {
		if (is_blank(*p))
			return fail(b, line, -EINVAL,
				    "more than one word in '%s': one host per line ('#' starts a "
				    "comment)",
				    CLIP(s));
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
			return fail(b, line, -EINVAL, "unexpected byte 0x%02x in '%s'",
				    (unsigned char)*p, CLIP(s));
	}

	/* A bare IPv6 literal: brackets would collide with ranges, so IPv6 is never
	 * bracketed, never range-expanded and takes no port. */
	if (is_ipv6(s))
		return add_entry(b, line, s, strlen(s), 0, HOSTFILE_IPV6);
	if (s[0] == '[') {
		char inner[HOSTFILE_MAX_LINE + 1];
		char *close = strchr(s, ']');
		if (close) {
			snprintf(inner, sizeof(inner), "%.*s", (int)(close - s - 1), s + 1);
			if (is_ipv6(inner))
				return fail(b, line, -EINVAL,
					    "'%s': write IPv6 addresses bare, without brackets "
					    "(brackets are ranges) and without a port",
					    CLIP(s));
		}
	}
	return expand(b, line, s);
}

/* Canonical form for duplicate detection: the address as inet_ntop writes it, a name in
 * lower case (DNS ignores case); then ":port". */
static void canonical(const struct hostfile_entry *e, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN > MAX_EXPANDED ? INET6_ADDRSTRLEN : MAX_EXPANDED];
	unsigned char a[16];
	int af = e->kind == HOSTFILE_IPV4 ? AF_INET : AF_INET6;

	if (e->kind != HOSTFILE_NAME && inet_pton(af, e->host, a) == 1 &&
	    inet_ntop(af, a, host, sizeof(host))) {
		snprintf(buf, len, "%s:%u", host, e->port);
		return;
	}
	size_t i = 0;
	for (; e->host[i] && i + 1 < sizeof(host); i++)
		host[i] = (char)tolower((unsigned char)e->host[i]);
	host[i] = '\0';
	snprintf(buf, len, "%s:%u", host, e->port);
}

struct dup_key {
	char *key;
	uint32_t idx;
};

static int dup_cmp(const void *pa, const void *pb)
{
	const struct dup_key *a = pa, *b = pb;
	int c = strcmp(a->key, b->key);
	if (c)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* A duplicate is an error at the line of its second appearance; of several, the earliest. */
static int check_duplicates(struct builder *b)
{
	struct dup_key *keys = calloc(b->n, sizeof(*keys));
	char *store = malloc((size_t)b->n * (MAX_EXPANDED + 8));
	uint32_t first = UINT32_MAX, second = UINT32_MAX;
	int rc = 0;

	if (!keys || !store) {
		rc = fail(b, 0, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < b->n; i++) {
		keys[i].key = store + (size_t)i * (MAX_EXPANDED + 8);
		keys[i].idx = i;
		canonical(&b->entries[i], keys[i].key, MAX_EXPANDED + 8);
	}
	qsort(keys, b->n, sizeof(*keys), dup_cmp);
	for (uint32_t i = 1; i < b->n; i++) {
		if (strcmp(keys[i].key, keys[i - 1].key) != 0)
			continue;
		/* keys[i - 1] is the first of its run only when the one before differs. */
		if (i >= 2 && strcmp(keys[i - 2].key, keys[i].key) == 0)
			continue;
		if (second == UINT32_MAX || keys[i].idx < second) {
			second = keys[i].idx;
			first = keys[i - 1].idx;
		}
	}
	if (second != UINT32_MAX) {
		const struct hostfile_entry *a = &b->entries[first], *d = &b->entries[second];
		char port[16] = "";
		if (d->port)
			snprintf(port, sizeof(port), ":%u", d->port);
		rc = fail(b, d->line, -EINVAL,
			  "duplicate host '%s%s': node %u (line %u, '%s') is the same host",
			  CLIP(d->host), port, first, a->line, CLIP(a->host));
	}
out:
	free(keys);
	free(store);
	return rc;
}

void hostfile_fini(struct hostfile *hf)
{
	free(hf->entries);
	free(hf->strings);
	memset(hf, 0, sizeof(*hf));
}

int hostfile_parse_string(const char *name, const char *text, size_t len, struct hostfile *hf,
			  char *err, size_t err_len)
{
	struct builder b = {.name = name, .err = err, .err_len = err_len};
	uint32_t line = 0;
	size_t pos = 0;
	int rc = 0;

	memset(hf, 0, sizeof(*hf));
	if (err_len)
		err[0] = '\0';
	b.items = malloc(MAX_ITEMS * sizeof(*b.items));
	b.groups = malloc(MAX_GROUPS * sizeof(*b.groups));
	if (!b.items || !b.groups) {
		rc = fail(&b, 0, -ENOMEM, "out of memory");
		goto out;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		/* Line numbers past UINT32_MAX cannot happen: HOSTFILE_MAX_FILE is far less. */
		rc = parse_line(&b, ++line, text + pos, n);
		if (rc)
			goto out;
		pos += n + (nl ? 1 : 0);
	}
	if (b.n == 0) {
		rc = fail(&b, 0, -EINVAL, "no hosts (the file is empty or holds only comments)");
		goto out;
	}
	for (uint32_t i = 0; i < b.n; i++)
		b.entries[i].host = b.strings + b.offs[i];
	rc = check_duplicates(&b);
	if (rc)
		goto out;
	hf->entries = b.entries;
	hf->num_entries = b.n;
	hf->strings = b.strings;
	b.entries = NULL;
	b.strings = NULL;
out:
	free(b.entries);
	free(b.strings);
	free(b.offs);
	free(b.items);
	free(b.groups);
	return rc;
}

int hostfile_parse_file(const char *path, struct hostfile *hf, char *err, size_t err_len)
{
	char *text = NULL;
	size_t got = 0, cap = 0;
	int rc, fd;

	memset(hf, 0, sizeof(*hf));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	/* Read to the end, not to the size fstat gives: a pipe (--hostfile <(...)) works. */
	for (;;) {
		if (got == cap) {
			if (cap > HOSTFILE_MAX_FILE) {
				rc = -EFBIG;
				snprintf(err, err_len, "%s: larger than %u MiB", path,
					 HOSTFILE_MAX_FILE >> 20);
				goto out;
			}
			cap = cap ? cap * 2 : 65536;
			char *p = realloc(text, cap + 1);
			if (!p) {
				rc = -ENOMEM;
				snprintf(err, err_len, "%s: out of memory", path);
				goto out;
			}
			text = p;
		}
		ssize_t n = read(fd, text + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, err_len, "%s: cannot read: %s", path, strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > HOSTFILE_MAX_FILE) {
		rc = -EFBIG;
		snprintf(err, err_len, "%s: larger than %u MiB", path, HOSTFILE_MAX_FILE >> 20);
		goto out;
	}
	rc = hostfile_parse_string(path, text ? text : "", got, hf, err, err_len);
out:
	free(text);
	close(fd);
	return rc;
}
