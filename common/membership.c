/* Membership: the hostfile's entries resolved to addresses, and which node this process is.
 * The rules are written out in docs/config.md ("Hostfile", "Which node am I"). */
#include "membership.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* How many nodes a message lists before "and N more". */
#define LIST_MAX 8

static int failf(char *err, size_t err_len, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int failf(char *err, size_t err_len, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- addresses ---- */

/* IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address: one endpoint, one spelling. */
static void addr_normalise(struct membership_addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (a->family == AF_INET6 && memcmp(a->bytes, mapped, sizeof(mapped)) == 0) {
		memmove(a->bytes, a->bytes + 12, 4);
		memset(a->bytes + 4, 0, 12);
		a->family = AF_INET;
		a->scope_id = 0;
	}
}

static int addr_from_sockaddr(const struct sockaddr *sa, struct membership_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		a->family = AF_INET;
		memcpy(a->bytes, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		a->family = AF_INET6;
		memcpy(a->bytes, &in6->sin6_addr, 16);
		a->scope_id = in6->sin6_scope_id;
		addr_normalise(a);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* NULL for an address a node can have; else why not. */
static const char *addr_unusable(const struct membership_addr *a)
{
	static const uint8_t zero[16];

	if (memcmp(a->bytes, zero, a->family == AF_INET ? 4 : 16) == 0)
		return "the unspecified address";
	if (a->family == AF_INET && (a->bytes[0] & 0xf0) == 0xe0)
		return "a multicast address";
	if (a->family == AF_INET && memcmp(a->bytes, "\xff\xff\xff\xff", 4) == 0)
		return "the broadcast address";
	if (a->family == AF_INET6 && a->bytes[0] == 0xff)
		return "a multicast address";
	return NULL;
}

static int addr_eq(const struct membership_addr *a, const struct membership_addr *b)
{
	return a->family == b->family && memcmp(a->bytes, b->bytes, 16) == 0 &&
	       a->scope_id == b->scope_id;
}

int membership_addr_parse(const char *text, struct membership_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (text && inet_pton(AF_INET, text, out->bytes) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (text && inet_pton(AF_INET6, text, out->bytes) == 1) {
		out->family = AF_INET6;
		addr_normalise(out);
		return 0;
	}
	return -EINVAL;
}

void membership_addr_format(const struct membership_addr *a, char *buf, size_t len)
{
	char text[INET6_ADDRSTRLEN];

	if (!inet_ntop(a->family, a->bytes, text, sizeof(text))) {
		snprintf(buf, len, "?");
		return;
	}
	if (a->family == AF_INET6 && a->scope_id)
		snprintf(buf, len, "%s%%%u", text, a->scope_id);
	else
		snprintf(buf, len, "%s", text);
}

socklen_t membership_addr_sockaddr(const struct membership_addr *a, uint16_t port,
				   struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)out;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, a->bytes, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	memcpy(&in6->sin6_addr, a->bytes, 16);
	in6->sin6_scope_id = a->scope_id;
	return sizeof(*in6);
}

/* ---- resolution ---- */

static int default_resolve(void *ctx, const char *host, const struct addrinfo *hints,
			   struct addrinfo **res)
{
	(void)ctx;
	return getaddrinfo(host, NULL, hints, res);
}

void membership_fini(struct membership *m)
{
	free(m->nodes);
	free(m->addrs);
	free(m->strings);
	memset(m, 0, sizeof(*m));
	m->self = MEMBERSHIP_NO_NODE;
}

/* The addresses of a name, numeric forms first; appended to @out (at most
 * MEMBERSHIP_MAX_ADDRS, duplicates dropped). */
static int resolve_name(const struct membership_opts *o, const char *host,
			struct membership_addr *out, uint32_t *n, char *why, size_t why_len)
{
	membership_resolve_fn *fn = o && o->resolve ? o->resolve : default_resolve;
	void *ctx = o ? o->resolve_ctx : NULL;
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res = NULL;
	int rc = fn(ctx, host, &hints, &res);

	if (rc == EAI_NONAME) {
		hints.ai_flags = 0; /* not AI_ADDRCONFIG: see membership.h */
		res = NULL;
		rc = fn(ctx, host, &hints, &res);
	}
	if (rc != 0) {
		snprintf(why, why_len, "cannot resolve: %s",
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -EINVAL;
	}
	*n = 0;
	for (const struct addrinfo *ai = res; ai && *n < MEMBERSHIP_MAX_ADDRS; ai = ai->ai_next) {
		struct membership_addr a;
		int seen = 0;
		if (!ai->ai_addr || addr_from_sockaddr(ai->ai_addr, &a) != 0 || addr_unusable(&a))
			continue;
		for (uint32_t i = 0; i < *n && !seen; i++)
			seen = addr_eq(&out[i], &a);
		if (!seen)
			out[(*n)++] = a;
	}
	freeaddrinfo(res);
	if (*n == 0) {
		snprintf(why, why_len, "resolves to no usable IPv4 or IPv6 address");
		return -EINVAL;
	}
	return 0;
}

struct endpoint {
	struct membership_addr addr;
	uint16_t port;
	uint32_t node;
};

static int endpoint_cmp(const void *pa, const void *pb)
{
	const struct endpoint *a = pa, *b = pb;
	int c;

	if (a->addr.family != b->addr.family)
		return a->addr.family < b->addr.family ? -1 : 1;
	if ((c = memcmp(a->addr.bytes, b->addr.bytes, 16)) != 0)
		return c;
	if (a->addr.scope_id != b->addr.scope_id)
		return a->addr.scope_id < b->addr.scope_id ? -1 : 1;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	return a->node < b->node ? -1 : a->node > b->node;
}

/* Two nodes may not share an address and port: both would bind it, and a peer could not
 * tell them apart. Reported at the later node; of several, the earliest such node. */
static int check_endpoints(struct membership *m, char *err, size_t err_len)
{
	size_t total = 0, k = 0;
	uint32_t later = MEMBERSHIP_NO_NODE, earlier = 0;
	struct membership_addr shared = {0};

	for (uint32_t i = 0; i < m->num_nodes; i++)
		total += m->nodes[i].num_addrs;
	struct endpoint *ep = calloc(total ? total : 1, sizeof(*ep));
	if (!ep)
		return failf(err, err_len, -ENOMEM, "%s: out of memory", m->source);
	for (uint32_t i = 0; i < m->num_nodes; i++)
		for (uint32_t j = 0; j < m->nodes[i].num_addrs; j++)
			ep[k++] = (struct endpoint){m->nodes[i].addrs[j], m->nodes[i].port, i};
	qsort(ep, total, sizeof(*ep), endpoint_cmp);
	for (size_t i = 1; i < total; i++) {
		if (!addr_eq(&ep[i].addr, &ep[i - 1].addr) || ep[i].port != ep[i - 1].port)
			continue;
		/* Sorted by node within a run: ep[i - 1] is a node before ep[i]. */
		if (ep[i].node != ep[i - 1].node && ep[i].node < later) {
			later = ep[i].node;
			earlier = ep[i - 1].node;
			shared = ep[i].addr;
		}
	}
	free(ep);
	if (later == MEMBERSHIP_NO_NODE)
		return 0;
	char text[MEMBERSHIP_ADDR_STRLEN];
	const struct membership_node *a = &m->nodes[earlier], *b = &m->nodes[later];
	membership_addr_format(&shared, text, sizeof(text));
	if (b->line == 0) /* no hostfile: nodes from endpoints (a launcher's ranks) */
		return failf(err, err_len, -EINVAL,
			     "%s: node %u is at %s, the same address and port as node %u; two "
			     "nodes on one machine need different addresses or ports",
			     m->source, later, b->host, earlier);
	return failf(err, err_len, -EINVAL,
		     "%s:%u: %s is %s port %u, the same address and port as node %u (line %u: "
		     "%s); two nodes on one machine need different addresses or ports",
		     m->source, b->line, b->host, text, b->port, earlier, a->line, a->host);
}

int membership_resolve(const struct hostfile *hf, const char *source,
		       const struct membership_opts *opts, struct membership *m, char *err,
		       size_t err_len)
{
	size_t strings = 0, used = 0;
	uint32_t num_addrs = 0, cap = 0;
	uint32_t *first = NULL;
	int rc;

	memset(m, 0, sizeof(*m));
	m->self = MEMBERSHIP_NO_NODE;
	snprintf(m->source, sizeof(m->source), "%s", source ? source : "hostfile");
	for (uint32_t i = 0; i < hf->num_entries; i++)
		strings += strlen(hf->entries[i].host) + 1;
	m->nodes = calloc(hf->num_entries ? hf->num_entries : 1, sizeof(*m->nodes));
	m->strings = malloc(strings ? strings : 1);
	first = calloc(hf->num_entries ? hf->num_entries : 1, sizeof(*first));
	if (!m->nodes || !m->strings || !first) {
		rc = failf(err, err_len, -ENOMEM, "%s: out of memory", m->source);
		goto fail;
	}
	m->num_nodes = hf->num_entries;
	for (uint32_t i = 0; i < hf->num_entries; i++) {
		const struct hostfile_entry *e = &hf->entries[i];
		struct membership_node *node = &m->nodes[i];
		struct membership_addr found[MEMBERSHIP_MAX_ADDRS];
		uint32_t n = 0;
		char why[256];

		size_t len = strlen(e->host) + 1;
		memcpy(m->strings + used, e->host, len);
		used += len;
		node->line = e->line;
		node->port = e->port ? e->port : (opts ? opts->default_port : 0);
		if (e->kind != HOSTFILE_NAME) {
			/* A literal is its own address: no lookup. */
			const char *bad = NULL;
			if (membership_addr_parse(e->host, &found[0]) != 0 ||
			    (bad = addr_unusable(&found[0])) != NULL) {
				rc = failf(err, err_len, -EINVAL,
					   "%s:%u: %s: %s, not a node's address", m->source,
					   e->line, e->host, bad ? bad : "not an address");
				goto fail;
			}
			n = 1;
		} else if (resolve_name(opts, e->host, found, &n, why, sizeof(why)) != 0) {
			rc = failf(err, err_len, -EINVAL, "%s:%u: %s: %s", m->source, e->line,
				   e->host, why);
			goto fail;
		}
		if (num_addrs + n > cap) {
			uint32_t ncap = cap ? cap * 2 : 64;
			while (ncap < num_addrs + n)
				ncap *= 2;
			struct membership_addr *p = realloc(m->addrs, ncap * sizeof(*p));
			if (!p) {
				rc = failf(err, err_len, -ENOMEM, "%s: out of memory", m->source);
				goto fail;
			}
			m->addrs = p;
			cap = ncap;
		}
		first[i] = num_addrs;
		memcpy(m->addrs + num_addrs, found, n * sizeof(found[0]));
		num_addrs += n;
		node->num_addrs = n;
	}
	/* The storage no longer moves: point into it. */
	used = 0;
	for (uint32_t i = 0; i < m->num_nodes; i++) {
		m->nodes[i].host = m->strings + used;
		used += strlen(m->nodes[i].host) + 1;
		m->nodes[i].addrs = m->addrs + first[i];
	}
	free(first);
	rc = check_endpoints(m, err, err_len);
	if (rc)
		membership_fini(m);
	return rc;
fail:
	free(first);
	membership_fini(m);
	return rc;
}

/* ---- endpoints ---- */

void membership_endpoint_format(const struct membership_addr *a, uint16_t port, char *buf,
				size_t len)
{
	char text[MEMBERSHIP_ADDR_STRLEN];

	membership_addr_format(a, text, sizeof(text));
	if (a->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", text, port);
	else
		snprintf(buf, len, "%s:%u", text, port);
}

int membership_endpoint_parse(const char *text, struct membership_addr *a, uint16_t *port)
{
	char host[MEMBERSHIP_ADDR_STRLEN];
	const char *colon, *start = text;
	size_t n;

	if (!text)
		return -EINVAL;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		start = text + 1;
		n = (size_t)(close - start);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		/* A bare IPv6 address has colons of its own: it must be bracketed. */
		if (!colon || memchr(text, ':', (size_t)(colon - text)))
			return -EINVAL;
		n = (size_t)(colon - text);
	}
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, start, n);
	host[n] = '\0';
	const char *digits = colon + 1;
	size_t nd = strlen(digits);
	if (nd == 0 || nd > 5 || strspn(digits, "0123456789") != nd)
		return -EINVAL;
	unsigned long p = strtoul(digits, NULL, 10);
	if (p == 0 || p > 65535)
		return -EINVAL;
	/* "fe80::1%2": the scope is a number here (an interface index, as formatted). */
	uint32_t scope = 0;
	char *pct = strchr(host, '%');
	if (pct) {
		size_t ns = strlen(pct + 1);
		if (ns == 0 || ns > 10 || strspn(pct + 1, "0123456789") != ns)
			return -EINVAL;
		unsigned long long v = strtoull(pct + 1, NULL, 10);
		if (v > UINT32_MAX)
			return -EINVAL;
		scope = (uint32_t)v;
		*pct = '\0';
	}
	if (membership_addr_parse(host, a) != 0 || addr_unusable(a) ||
	    (pct && a->family != AF_INET6) || (text[0] == '[') != (a->family == AF_INET6))
		return -EINVAL;
	a->scope_id = scope;
	*port = (uint16_t)p;
	return 0;
}

int membership_from_endpoints(const char *const *endpoints, uint32_t n, uint32_t self,
			      const char *source, struct membership *m, char *err, size_t err_len)
{
	size_t strings = 0, used = 0;
	int rc;

	memset(m, 0, sizeof(*m));
	m->self = MEMBERSHIP_NO_NODE;
	snprintf(m->source, sizeof(m->source), "%s", source ? source : "endpoints");
	if (n == 0 || self >= n)
		return failf(err, err_len, -EINVAL, "%s: node %u of %u nodes", m->source, self,
			     n);
	for (uint32_t i = 0; i < n; i++)
		strings += strlen(endpoints[i]) + 1;
	m->nodes = calloc(n, sizeof(*m->nodes));
	m->addrs = calloc(n, sizeof(*m->addrs));
	m->strings = malloc(strings);
	if (!m->nodes || !m->addrs || !m->strings) {
		rc = failf(err, err_len, -ENOMEM, "%s: out of memory", m->source);
		goto fail;
	}
	m->num_nodes = n;
	for (uint32_t i = 0; i < n; i++) {
		struct membership_node *node = &m->nodes[i];
		size_t len = strlen(endpoints[i]) + 1;
		if (membership_endpoint_parse(endpoints[i], &m->addrs[i], &node->port) != 0) {
			rc = failf(err, err_len, -EINVAL,
				   "%s: node %u: '%.80s' is not an endpoint (address:port)",
				   m->source, i, endpoints[i]);
			goto fail;
		}
		memcpy(m->strings + used, endpoints[i], len);
		node->host = m->strings + used;
		used += len;
		node->addrs = &m->addrs[i];
		node->num_addrs = 1;
	}
	rc = check_endpoints(m, err, err_len);
	if (rc)
		goto fail;
	/* The launcher said which rank this is, and self published its own endpoint. */
	m->self = self;
	m->self_local = 1;
	return 0;
fail:
	membership_fini(m);
	return rc;
}

int membership_host_addr(const char *host, const struct membership_opts *opts,
			 struct membership_addr *out, char *err, size_t err_len)
{
	struct membership_addr found[MEMBERSHIP_MAX_ADDRS];
	uint32_t n = 0;
	char why[256];

	if (resolve_name(opts, host, found, &n, why, sizeof(why)) != 0)
		return failf(err, err_len, -EINVAL, "%s: %s", host, why);
	*out = found[0];
	return 0;
}

/* ---- this machine ---- */

void membership_local_fini(struct membership_local *local)
{
	free(local->addrs);
	local->addrs = NULL;
	local->num_addrs = 0;
}

static uint8_t prefix_len(const struct sockaddr *mask)
{
	const uint8_t *b;
	size_t n;
	uint8_t bits = 0;

	if (!mask)
		return 0;
	if (mask->sa_family == AF_INET) {
		b = (const uint8_t *)&((const struct sockaddr_in *)mask)->sin_addr;
		n = 4;
	} else if (mask->sa_family == AF_INET6) {
		b = (const uint8_t *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
		n = 16;
	} else {
		return 0;
	}
	for (size_t i = 0; i < n && b[i] == 0xff; i++)
		bits += 8;
	if (bits < n * 8)
		for (uint8_t v = b[bits / 8]; v & 0x80; v = (uint8_t)(v << 1))
			bits++;
	return bits;
}

int membership_local_load(struct membership_local *local)
{
	struct ifaddrs *ifs, *ifa;
	uint32_t n = 0;

	memset(local, 0, sizeof(*local));
	if (getifaddrs(&ifs) != 0)
		return -errno;
	for (ifa = ifs; ifa; ifa = ifa->ifa_next)
		n++;
	local->addrs = calloc(n ? n : 1, sizeof(*local->addrs));
	if (!local->addrs) {
		freeifaddrs(ifs);
		return -ENOMEM;
	}
	for (ifa = ifs; ifa; ifa = ifa->ifa_next) {
		struct membership_ifaddr *a = &local->addrs[local->num_addrs];
		if (!ifa->ifa_addr || addr_from_sockaddr(ifa->ifa_addr, &a->addr) != 0)
			continue;
		a->prefix_len = prefix_len(ifa->ifa_netmask);
		a->loopback = (ifa->ifa_flags & IFF_LOOPBACK) != 0;
		local->num_addrs++;
	}
	freeifaddrs(ifs);
	return 0;
}

static int same_prefix(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return 0;
	if (!rest)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

int membership_is_local(const struct membership_local *local, const struct membership_addr *a)
{
	for (uint32_t i = 0; i < local->num_addrs; i++) {
		const struct membership_ifaddr *l = &local->addrs[i];
		if (l->addr.family != a->family)
			continue;
		/* Scope ids are not compared: a hostfile's fe80:: literal carries none. */
		if (memcmp(l->addr.bytes, a->bytes, 16) == 0)
			return 1;
		if (l->loopback && l->prefix_len <= (a->family == AF_INET ? 32 : 128) &&
		    same_prefix(l->addr.bytes, a->bytes, l->prefix_len))
			return 1;
	}
	return 0;
}

static int node_is_local(const struct membership_local *local, const struct membership_node *n)
{
	for (uint32_t i = 0; i < n->num_addrs; i++)
		if (membership_is_local(local, &n->addrs[i]))
			return 1;
	return 0;
}

static int node_has(const struct membership_node *n, const struct membership_addr *a)
{
	for (uint32_t i = 0; i < n->num_addrs; i++)
		if (n->addrs[i].family == a->family && memcmp(n->addrs[i].bytes, a->bytes, 16) == 0)
			return 1;
	return 0;
}

int membership_node_id_parse(const char *text, const char *what, uint32_t num_nodes, uint32_t *out,
			     char *err, size_t err_len)
{
	size_t len = text ? strlen(text) : 0;
	char range[64];

	if (num_nodes == 1)
		snprintf(range, sizeof(range), "there is 1 node (id 0)");
	else
		snprintf(range, sizeof(range), "there are %u nodes (ids 0..%u)", num_nodes,
			 num_nodes - 1);
	if (len == 0 || strspn(text, "0123456789") != len)
		return failf(err, err_len, -EINVAL,
			     "%s='%.64s' is not a node id: expected a whole number (%s)", what,
			     text ? text : "", range);
	if (len > 10 || strtoull(text, NULL, 10) >= num_nodes)
		return failf(err, err_len, -ERANGE, "%s=%.64s is out of range: %s", what, text,
			     range);
	*out = (uint32_t)strtoul(text, NULL, 10);
	return 0;
}

/* "0 (line 1: 127.0.0.1), 2 (line 3: node2) and 5 more" */
static void list_nodes(const struct membership *m, const uint32_t *ids, uint32_t n, char *buf,
		       size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < n && i < LIST_MAX && at < len; i++) {
		const struct membership_node *node = &m->nodes[ids[i]];
		int w = snprintf(buf + at, len - at, "%s%u (line %u: %s)", i ? ", " : "", ids[i],
				 node->line, node->host);
		if (w < 0)
			return;
		at += (size_t)w;
	}
	if (n > LIST_MAX && at < len)
		snprintf(buf + at, len - at, " and %u more", n - LIST_MAX);
}

static void list_local(const struct membership_local *local, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < local->num_addrs && at < len; i++) {
		char text[MEMBERSHIP_ADDR_STRLEN];
		membership_addr_format(&local->addrs[i].addr, text, sizeof(text));
		int w = snprintf(buf + at, len - at, "%s%s%s", i ? ", " : "", text,
				 local->addrs[i].loopback && local->addrs[i].addr.family == AF_INET
					 ? " (and its loopback subnet)"
					 : "");
		if (w < 0)
			return;
		at += (size_t)w;
	}
	if (!local->num_addrs)
		snprintf(buf, len, "none");
}

/* The explicit id: --node-id's value, else CHI_NODE_ID; NULL when neither is given. */
static const char *explicit_id(const char *node_id, const char **what)
{
	if (node_id) {
		*what = "--node-id";
		return node_id;
	}
	const char *env = getenv("CHI_NODE_ID");
	*what = "CHI_NODE_ID";
	return env && *env ? env : NULL;
}

static int find_self(struct membership *m, const struct membership_local *local,
		     const char *node_id, const char *bind, uint32_t *ids, char *err,
		     size_t err_len)
{
	const char *what;
	const char *id_text = explicit_id(node_id, &what);
	struct membership_addr b;
	char list[1024];
	uint32_t n = 0, id;
	int rc;

	if (bind && *bind && membership_addr_parse(bind, &b) != 0)
		return failf(err, err_len, -EINVAL,
			     "networking.bind '%s' is not a numeric IPv4 or IPv6 address", bind);

	/* Rule 1: an explicit id decides. */
	if (id_text) {
		rc = membership_node_id_parse(id_text, what, m->num_nodes, &id, err, err_len);
		if (rc)
			return rc;
		if (bind && *bind && !node_has(&m->nodes[id], &b)) {
			for (uint32_t i = 0; i < m->num_nodes; i++)
				if (node_has(&m->nodes[i], &b))
					return failf(err, err_len, -EINVAL,
						     "%s=%s is node %u (line %u: %s), but "
						     "networking.bind %s is the address of node %u "
						     "(line %u: %s)",
						     what, id_text, id, m->nodes[id].line,
						     m->nodes[id].host, bind, i, m->nodes[i].line,
						     m->nodes[i].host);
		}
		m->self = id;
		m->self_local = node_is_local(local, &m->nodes[id]);
		return 0;
	}

	/* Rule 2: the bind address picks the node that has it. */
	if (bind && *bind) {
		if (!membership_is_local(local, &b))
			return failf(err, err_len, -ENOENT,
				     "networking.bind %s is not an address of this machine", bind);
		for (uint32_t i = 0; i < m->num_nodes; i++)
			if (node_has(&m->nodes[i], &b))
				ids[n++] = i;
		if (n == 0)
			return failf(err, err_len, -ENOENT,
				     "%s: no node has networking.bind's address %s", m->source,
				     bind);
		if (n > 1) {
			list_nodes(m, ids, n, list, sizeof(list));
			return failf(err, err_len, -EEXIST,
				     "%s: networking.bind %s is the address of %u nodes: %s; say "
				     "which this is with CHI_NODE_ID or --node-id",
				     m->source, bind, n, list);
		}
		m->self = ids[0];
		m->self_local = 1;
		return 0;
	}

	/* Rule 3: the one node with an address of this machine. */
	for (uint32_t i = 0; i < m->num_nodes; i++)
		if (node_is_local(local, &m->nodes[i]))
			ids[n++] = i;
	if (n == 0) {
		list_local(local, list, sizeof(list));
		return failf(err, err_len, -ENOENT,
			     "%s: no node is this machine: none of the %u hosts has an address of "
			     "this machine (%s); say which node this is with CHI_NODE_ID or "
			     "--node-id",
			     m->source, m->num_nodes, list);
	}
	if (n > 1) {
		list_nodes(m, ids, n, list, sizeof(list));
		return failf(err, err_len, -EEXIST,
			     "%s: %u nodes have an address of this machine: %s; say which this is "
			     "with CHI_NODE_ID or --node-id (or networking.bind)",
			     m->source, n, list);
	}
	m->self = ids[0];
	m->self_local = 1;
	return 0;
}

int membership_find_self(struct membership *m, const struct membership_local *local,
			 const char *node_id, const char *bind, char *err, size_t err_len)
{
	struct membership_local mine = {0};
	uint32_t *ids;
	int rc;

	m->self = MEMBERSHIP_NO_NODE;
	m->self_local = 0;
	if (!local) {
		rc = membership_local_load(&mine);
		if (rc)
			return failf(err, err_len, rc, "cannot list this machine's addresses: %s",
				     strerror(-rc));
		local = &mine;
	}
	ids = calloc(m->num_nodes ? m->num_nodes : 1, sizeof(*ids));
	if (!ids) {
		rc = failf(err, err_len, -ENOMEM, "%s: out of memory", m->source);
	} else {
		rc = find_self(m, local, node_id, bind, ids, err, err_len);
		free(ids);
	}
	membership_local_fini(&mine);
	return rc;
}

/* ---- from the config ---- */

int membership_hostfile_path(const char *value, char *buf, size_t len, char *err, size_t err_len)
{
	size_t at = 0;

	for (const char *p = value; *p;) {
		const char *piece = p;
		size_t n;
		char name[256];
		if (p[0] == '$' && p[1] == '{') {
			const char *close = strchr(p + 2, '}');
			n = close ? (size_t)(close - (p + 2)) : 0;
			if (!close || n == 0 || n >= sizeof(name))
				return failf(err, err_len, -EINVAL,
					     "networking.hostfile '%s': '${' needs a variable name "
					     "and '}'",
					     value);
			memcpy(name, p + 2, n);
			name[n] = '\0';
			for (size_t i = 0; i < n; i++)
				if (!isalnum((unsigned char)name[i]) && name[i] != '_')
					return failf(err, err_len, -EINVAL,
						     "networking.hostfile '%s': '%s' is not a "
						     "variable name",
						     value, name);
			piece = getenv(name);
			if (!piece)
				return failf(err, err_len, -EINVAL,
					     "networking.hostfile '%s': ${%s} is not set", value,
					     name);
			n = strlen(piece);
			p = close + 1;
		} else {
			n = 1;
			p++;
		}
		if (at + n >= len)
			return failf(err, err_len, -ENAMETOOLONG,
				     "networking.hostfile '%s': the path is too long", value);
		memcpy(buf + at, piece, n);
		at += n;
	}
	buf[at] = '\0';
	return 0;
}

static int load_hostfile(const struct config *cfg, struct membership *m, char *err, size_t err_len)
{
	char path[PATH_MAX], inner[1024];
	struct hostfile hf;
	int rc;

	if (!cfg->hostfile[0])
		return failf(err, err_len, -EINVAL,
			     "networking.bootstrap is hostfile but networking.hostfile is not set");
	rc = membership_hostfile_path(cfg->hostfile, path, sizeof(path), err, err_len);
	if (rc)
		return rc;
	rc = hostfile_parse_file(path, &hf, inner, sizeof(inner));
	if (rc)
		return failf(err, err_len, rc, "networking.hostfile: %s", inner);
	struct membership_opts o = {.default_port = (uint16_t)cfg->port};
	rc = membership_resolve(&hf, path, &o, m, inner, sizeof(inner));
	hostfile_fini(&hf);
	if (rc)
		return failf(err, err_len, rc, "networking.hostfile: %s", inner);
	return 0;
}

static int bootstrap_is(const struct config *cfg, const char *name)
{
	return strcmp(cfg->bootstrap, name) == 0;
}

int membership_load(const struct config *cfg, const char *node_id, struct membership *m, char *err,
		    size_t err_len)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->self = MEMBERSHIP_NO_NODE;
	if (bootstrap_is(cfg, "none") || !cfg->bootstrap[0]) {
		const char *what;
		const char *id_text = explicit_id(node_id, &what);
		uint32_t id;
		if (id_text &&
		    (rc = membership_node_id_parse(id_text, what, 1, &id, err, err_len)) != 0)
			return rc;
		m->nodes = calloc(1, sizeof(*m->nodes));
		m->strings = calloc(1, 1);
		if (!m->nodes || !m->strings) {
			membership_fini(m);
			return failf(err, err_len, -ENOMEM, "out of memory");
		}
		m->nodes[0].host = m->strings; /* "": no address, nothing to connect to */
		m->nodes[0].port = (uint16_t)cfg->port;
		m->num_nodes = 1;
		m->self = 0;
		m->self_local = 1;
		return 0;
	}
	if (bootstrap_is(cfg, "pmix"))
		return failf(err, err_len, -ENOTSUP,
			     "networking.bootstrap: pmix: the membership comes from the launcher, "
			     "to the runtime it starts (docs/config.md, \"PMIx\")");
	if (!bootstrap_is(cfg, "hostfile"))
		return failf(err, err_len, -EINVAL,
			     "networking.bootstrap: '%s': expected hostfile, pmix or none",
			     cfg->bootstrap);
	rc = load_hostfile(cfg, m, err, err_len);
	if (rc)
		return rc;
	rc = membership_find_self(m, NULL, node_id, cfg->bind, err, err_len);
	if (rc)
		membership_fini(m);
	return rc;
}

int membership_check(const struct config *cfg, FILE *out, char *err, size_t err_len)
{
	struct membership m;
	char why[1024];
	int rc;

	if (bootstrap_is(cfg, "pmix")) {
		/* (A build without PMIx refused the config as it loaded it.) */
		fprintf(out, "# networking.bootstrap pmix: node ids, their number and addresses come "
			     "from the launcher (srun --mpi=pmix, mpirun) when the runtime starts\n");
		return 0;
	}
	if (!bootstrap_is(cfg, "hostfile"))
		return 0;
	rc = load_hostfile(cfg, &m, err, err_len);
	if (rc)
		return rc;
	fprintf(out, "# networking.hostfile %s: %u node%s\n", m.source, m.num_nodes,
		m.num_nodes == 1 ? "" : "s");
	for (uint32_t i = 0; i < m.num_nodes; i++) {
		const struct membership_node *n = &m.nodes[i];
		fprintf(out, "#   node %u: %s port %u (line %u) ->", i, n->host, n->port, n->line);
		for (uint32_t j = 0; j < n->num_addrs; j++) {
			char text[MEMBERSHIP_ADDR_STRLEN];
			membership_addr_format(&n->addrs[j], text, sizeof(text));
			fprintf(out, " %s", text);
		}
		fputc('\n', out);
	}
	if (membership_find_self(&m, NULL, NULL, cfg->bind, why, sizeof(why)) == 0)
		fprintf(out, "# this machine: node %u%s\n", m.self,
			m.self_local ? ""
				     : " (chosen by CHI_NODE_ID; none of its addresses is here)");
	else
		fprintf(out, "# this machine: not known here: %s\n", why);
	membership_fini(&m);
	return 0;
}

int membership_local_cluster_dir(const struct config *cfg, char *buf, size_t len)
{
	char run_dir[PATH_MAX];
	config_run_dir(cfg, run_dir, sizeof(run_dir));
	int n = snprintf(buf, len, "%s/cluster-%d", run_dir, cfg->port);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* A single-node config whose port runs a cluster of `chimaera cluster up`: CHI_NODE_ID's node,
 * else node 0. @return 1 with *@node set, 0 when there is no such cluster. */
static int local_cluster_node(const struct config *cfg, uint32_t *node, char *err,
			      size_t err_len, int *rc)
{
	char dir[PATH_MAX], hosts[PATH_MAX + 8];
	struct stat st;
	*rc = 0;
	if (membership_local_cluster_dir(cfg, dir, sizeof(dir)) != 0)
		return 0;
	snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
	if (stat(hosts, &st) != 0)
		return 0;
	const char *id = getenv("CHI_NODE_ID");
	*node = 0;
	if (id && *id)
		*rc = membership_node_id_parse(id, "CHI_NODE_ID", UINT32_MAX, node, err, err_len);
	return 1;
}

/* Bootstrap pmix: the launcher knows the membership and this process is not one of its
 * ranks, so no PMIx here (a CLI that did PMIx_Init before `runtime start --daemon` forks
 * would leave the child a PMIx library with no progress thread). CHI_NODE_ID, else the
 * lowest node that has a runtime socket in the run directory: the runtime of this machine.
 * Not PMIX_RANK: a client that is an MPI application launched by srun or mpirun has its own
 * job's rank there (rank 17 of 64), not a node id of the runtimes' job. */
static int pmix_client_node(const struct config *cfg, uint32_t *node, char *err, size_t err_len)
{
	char dir[PATH_MAX], prefix[64];
	const char *env = getenv("CHI_NODE_ID");

	if (env && *env)
		return membership_node_id_parse(env, "CHI_NODE_ID", UINT32_MAX, node, err,
						err_len);
	config_run_dir(cfg, dir, sizeof(dir));
	snprintf(prefix, sizeof(prefix), "runtime-%d-node", cfg->port);
	DIR *d = opendir(dir);
	if (d) {
		size_t plen = strlen(prefix);
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			const char *id = e->d_name + plen;
			size_t nd = strspn(id, "0123456789");
			if (strncmp(e->d_name, prefix, plen) != 0 || nd == 0 || nd > 9 ||
			    strcmp(id + nd, ".sock") != 0)
				continue;
			uint32_t v = (uint32_t)strtoul(id, NULL, 10);
			if (v < *node)
				*node = v;
		}
		closedir(d);
	}
	if (*node == MEMBERSHIP_NO_NODE)
		return failf(err, err_len, -ENOENT,
			     "networking.bootstrap pmix: no runtime of port %d on this machine (%s); "
			     "CHI_NODE_ID=N names a node",
			     cfg->port, dir);
	return 0;
}

int membership_client_node(const struct config *cfg, uint32_t *node, char *err, size_t err_len)
{
	struct membership m;
	int rc;

	*node = MEMBERSHIP_NO_NODE;
	if (bootstrap_is(cfg, "none") || !cfg->bootstrap[0]) {
		if (local_cluster_node(cfg, node, err, err_len, &rc))
			return rc;
		return 0;
	}
	if (bootstrap_is(cfg, "pmix"))
		return pmix_client_node(cfg, node, err, err_len);
	rc = membership_load(cfg, NULL, &m, err, err_len);
	if (rc == 0) {
		*node = m.self;
		membership_fini(&m);
		return 0;
	}
	if (rc != -EEXIST)
		return rc;
	/* Several nodes on this machine (a cluster tried out on one): the lowest of them. */
	struct membership_local local;
	rc = load_hostfile(cfg, &m, err, err_len);
	if (rc)
		return rc;
	rc = membership_local_load(&local);
	for (uint32_t i = 0; rc == 0 && i < m.num_nodes && *node == MEMBERSHIP_NO_NODE; i++)
		for (uint32_t j = 0; j < m.nodes[i].num_addrs; j++)
			if (membership_is_local(&local, &m.nodes[i].addrs[j])) {
				*node = i;
				break;
			}
	if (rc == 0)
		membership_local_fini(&local);
	membership_fini(&m);
	if (rc == 0 && *node == MEMBERSHIP_NO_NODE)
		rc = failf(err, err_len, -ENOENT, "no node of %s is on this machine", cfg->hostfile);
	return rc;
}
