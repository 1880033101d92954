/* libFuzzer target: the hostfile parser must reject any input with an error that names the
 * problem, never crash, leak or read out of bounds; what it accepts must read back the same
 * when written one host per line; resolution and "which node am I" must hold on what it
 * accepts.
 *
 * No name reaches DNS: the resolver below answers numeric forms only, and maps every name
 * onto a loopback address derived from it. */
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/hostfile.h"
#include "common/membership.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int loopback_resolver(void *ctx, const char *host, const struct addrinfo *hints,
			     struct addrinfo **res)
{
	struct addrinfo h = *hints;
	char text[32];
	uint32_t x = 2166136261u;

	(void)ctx;
	h.ai_flags |= AI_NUMERICHOST;
	if (hints->ai_flags & AI_NUMERICHOST)
		return getaddrinfo(host, NULL, &h, res);
	for (const char *p = host; *p; p++) /* FNV-1a: equal names, equal addresses */
		x = (x ^ (uint8_t)*p) * 16777619u;
	snprintf(text, sizeof(text), "127.%u.%u.%u", (x >> 16) & 0xff, (x >> 8) & 0xff,
		 (x & 0xff) | 1);
	return getaddrinfo(text, NULL, &h, res);
}

static void check_accepted(const struct hostfile *hf)
{
	if (hf->num_entries == 0 || hf->num_entries > HOSTFILE_MAX_NODES)
		abort();
	for (uint32_t i = 0; i < hf->num_entries; i++) {
		const struct hostfile_entry *e = &hf->entries[i];
		size_t len = strlen(e->host);
		if (len == 0 || len > HOSTFILE_HOST_MAX || e->line == 0 || e->kind > HOSTFILE_IPV6)
			abort();
		if (strpbrk(e->host, "[]# \t")) /* no bracket, comment or blank survives */
			abort();
		/* Only an IPv6 literal holds ':', and it takes no port. */
		if (e->kind == HOSTFILE_IPV6 ? e->port != 0 : strchr(e->host, ':') != NULL)
			abort();
	}
}

/* Written back one host per line, the list parses to the same hosts, ports and kinds. */
static void check_round_trip(const struct hostfile *hf)
{
	size_t cap = (size_t)hf->num_entries * (HOSTFILE_HOST_MAX + 8) + 1, at = 0;
	char *text = malloc(cap), err[1024];
	struct hostfile back;

	if (!text)
		return;
	for (uint32_t i = 0; i < hf->num_entries; i++) {
		const struct hostfile_entry *e = &hf->entries[i];
		at += (size_t)(e->port ? snprintf(text + at, cap - at, "%s:%u\n", e->host, e->port)
				       : snprintf(text + at, cap - at, "%s\n", e->host));
	}
	if (hostfile_parse_string("again", text, at, &back, err, sizeof(err)) != 0 ||
	    back.num_entries != hf->num_entries)
		abort();
	for (uint32_t i = 0; i < back.num_entries; i++) {
		const struct hostfile_entry *a = &hf->entries[i], *b = &back.entries[i];
		if (strcmp(a->host, b->host) != 0 || a->port != b->port || a->kind != b->kind ||
		    b->line != i + 1)
			abort();
	}
	hostfile_fini(&back);
	free(text);
}

static void check_membership(const struct hostfile *hf)
{
	struct membership_opts o = {.default_port = 9413, .resolve = loopback_resolver};
	struct membership_ifaddr lo = {.prefix_len = 8, .loopback = 1};
	struct membership_local local = {&lo, 1};
	struct membership m;
	char err[1024];

	if (hf->num_entries > 4096) /* resolution is per host: keep runs fast */
		return;
	membership_addr_parse("127.0.0.1", &lo.addr);
	int rc = membership_resolve(hf, "fuzz", &o, &m, err, sizeof(err));
	if (rc != 0) {
		if (!err[0] || m.nodes)
			abort();
		return;
	}
	if (m.num_nodes != hf->num_entries)
		abort();
	for (uint32_t i = 0; i < m.num_nodes; i++)
		if (m.nodes[i].num_addrs == 0 || m.nodes[i].num_addrs > MEMBERSHIP_MAX_ADDRS ||
		    m.nodes[i].port == 0 || strcmp(m.nodes[i].host, hf->entries[i].host) != 0)
			abort();
	rc = membership_find_self(&m, &local, NULL, NULL, err, sizeof(err));
	if (rc == 0 ? m.self >= m.num_nodes : !err[0])
		abort();
	rc = membership_find_self(&m, &local, "0", NULL, err, sizeof(err));
	if (rc != 0 || m.self != 0)
		abort();
	membership_fini(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hostfile hf;
	char err[1024];

	unsetenv("CHI_NODE_ID");
	err[0] = '\0';
	int rc = hostfile_parse_string("fuzz", (const char *)data, size, &hf, err, sizeof(err));
	if (rc != 0) {
		if (err[0] == '\0' || hf.entries || hf.num_entries)
			abort(); /* an error must say why, and leave nothing behind */
		return 0;
	}
	check_accepted(&hf);
	check_round_trip(&hf);
	check_membership(&hf);
	hostfile_fini(&hf);
	return 0;
}
