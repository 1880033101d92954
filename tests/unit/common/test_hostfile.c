/* Hostfile syntax, resolution and "which node am I" (common/hostfile.c, common/membership.c).
 *
 * Only loopback addresses appear as hosts here (127.0.0.0/8, ::1, "localhost"), and names
 * go through a resolver that refuses every other name without asking DNS: no test may make
 * any other address a target. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/hostfile.h"
#include "common/log.h"
#include "common/membership.h"

#include "check_main.h"

static struct hostfile hf;
static struct membership mem;
static char err[2048];

static int parse(const char *text)
{
	hostfile_fini(&hf);
	err[0] = '\0';
	return hostfile_parse_string("hosts", text, strlen(text), &hf, err, sizeof(err));
}

static void teardown(void)
{
	hostfile_fini(&hf);
	membership_fini(&mem);
}

/* The hosts of the last parse, "a,b,c" (with ":port" where one was given). */
static const char *hosts(void)
{
	static char buf[8192];
	size_t at = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < hf.num_entries && at < sizeof(buf); i++) {
		const struct hostfile_entry *e = &hf.entries[i];
		int n = e->port ? snprintf(buf + at, sizeof(buf) - at, "%s%s:%u", i ? "," : "",
					   e->host, e->port)
				: snprintf(buf + at, sizeof(buf) - at, "%s%s", i ? "," : "",
					   e->host);
		at += (size_t)n;
	}
	return buf;
}

#define ck_parse_fails(text, rc, want)                                                             \
	do {                                                                                       \
		ck_assert_int_eq(parse(text), (rc));                                               \
		ck_assert_msg(strstr(err, (want)), "'%s': got '%s', want '%s'", (text), err,       \
			      (want));                                                             \
		ck_assert_uint_eq(hf.num_entries, 0);                                              \
	} while (0)

/* ---- syntax ---- */

START_TEST(one_host_per_line_with_kinds_and_lines)
{
	ck_assert_int_eq(parse("127.0.0.1\nlocalhost\n::1\n"), 0);
	ck_assert_uint_eq(hf.num_entries, 3);
	ck_assert_str_eq(hosts(), "127.0.0.1,localhost,::1");
	ck_assert_int_eq(hf.entries[0].kind, HOSTFILE_IPV4);
	ck_assert_int_eq(hf.entries[1].kind, HOSTFILE_NAME);
	ck_assert_int_eq(hf.entries[2].kind, HOSTFILE_IPV6);
	for (uint32_t i = 0; i < 3; i++) {
		ck_assert_uint_eq(hf.entries[i].line, i + 1);
		ck_assert_uint_eq(hf.entries[i].port, 0);
	}
}
END_TEST

START_TEST(comments_blank_lines_and_whitespace)
{
	ck_assert_int_eq(parse("# the cluster\n\n   127.0.0.1   # node zero\n\t127.0.0.2\r\n"
			       "   \n#127.0.0.9\n  # indented comment\n127.0.0.3"),
			 0);
	ck_assert_str_eq(hosts(), "127.0.0.1,127.0.0.2,127.0.0.3");
	ck_assert_uint_eq(hf.entries[0].line, 3);
	ck_assert_uint_eq(hf.entries[1].line, 4);
	ck_assert_uint_eq(hf.entries[2].line, 8); /* no newline after the last line */
	/* A comment straight after the host, and Windows line ends. */
	ck_assert_int_eq(parse("localhost#x\r\n127.0.0.2\r\n"), 0);
	ck_assert_str_eq(hosts(), "localhost,127.0.0.2");
}
END_TEST

START_TEST(ranges_keep_zero_padding)
{
	ck_assert_int_eq(parse("node[00-03]\n"), 0);
	ck_assert_str_eq(hosts(), "node00,node01,node02,node03");
	ck_assert_int_eq(parse("n[8-10]\n"), 0);
	ck_assert_str_eq(hosts(), "n8,n9,n10");
	ck_assert_int_eq(parse("n[08-10]\n"), 0);
	ck_assert_str_eq(hosts(), "n08,n09,n10");
	ck_assert_int_eq(parse("n[007]x\n"), 0);
	ck_assert_str_eq(hosts(), "n007x");
	ck_assert_int_eq(parse("[1-2]n\n"), 0); /* a group may start the name */
	ck_assert_str_eq(hosts(), "1n,2n");
	for (uint32_t i = 0; i < hf.num_entries; i++)
		ck_assert_uint_eq(hf.entries[i].line, 1);
}
END_TEST

START_TEST(lists_and_ranges_mix)
{
	ck_assert_int_eq(parse("node[1-3,7,10-11]\n"), 0);
	ck_assert_str_eq(hosts(), "node1,node2,node3,node7,node10,node11");
	ck_assert_int_eq(parse("n[09,1-2]\n"), 0); /* the order written, padding per item */
	ck_assert_str_eq(hosts(), "n09,n1,n2");
}
END_TEST

START_TEST(several_groups_expand_as_a_product_in_order)
{
	ck_assert_int_eq(parse("r[1-2]n[01-03]\n"), 0);
	ck_assert_str_eq(hosts(), "r1n01,r1n02,r1n03,r2n01,r2n02,r2n03");
	ck_assert_int_eq(parse("a[1,3]-b[7]-c[0-1]\n"), 0);
	ck_assert_str_eq(hosts(), "a1-b7-c0,a1-b7-c1,a3-b7-c0,a3-b7-c1");
}
END_TEST

START_TEST(node_id_is_the_index_after_expansion)
{
	ck_assert_int_eq(parse("127.0.0.[1-3]\n\n# x\nlocalhost:9500\n127.0.0.[10,12]\n"), 0);
	ck_assert_str_eq(hosts(), "127.0.0.1,127.0.0.2,127.0.0.3,localhost:9500,127.0.0.10,"
				  "127.0.0.12");
	ck_assert_int_eq(hf.entries[3].kind, HOSTFILE_NAME);
	ck_assert_uint_eq(hf.entries[3].line, 4);
	ck_assert_uint_eq(hf.entries[4].line, 5);
	ck_assert_int_eq(hf.entries[5].kind, HOSTFILE_IPV4);
}
END_TEST

START_TEST(ports)
{
	ck_assert_int_eq(parse("localhost:9500\n127.0.0.1:1\n127.0.0.1:65535\n"), 0);
	ck_assert_str_eq(hf.entries[0].host, "localhost");
	ck_assert_uint_eq(hf.entries[0].port, 9500);
	ck_assert_uint_eq(hf.entries[1].port, 1);
	ck_assert_uint_eq(hf.entries[2].port, 65535);
	/* A range may sit in the port: several nodes on one address. */
	ck_assert_int_eq(parse("127.0.0.[1-2]:94[13-14]\n"), 0);
	ck_assert_str_eq(hosts(), "127.0.0.1:9413,127.0.0.1:9414,127.0.0.2:9413,127.0.0.2:9414");

	ck_parse_fails("localhost\n127.0.0.1:0\n", -EINVAL, "hosts:2: bad port '0'");
	ck_parse_fails("127.0.0.1:65536\n", -EINVAL, "hosts:1: bad port '65536'");
	ck_parse_fails("127.0.0.1:x\n", -EINVAL, "bad port 'x'");
	ck_parse_fails("127.0.0.1:\n", -EINVAL, "bad port ''");
	ck_parse_fails("127.0.0.1:099999\n", -EINVAL, "bad port");
	ck_parse_fails(":9413\n", -EINVAL, "hosts:1: ':9413': no host before the port");
	ck_parse_fails("localhost:1:2\n", -EINVAL, "neither an IPv6 address nor host[:port]");
}
END_TEST

START_TEST(ipv6_literals_are_bare_and_never_expanded)
{
	ck_assert_int_eq(parse("0:0:0:0:0:0:0:1\n::ffff:127.0.0.1\n"), 0);
	ck_assert_uint_eq(hf.num_entries, 2);
	for (uint32_t i = 0; i < 2; i++) {
		ck_assert_int_eq(hf.entries[i].kind, HOSTFILE_IPV6);
		ck_assert_uint_eq(hf.entries[i].port, 0);
	}
	ck_assert_str_eq(hf.entries[0].host, "0:0:0:0:0:0:0:1"); /* as written */
	/* Brackets are ranges: an IPv6 literal in them is refused with the reason. */
	ck_parse_fails("127.0.0.1\n[::1]\n", -EINVAL,
		       "hosts:2: '[::1]': write IPv6 addresses bare");
	ck_parse_fails("[::1]:9413\n", -EINVAL, "write IPv6 addresses bare");
	/* Not an IPv6 literal, so it is expanded, and what it makes is not one either. */
	ck_parse_fails("::[1-2]\n", -EINVAL,
		       "'::1' (from '::[1-2]') is neither an IPv6 address nor host[:port]");
	ck_parse_fails("::1%lo\n", -EINVAL, "neither an IPv6 address nor host[:port]");
}
END_TEST

START_TEST(bad_ranges_name_their_line)
{
	ck_parse_fails("n1\nnode[a-b]\n", -EINVAL, "hosts:2: bad range [a-b] in 'node[a-b]'");
	ck_parse_fails("n1\n\nn[5-3]\n", -EINVAL, "hosts:3: reversed range 5-3 in 'n[5-3]'");
	ck_parse_fails("n[1-2,9-4]\n", -EINVAL, "hosts:1: reversed range 9-4");
	ck_parse_fails("n[]\n", -EINVAL, "hosts:1: empty brackets '[]'");
	ck_parse_fails("x\nn[1-2\n", -EINVAL, "hosts:2: '[' without ']'");
	ck_parse_fails("n]1\n", -EINVAL, "hosts:1: ']' without '['");
	ck_parse_fails("n[1[2]]\n", -EINVAL, "hosts:1: nested '['");
	ck_parse_fails("n[1,,2]\n", -EINVAL, "hosts:1: bad range [1,,2]");
	ck_parse_fails("n[1,]\n", -EINVAL, "bad range [1,]");
	ck_parse_fails("n[,1]\n", -EINVAL, "bad range [,1]");
	ck_parse_fails("n[-3]\n", -EINVAL, "bad range [-3]");
	ck_parse_fails("n[1-]\n", -EINVAL, "bad range [1-]");
	ck_parse_fails("n[1--3]\n", -EINVAL, "bad range [1--3]");
	ck_parse_fails("n[ 1]\n", -EINVAL, "more than one word");
	ck_parse_fails("n[1234567890]\n", -EINVAL, "at most 9 digits");
	ck_assert_int_eq(parse("n[123456789]\n"), 0); /* nine digits are fine */
}
END_TEST

START_TEST(expansion_is_capped)
{
	char *big;

	/* Exactly the cap: accepted, every host distinct. */
	ck_assert_int_eq(parse("n[1-65536]\n"), 0);
	ck_assert_uint_eq(hf.num_entries, HOSTFILE_MAX_NODES);
	ck_assert_str_eq(hf.entries[65535].host, "n65536");
	/* One more, in one range, in a product, over several lines, absurdly many. */
	ck_parse_fails("n[0-65536]\n", -E2BIG,
		       "hosts:1: range too large: 'n[0-65536]' expands "
		       "to more than 65536 hosts");
	ck_parse_fails("a[1-300]b[1-300]\n", -E2BIG, "hosts:1: range too large");
	ck_parse_fails("a[1-40000]\n\nb[1-30000]\n", -E2BIG,
		       "hosts:3: range too large: 'b[1-30000]' expands to 30000 hosts, which "
		       "with the 40000 before it makes more than 65536");
	ck_parse_fails("n[0-999999999]\n", -E2BIG, "range too large");
	ck_parse_fails("a[0-999999999]b[0-999999999]c[0-999999999]\n", -E2BIG, "range too large");
	/* Plain lines count against the cap too. */
	big = malloc(65537 * 12 + 16);
	ck_assert_ptr_nonnull(big);
	size_t at = 0;
	at += (size_t)snprintf(big, 65537 * 12 + 16, "h[1-65536]\n");
	at += (size_t)snprintf(big + at, 65537 * 12 + 16 - at, "extra\n");
	ck_parse_fails(big, -E2BIG, "hosts:2: more than 65536 hosts in all");
	free(big);
}
END_TEST

START_TEST(long_lines_and_names)
{
	char line[HOSTFILE_MAX_LINE + 64];

	memset(line, 'a', sizeof(line));
	line[0] = 'x';
	line[1] = '\n';
	line[2 + HOSTFILE_MAX_LINE + 1] = '\0'; /* line 2 is one byte too long */
	ck_parse_fails(line, -EINVAL, "hosts:2: line too long (more than 4096 bytes)");
	/* A long comment counts too: the limit is on the line. */
	memset(line, ' ', sizeof(line));
	line[0] = '#';
	line[HOSTFILE_MAX_LINE + 1] = '\0';
	ck_parse_fails(line, -EINVAL, "hosts:1: line too long");
	/* 253 characters is the longest name; a range may not make a longer one. */
	memset(line, 'a', sizeof(line));
	for (int i = 60; i < 253; i += 61)
		line[i] = '.';
	line[253] = '\0';
	ck_assert_int_eq(parse(line), 0);
	line[253] = 'b';
	line[254] = '\0';
	ck_parse_fails(line, -EINVAL, "longer than 253 characters");
	snprintf(line + 251, 16, "[100-101]");
	ck_parse_fails(line, -EINVAL, "longer than 253 characters");
	ck_parse_fails("a123456789a123456789a123456789a123456789a123456789a123456789abcd\n",
		       -EINVAL, "a label longer than 63 characters");
}
END_TEST

START_TEST(bad_hosts_are_refused)
{
	ck_parse_fails("127.0.0.1\n127.0.0.256\n", -EINVAL,
		       "hosts:2: '127.0.0.256' is not an "
		       "IPv4 address");
	ck_parse_fails("127.1\n", -EINVAL, "'127.1' is not an IPv4 address");
	ck_parse_fails("127.000.0.1\n", -EINVAL, "not an IPv4 address");
	ck_parse_fails("127.0.0.[254-256]\n", -EINVAL,
		       "'127.0.0.256' (from '127.0.0.[254-256]') is not an IPv4 address");
	ck_parse_fails("-node\n", -EINVAL,
		       "'-node' is not a host name: it has a label that "
		       "starts with '-'");
	ck_parse_fails("a..b\n", -EINVAL, "has an empty label");
	ck_parse_fails(".a\n", -EINVAL, "has an empty label");
	ck_parse_fails("host/1\n", -EINVAL, "may hold only letters");
	ck_parse_fails("node1 slots=4\n", -EINVAL,
		       "hosts:1: more than one word in 'node1 slots=4'");
	ck_parse_fails("a\n\xc3\xa9t\xc3\xa9\n", -EINVAL, "hosts:2: unexpected byte 0xc3");
	ck_parse_fails("a\nb\x01\n", -EINVAL, "hosts:2: unexpected byte 0x01");
	/* A NUL byte is an error, not the end of the text. */
	static const char nul[] = "localhost\n127.0.0.1\0junk\n";
	hostfile_fini(&hf);
	ck_assert_int_eq(
		hostfile_parse_string("hosts", nul, sizeof(nul) - 1, &hf, err, sizeof(err)),
		-EINVAL);
	ck_assert_msg(strstr(err, "hosts:2: NUL byte"), "%s", err);
	/* Underscores and a trailing dot are accepted (/etc/hosts names, FQDNs). */
	ck_assert_int_eq(parse("rack_1-node.example.\n"), 0);
}
END_TEST

START_TEST(duplicates_are_errors)
{
	ck_parse_fails("127.0.0.1\nlocalhost\n127.0.0.1\n", -EINVAL,
		       "hosts:3: duplicate host '127.0.0.1': node 0 (line 1, '127.0.0.1') is the "
		       "same host");
	ck_parse_fails("Node1\nnode1\n", -EINVAL, "hosts:2: duplicate host 'node1'");
	ck_parse_fails("n[1-3]\n\nn2\n", -EINVAL, "hosts:3: duplicate host 'n2': node 1 (line 1");
	ck_parse_fails("n[1,2,1]\n", -EINVAL, "hosts:1: duplicate host 'n1'");
	ck_parse_fails("::1\n0:0::1\n", -EINVAL, "hosts:2: duplicate host '0:0::1'");
	ck_parse_fails("h:1\nh:1\n", -EINVAL, "hosts:2: duplicate host 'h:1'");
	/* Of several duplicates, the earliest second appearance is named. */
	ck_parse_fails("a\nb\nc\nb\na\n", -EINVAL, "hosts:4: duplicate host 'b'");
	/* One host on different ports is two nodes. */
	ck_assert_int_eq(parse("h:1\nh:2\nh\n"), 0);
}
END_TEST

START_TEST(empty_files_are_errors)
{
	ck_parse_fails("", -EINVAL, "hosts: no hosts (the file is empty or holds only comments)");
	ck_parse_fails("\n\n   \n", -EINVAL, "hosts: no hosts");
	ck_parse_fails("# nobody\n#\n", -EINVAL, "hosts: no hosts");
}
END_TEST

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(files)
{
	char dir[] = "/tmp/chi-hostfile-XXXXXX", path[256];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/hosts", dir);
	write_file(path, "# two\n127.0.0.1\n127.0.0.[2-3]\n");
	ck_assert_int_eq(hostfile_parse_file(path, &hf, err, sizeof(err)), 0);
	ck_assert_str_eq(hosts(), "127.0.0.1,127.0.0.2,127.0.0.3");
	hostfile_fini(&hf);
	hostfile_fini(&hf); /* twice is harmless */

	write_file(path, "127.0.0.1\nn[2-1]\n");
	ck_assert_int_eq(hostfile_parse_file(path, &hf, err, sizeof(err)), -EINVAL);
	char want[300];
	snprintf(want, sizeof(want), "%s:2: reversed range 2-1", path);
	ck_assert_msg(strstr(err, want), "%s", err);

	write_file(path, "");
	ck_assert_int_eq(hostfile_parse_file(path, &hf, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "no hosts"), "%s", err);
	unlink(path);

	ck_assert_int_eq(hostfile_parse_file(path, &hf, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "cannot open"), "%s", err);
	ck_assert_int_eq(hostfile_parse_file(dir, &hf, err, sizeof(err)), -EISDIR);
	rmdir(dir);
}
END_TEST

/* ---- resolution ---- */

static int loopback_addr(const struct membership_addr *a)
{
	static const uint8_t v6_loopback[16] = {[15] = 1};

	if (a->family == AF_INET)
		return a->bytes[0] == 127;
	return a->family == AF_INET6 && memcmp(a->bytes, v6_loopback, 16) == 0;
}

/* Numeric loopback forms go to getaddrinfo (no lookup for those); "localhost" is answered
 * here as 127.0.0.1, so that no test depends on the machine's /etc/hosts (a fresh minimal
 * root has none); any other name fails as unknown without a query. */
static int loopback_only(void *ctx, const char *host, const struct addrinfo *hints,
			 struct addrinfo **res)
{
	int *calls = ctx;
	struct in_addr a4;
	struct in6_addr a6;

	if (calls)
		(*calls)++;
	if (strcmp(host, "localhost") == 0) {
		if (hints->ai_flags & AI_NUMERICHOST)
			return EAI_NONAME; /* a name is not a numeric address */
		struct addrinfo h = *hints;
		h.ai_flags |= AI_NUMERICHOST;
		return getaddrinfo("127.0.0.1", NULL, &h, res);
	}
	if ((inet_pton(AF_INET, host, &a4) == 1 && ((uint8_t *)&a4)[0] == 127) ||
	    (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6)))
		return getaddrinfo(host, NULL, hints, res);
	return EAI_NONAME;
}

static int resolve(const char *text, uint16_t port)
{
	struct membership_opts o = {.default_port = port, .resolve = loopback_only};

	membership_fini(&mem);
	if (parse(text) != 0)
		return -100;
	int rc = membership_resolve(&hf, "hosts", &o, &mem, err, sizeof(err));
	for (uint32_t i = 0; rc == 0 && i < mem.num_nodes; i++)
		for (uint32_t j = 0; j < mem.nodes[i].num_addrs; j++)
			ck_assert_msg(loopback_addr(&mem.nodes[i].addrs[j]),
				      "node %u resolved outside loopback", i);
	return rc;
}

START_TEST(literals_resolve_without_lookup)
{
	int calls = 0;
	struct membership_opts o = {
		.default_port = 9413, .resolve = loopback_only, .resolve_ctx = &calls};
	char text[MEMBERSHIP_ADDR_STRLEN];

	ck_assert_int_eq(parse("127.0.0.1\n127.0.0.2:9500\n::1\n"), 0);
	ck_assert_int_eq(membership_resolve(&hf, "hosts", &o, &mem, err, sizeof(err)), 0);
	ck_assert_int_eq(calls, 0);
	ck_assert_uint_eq(mem.num_nodes, 3);
	ck_assert_uint_eq(mem.self, MEMBERSHIP_NO_NODE);
	ck_assert_str_eq(mem.source, "hosts");
	ck_assert_str_eq(mem.nodes[1].host, "127.0.0.2");
	ck_assert_uint_eq(mem.nodes[0].port, 9413);
	ck_assert_uint_eq(mem.nodes[1].port, 9500);
	ck_assert_uint_eq(mem.nodes[1].line, 2);
	ck_assert_uint_eq(mem.nodes[2].num_addrs, 1);
	ck_assert_int_eq(mem.nodes[2].addrs[0].family, AF_INET6);
	membership_addr_format(&mem.nodes[2].addrs[0], text, sizeof(text));
	ck_assert_str_eq(text, "::1");

	/* The socket address a transport would connect to. */
	struct sockaddr_storage ss;
	ck_assert_uint_eq(membership_addr_sockaddr(&mem.nodes[1].addrs[0], mem.nodes[1].port, &ss),
			  sizeof(struct sockaddr_in));
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
	ck_assert_uint_eq(ntohs(in->sin_port), 9500);
	ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), 0x7f000002);
	ck_assert_uint_eq(membership_addr_sockaddr(&mem.nodes[2].addrs[0], 9413, &ss),
			  sizeof(struct sockaddr_in6));
}
END_TEST

START_TEST(localhost_resolves_to_loopback)
{
	int calls = 0;
	struct membership_opts o = {
		.default_port = 9413, .resolve = loopback_only, .resolve_ctx = &calls};

	ck_assert_int_eq(parse("localhost\n"), 0);
	ck_assert_msg(membership_resolve(&hf, "hosts", &o, &mem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(calls, 2); /* numeric first, then the resolver */
	ck_assert_uint_ge(mem.nodes[0].num_addrs, 1);
	ck_assert_uint_le(mem.nodes[0].num_addrs, MEMBERSHIP_MAX_ADDRS);
	for (uint32_t j = 0; j < mem.nodes[0].num_addrs; j++) {
		ck_assert(loopback_addr(&mem.nodes[0].addrs[j]));
		for (uint32_t k = 0; k < j; k++) /* no address twice */
			ck_assert(memcmp(&mem.nodes[0].addrs[j], &mem.nodes[0].addrs[k],
					 sizeof(struct membership_addr)) != 0);
	}
}
END_TEST

START_TEST(a_name_that_does_not_resolve_names_its_line)
{
	/* Addresses no node can have (never a target: refused before any use). */
	ck_assert_int_eq(resolve("127.0.0.1\n0.0.0.0\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "hosts:2: 0.0.0.0: the unspecified address, not a node's "
				  "address"),
		      "%s", err);
	ck_assert_int_eq(resolve("::\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "hosts:1: ::: the unspecified address"), "%s", err);
	ck_assert_int_eq(resolve("224.0.0.1\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "a multicast address"), "%s", err);
	ck_assert_int_eq(resolve("255.255.255.255\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "the broadcast address"), "%s", err);
	ck_assert_int_eq(resolve("ff02::1\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "a multicast address"), "%s", err);

	ck_assert_int_eq(resolve("127.0.0.1\n\nnode-x.invalid\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "hosts:3: node-x.invalid: cannot resolve"), "%s", err);
	ck_assert_uint_eq(mem.num_nodes, 0);
	ck_assert_ptr_null(mem.nodes);
}
END_TEST

START_TEST(two_nodes_at_one_address_and_port_are_refused)
{
	/* Same address, spelled twice: by name and by number, or v4-mapped. */
	ck_assert_int_eq(resolve("127.0.0.1\nlocalhost\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "hosts:2: localhost is 127.0.0.1 port 9413, the same address "
				  "and port as node 0 (line 1: 127.0.0.1)"),
		      "%s", err);
	ck_assert_int_eq(resolve("127.0.0.1\n::ffff:127.0.0.1\n", 9413), -EINVAL);
	ck_assert_msg(strstr(err, "hosts:2:"), "%s", err);
	/* An explicit port equal to the default is the same endpoint. */
	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.1:9413\n", 9413), -EINVAL);
	/* Different ports on one address: two nodes. */
	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.1:9414\nlocalhost:9415\n", 9413), 0);
	ck_assert_uint_eq(mem.num_nodes, 3);
}
END_TEST

/* ---- which node am I ---- */

static struct membership_ifaddr fake_ifs[4];
static struct membership_local fake = {fake_ifs, 0};

/* This "machine": lo with 127.0.0.1/8 (and ::1/128 when @v6). */
static const struct membership_local *machine(int v6)
{
	memset(fake_ifs, 0, sizeof(fake_ifs));
	ck_assert_int_eq(membership_addr_parse("127.0.0.1", &fake_ifs[0].addr), 0);
	fake_ifs[0].prefix_len = 8;
	fake_ifs[0].loopback = 1;
	fake.num_addrs = 1;
	if (v6) {
		ck_assert_int_eq(membership_addr_parse("::1", &fake_ifs[1].addr), 0);
		fake_ifs[1].prefix_len = 128;
		fake_ifs[1].loopback = 1;
		fake.num_addrs = 2;
	}
	return &fake;
}

static int find_self(const char *node_id, const char *bind, int v6)
{
	err[0] = '\0';
	return membership_find_self(&mem, machine(v6), node_id, bind, err, sizeof(err));
}

START_TEST(local_addresses_include_the_loopback_subnet)
{
	struct membership_addr a;
	const struct membership_local *l = machine(0);

	ck_assert_int_eq(membership_addr_parse("127.0.0.1", &a), 0);
	ck_assert(membership_is_local(l, &a));
	ck_assert_int_eq(membership_addr_parse("127.3.2.1", &a), 0);
	ck_assert(membership_is_local(l, &a)); /* the kernel answers all of 127/8 on lo */
	ck_assert_int_eq(membership_addr_parse("::1", &a), 0);
	ck_assert(!membership_is_local(l, &a));
	ck_assert(membership_is_local(machine(1), &a));
	ck_assert_int_eq(membership_addr_parse("::2", &a), 0);
	ck_assert(!membership_is_local(machine(1), &a)); /* ::1/128 is one address */
	/* The subnet rule is for loopback interfaces only; others count their own address. */
	memset(fake_ifs, 0, sizeof(fake_ifs));
	ck_assert_int_eq(membership_addr_parse("127.1.0.1", &fake_ifs[0].addr), 0);
	fake_ifs[0].prefix_len = 16;
	fake.num_addrs = 1;
	ck_assert_int_eq(membership_addr_parse("127.1.0.1", &a), 0);
	ck_assert(membership_is_local(&fake, &a));
	ck_assert_int_eq(membership_addr_parse("127.1.0.2", &a), 0);
	ck_assert(!membership_is_local(&fake, &a));
	ck_assert_int_eq(membership_addr_parse("localhost", &a), -EINVAL);
}
END_TEST

START_TEST(the_one_local_node_is_this_one)
{
	unsetenv("CHI_NODE_ID");
	/* ::1 is not on this machine (no IPv6): only node 1 is. */
	ck_assert_int_eq(resolve("::1\n127.0.0.2\n", 9413), 0);
	ck_assert_msg(find_self(NULL, NULL, 0) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 1);
	ck_assert_int_eq(mem.self_local, 1);
	/* localhost is local by any of its addresses. */
	ck_assert_int_eq(resolve("::1\nlocalhost:9500\n", 9413), 0);
	ck_assert_msg(find_self(NULL, NULL, 0) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 1);
}
END_TEST

START_TEST(several_local_nodes_need_an_id)
{
	unsetenv("CHI_NODE_ID");
	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.2\n127.0.0.3\n", 9413), 0);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -EEXIST);
	ck_assert_msg(strstr(err, "hosts: 3 nodes have an address of this machine: 0 (line 1: "
				  "127.0.0.1), 1 (line 2: 127.0.0.2), 2 (line 3: 127.0.0.3); say "
				  "which this is with CHI_NODE_ID"),
		      "%s", err);
	ck_assert_uint_eq(mem.self, MEMBERSHIP_NO_NODE);

	/* The same address on several ports is ambiguous the same way. */
	ck_assert_int_eq(resolve("127.0.0.1:9413\n127.0.0.1:9414\n", 9413), 0);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -EEXIST);

	/* Long lists are cut. */
	ck_assert_int_eq(resolve("127.0.0.[1-20]\n", 9413), 0);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -EEXIST);
	ck_assert_msg(strstr(err, "7 (line 1: 127.0.0.8) and 12 more"), "%s", err);
}
END_TEST

START_TEST(chi_node_id_chooses)
{
	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.2\n127.0.0.3\n", 9413), 0);
	setenv("CHI_NODE_ID", "2", 1);
	ck_assert_msg(find_self(NULL, NULL, 0) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 2);
	ck_assert_int_eq(mem.self_local, 1);
	/* --node-id's value wins over the environment. */
	ck_assert_msg(find_self("0", NULL, 0) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 0);
	/* Empty means unset. */
	setenv("CHI_NODE_ID", "", 1);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -EEXIST);
	unsetenv("CHI_NODE_ID");
	ck_assert_int_eq(find_self(NULL, NULL, 0), -EEXIST);
	ck_assert_int_eq(find_self("1", NULL, 0), 0);
	ck_assert_uint_eq(mem.self, 1);
}
END_TEST

START_TEST(chi_node_id_errors)
{
	static const char *not_numbers[] = {"x", "-1", "1 ", " 1", "+1", "1.0", "0x1", "2a"};

	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.2\n127.0.0.3\n", 9413), 0);
	for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
		setenv("CHI_NODE_ID", not_numbers[i], 1);
		ck_assert_int_eq(find_self(NULL, NULL, 0), -EINVAL);
		char want[128];
		snprintf(want, sizeof(want),
			 "CHI_NODE_ID='%s' is not a node id: expected a whole "
			 "number (there are 3 nodes (ids 0..2))",
			 not_numbers[i]);
		ck_assert_msg(strstr(err, want), "%s", err);
		ck_assert_uint_eq(mem.self, MEMBERSHIP_NO_NODE);
	}
	setenv("CHI_NODE_ID", "3", 1);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -ERANGE);
	ck_assert_msg(strstr(err, "CHI_NODE_ID=3 is out of range: there are 3 nodes (ids 0..2)"),
		      "%s", err);
	setenv("CHI_NODE_ID", "99999999999999999999999", 1);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -ERANGE);
	setenv("CHI_NODE_ID", "4294967296", 1);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -ERANGE);
	unsetenv("CHI_NODE_ID");
	ck_assert_int_eq(find_self("7", NULL, 0), -ERANGE);
	ck_assert_msg(strstr(err, "--node-id=7 is out of range"), "%s", err);

	uint32_t id;
	ck_assert_int_eq(membership_node_id_parse("0", "CHI_NODE_ID", 1, &id, err, sizeof(err)), 0);
	ck_assert_int_eq(membership_node_id_parse("1", "CHI_NODE_ID", 1, &id, err, sizeof(err)),
			 -ERANGE);
	ck_assert_msg(strstr(err, "there is 1 node (id 0)"), "%s", err);
	ck_assert_int_eq(membership_node_id_parse("007", "x", 8, &id, err, sizeof(err)), 0);
	ck_assert_uint_eq(id, 7);
}
END_TEST

START_TEST(an_explicit_id_need_not_be_local)
{
	unsetenv("CHI_NODE_ID");
	/* ::1 is not on this machine; say it is this node anyway (NAT, containers). */
	ck_assert_int_eq(resolve("127.0.0.1\n::1\n", 9413), 0);
	ck_assert_msg(find_self("1", NULL, 0) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 1);
	ck_assert_int_eq(mem.self_local, 0);
}
END_TEST

START_TEST(no_local_node)
{
	unsetenv("CHI_NODE_ID");
	ck_assert_int_eq(resolve("::1\n", 9413), 0);
	ck_assert_int_eq(find_self(NULL, NULL, 0), -ENOENT);
	ck_assert_msg(strstr(err, "hosts: no node is this machine: none of the 1 hosts has an "
				  "address of this machine (127.0.0.1 (and its loopback subnet)); "
				  "say which node this is with CHI_NODE_ID"),
		      "%s", err);
}
END_TEST

START_TEST(bind_address_chooses)
{
	unsetenv("CHI_NODE_ID");
	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.2\n::1\n", 9413), 0);
	ck_assert_msg(find_self(NULL, "127.0.0.2", 1) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 1);
	ck_assert_msg(find_self(NULL, "::1", 1) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 2);
	/* Local but in no entry; in an entry but not local; not an address. */
	ck_assert_int_eq(find_self(NULL, "127.0.0.9", 1), -ENOENT);
	ck_assert_msg(strstr(err, "hosts: no node has networking.bind's address 127.0.0.9"), "%s",
		      err);
	ck_assert_int_eq(find_self(NULL, "::1", 0), -ENOENT);
	ck_assert_msg(strstr(err, "networking.bind ::1 is not an address of this machine"), "%s",
		      err);
	ck_assert_int_eq(find_self(NULL, "localhost", 1), -EINVAL);
	ck_assert_msg(strstr(err, "not a numeric IPv4 or IPv6 address"), "%s", err);
	/* With an explicit id, bind must not be another node's address. */
	ck_assert_int_eq(find_self("0", "127.0.0.2", 1), -EINVAL);
	ck_assert_msg(strstr(err, "--node-id=0 is node 0 (line 1: 127.0.0.1), but networking.bind "
				  "127.0.0.2 is the address of node 1 (line 2: 127.0.0.2)"),
		      "%s", err);
	ck_assert_int_eq(find_self("1", "127.0.0.2", 1), 0);
	ck_assert_int_eq(find_self("1", "127.0.0.9", 1), 0); /* an address no node has: NAT */
	ck_assert_uint_eq(mem.self, 1);
	/* One address on two ports: bind cannot tell them apart. */
	ck_assert_int_eq(resolve("127.0.0.1:9413\n127.0.0.1:9414\n", 9413), 0);
	ck_assert_int_eq(find_self(NULL, "127.0.0.1", 0), -EEXIST);
	ck_assert_msg(strstr(err, "networking.bind 127.0.0.1 is the address of 2 nodes"), "%s",
		      err);
	setenv("CHI_NODE_ID", "1", 1);
	ck_assert_int_eq(find_self(NULL, "127.0.0.1", 0), 0);
	ck_assert_uint_eq(mem.self, 1);
}
END_TEST

START_TEST(this_machine_for_real)
{
	struct membership_local l;
	struct membership_addr a;
	int lo4 = 0;

	ck_assert_int_eq(membership_local_load(&l), 0);
	for (uint32_t i = 0; i < l.num_addrs; i++) {
		char text[MEMBERSHIP_ADDR_STRLEN];
		membership_addr_format(&l.addrs[i].addr, text, sizeof(text));
		if (l.addrs[i].loopback && strcmp(text, "127.0.0.1") == 0)
			lo4 = l.addrs[i].prefix_len == 8;
	}
	if (!lo4) {
		membership_local_fini(&l);
		fprintf(stderr, "this_machine_for_real: no 127.0.0.1/8 on a loopback interface; "
				"only the injected machine was tested\n");
		return;
	}
	ck_assert_int_eq(membership_addr_parse("127.0.0.1", &a), 0);
	ck_assert(membership_is_local(&l, &a));
	ck_assert_int_eq(membership_addr_parse("127.0.0.2", &a), 0);
	ck_assert(membership_is_local(&l, &a));
	membership_local_fini(&l);

	unsetenv("CHI_NODE_ID");
	ck_assert_int_eq(resolve("127.0.0.1\n127.0.0.2\n", 9413), 0);
	ck_assert_int_eq(membership_find_self(&mem, NULL, NULL, NULL, err, sizeof(err)), -EEXIST);
	setenv("CHI_NODE_ID", "1", 1);
	ck_assert_int_eq(membership_find_self(&mem, NULL, NULL, NULL, err, sizeof(err)), 0);
	ck_assert_uint_eq(mem.self, 1);
}
END_TEST

/* ---- from the config ---- */

static char tmpdir[64];

static void make_hostfile(const char *text, char *path, size_t len)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/chi-membership-XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	}
	snprintf(path, len, "%s/hosts", tmpdir);
	write_file(path, text);
}

static void config_with(struct config *cfg, const char *bootstrap, const char *hostfile)
{
	config_defaults(cfg);
	snprintf(cfg->bootstrap, sizeof(cfg->bootstrap), "%s", bootstrap);
	snprintf(cfg->hostfile, sizeof(cfg->hostfile), "%s", hostfile);
}

START_TEST(load_from_config)
{
	struct config cfg;
	char path[256];

	unsetenv("CHI_NODE_ID");
	/* none: one node, this one. */
	config_with(&cfg, "none", "");
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), 0);
	ck_assert_uint_eq(mem.num_nodes, 1);
	ck_assert_uint_eq(mem.self, 0);
	ck_assert_uint_eq(mem.nodes[0].port, 9413);
	ck_assert_uint_eq(mem.nodes[0].num_addrs, 0);
	membership_fini(&mem);
	setenv("CHI_NODE_ID", "1", 1);
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), -ERANGE);
	ck_assert_msg(strstr(err, "CHI_NODE_ID=1 is out of range: there is 1 node"), "%s", err);
	unsetenv("CHI_NODE_ID");

	/* hostfile: parsed, resolved, this node found (one loopback node). */
	make_hostfile("127.0.0.1:9500\n", path, sizeof(path));
	config_with(&cfg, "hostfile", path);
	ck_assert_msg(membership_load(&cfg, NULL, &mem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(mem.self, 0);
	ck_assert_uint_eq(mem.nodes[0].port, 9500);
	ck_assert_str_eq(mem.source, path);
	membership_fini(&mem);

	/* Several local nodes: the error, then the override. */
	make_hostfile("127.0.0.1\n127.0.0.2\n", path, sizeof(path));
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), -EEXIST);
	ck_assert_msg(strstr(err, "CHI_NODE_ID"), "%s", err);
	ck_assert_ptr_null(mem.nodes);
	ck_assert_int_eq(membership_load(&cfg, "1", &mem, err, sizeof(err)), 0);
	ck_assert_uint_eq(mem.self, 1);
	membership_fini(&mem);
	snprintf(cfg.bind, sizeof(cfg.bind), "127.0.0.2");
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), 0);
	ck_assert_uint_eq(mem.self, 1);
	membership_fini(&mem);
	cfg.bind[0] = '\0';

	/* ${VAR} in the path, as upstream expands it. */
	setenv("CHI_TEST_HOSTDIR", tmpdir, 1);
	config_with(&cfg, "hostfile", "${CHI_TEST_HOSTDIR}/hosts");
	ck_assert_msg(membership_load(&cfg, "0", &mem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(mem.source, path);
	membership_fini(&mem);
	unsetenv("CHI_TEST_HOSTDIR");
	ck_assert_int_eq(membership_load(&cfg, "0", &mem, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "${CHI_TEST_HOSTDIR} is not set"), "%s", err);

	/* A hostfile that does not parse, one that is missing. */
	make_hostfile("127.0.0.1\nn[3-1]\n", path, sizeof(path));
	config_with(&cfg, "hostfile", path);
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), -EINVAL);
	char want[300];
	snprintf(want, sizeof(want), "networking.hostfile: %s:2: reversed range 3-1", path);
	ck_assert_msg(strstr(err, want), "%s", err);
	unlink(path);
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "cannot open"), "%s", err);

	/* pmix: only the runtime, under its launcher, learns the membership
	 * (bootstrap_pmix_init); hostfile needs its path. */
	config_with(&cfg, "pmix", "");
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), -ENOTSUP);
	ck_assert_msg(strstr(err, "comes from the launcher"), "%s", err);
	config_with(&cfg, "hostfile", "");
	ck_assert_int_eq(membership_load(&cfg, NULL, &mem, err, sizeof(err)), -EINVAL);
	rmdir(tmpdir);
}
END_TEST

START_TEST(hostfile_path_expansion)
{
	char buf[64];

	setenv("CHI_TEST_A", "/x", 1);
	setenv("CHI_TEST_EMPTY", "", 1);
	ck_assert_int_eq(membership_hostfile_path("${CHI_TEST_A}/h${CHI_TEST_EMPTY}$x$", buf,
						  sizeof(buf), err, sizeof(err)),
			 0);
	ck_assert_str_eq(buf, "/x/h$x$");
	ck_assert_int_eq(
		membership_hostfile_path("${CHI_TEST_A", buf, sizeof(buf), err, sizeof(err)),
		-EINVAL);
	ck_assert_int_eq(membership_hostfile_path("${}", buf, sizeof(buf), err, sizeof(err)),
			 -EINVAL);
	ck_assert_int_eq(membership_hostfile_path("${A-B}", buf, sizeof(buf), err, sizeof(err)),
			 -EINVAL);
	ck_assert_int_eq(membership_hostfile_path("0123456789", buf, 8, err, sizeof(err)),
			 -ENAMETOOLONG);
}
END_TEST

START_TEST(config_check_shows_the_expansion)
{
	struct config cfg;
	char path[256], *text = NULL;
	size_t len;
	FILE *out;

	unsetenv("CHI_NODE_ID");
	make_hostfile("# local cluster\n127.0.0.[1-2]\n::1:x\n", path, sizeof(path));
	config_with(&cfg, "hostfile", path);
	out = open_memstream(&text, &len);
	ck_assert_int_eq(membership_check(&cfg, out, err, sizeof(err)), -EINVAL);
	fclose(out);
	ck_assert_msg(strstr(err, ":3: '::1:x' is neither"), "%s", err);
	ck_assert_uint_eq(len, 0); /* nothing printed for a file that does not parse */
	free(text);

	/* Literals only: membership_check resolves names with the system's resolver. */
	make_hostfile("# local cluster\n127.0.0.[1-2]\n127.0.0.3:9500\n", path, sizeof(path));
	out = open_memstream(&text, &len);
	ck_assert_msg(membership_check(&cfg, out, err, sizeof(err)) == 0, "%s", err);
	fclose(out);
	ck_assert_msg(strstr(text, "# networking.hostfile "), "%s", text);
	ck_assert_msg(strstr(text, ": 3 nodes\n"), "%s", text);
	ck_assert_msg(strstr(text, "#   node 0: 127.0.0.1 port 9413 (line 2) -> 127.0.0.1\n"), "%s",
		      text);
	ck_assert_msg(strstr(text, "#   node 2: 127.0.0.3 port 9500 (line 3) -> 127.0.0.3"), "%s",
		      text);
	ck_assert_msg(strstr(text, "# this machine: "), "%s", text);
	free(text);

	/* none prints nothing. */
	config_with(&cfg, "none", "");
	out = open_memstream(&text, &len);
	ck_assert_int_eq(membership_check(&cfg, out, err, sizeof(err)), 0);
	fclose(out);
	ck_assert_uint_eq(len, 0);
	free(text);
	unlink(path);
	rmdir(tmpdir);
}
END_TEST

/* ---- endpoints (bootstrap pmix) ---- */

START_TEST(endpoints_format_and_parse)
{
	struct membership_addr a;
	uint16_t port = 0;
	char text[MEMBERSHIP_ENDPOINT_STRLEN];

	ck_assert_int_eq(membership_addr_parse("127.0.0.1", &a), 0);
	membership_endpoint_format(&a, 9413, text, sizeof(text));
	ck_assert_str_eq(text, "127.0.0.1:9413");
	ck_assert_int_eq(membership_addr_parse("::1", &a), 0);
	membership_endpoint_format(&a, 65535, text, sizeof(text));
	ck_assert_str_eq(text, "[::1]:65535");
	ck_assert_int_eq(membership_addr_parse("fe80::1", &a), 0);
	a.scope_id = 2;
	membership_endpoint_format(&a, 1, text, sizeof(text));
	ck_assert_str_eq(text, "[fe80::1%2]:1");

	/* What is formatted parses back to the same endpoint. */
	ck_assert_int_eq(membership_endpoint_parse("[fe80::1%2]:1", &a, &port), 0);
	ck_assert_int_eq(a.family, AF_INET6);
	ck_assert_uint_eq(a.scope_id, 2);
	ck_assert_uint_eq(port, 1);
	ck_assert_int_eq(membership_endpoint_parse("127.0.0.3:9415", &a, &port), 0);
	ck_assert_int_eq(a.family, AF_INET);
	ck_assert_uint_eq(a.bytes[3], 3);
	ck_assert_uint_eq(port, 9415);
	ck_assert_int_eq(membership_endpoint_parse("[::1]:9413", &a, &port), 0);
	ck_assert_int_eq(a.family, AF_INET6);
	/* v4-mapped is the IPv4 address, as in a hostfile. */
	ck_assert_int_eq(membership_endpoint_parse("[::ffff:127.0.0.1]:9413", &a, &port), -EINVAL);

	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:94a",
		"127.0.0.1:123456", ":9413", "localhost:9413", "::1:9413", "[::1]9413", "[::1:9413",
		"[127.0.0.1]:9413", "127.0.0.1%2:9413", "[fe80::1%]:9413", "[fe80::1%x]:9413",
		"0.0.0.0:9413", "224.0.0.1:9413", "255.255.255.255:9413", "[::]:9413",
		"127.0.0.1:+9413", "127.0.0.1:-1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(membership_endpoint_parse(bad[i], &a, &port) == -EINVAL,
			      "'%s' parsed", bad[i]);
	ck_assert_int_eq(membership_endpoint_parse(NULL, &a, &port), -EINVAL);
}
END_TEST

START_TEST(membership_from_launcher_endpoints)
{
	static const char *const eps[] = { "127.0.0.1:9413", "127.0.0.1:9414", "[::1]:9413" };

	err[0] = '\0';
	ck_assert_msg(membership_from_endpoints(eps, 3, 1, "PMIx namespace x", &mem, err,
						sizeof(err)) == 0,
		      "%s", err);
	ck_assert_uint_eq(mem.num_nodes, 3);
	ck_assert_uint_eq(mem.self, 1);
	ck_assert_int_eq(mem.self_local, 1);
	ck_assert_str_eq(mem.source, "PMIx namespace x");
	for (uint32_t i = 0; i < 3; i++) {
		char text[MEMBERSHIP_ENDPOINT_STRLEN];
		ck_assert_uint_eq(mem.nodes[i].num_addrs, 1);
		ck_assert_uint_eq(mem.nodes[i].line, 0);
		ck_assert_str_eq(mem.nodes[i].host, eps[i]);
		membership_endpoint_format(&mem.nodes[i].addrs[0], mem.nodes[i].port, text,
					   sizeof(text));
		ck_assert_str_eq(text, eps[i]);
	}
	membership_fini(&mem);

	/* Two ranks at one endpoint (two on one machine without a port of their own). */
	static const char *const dup[] = { "127.0.0.1:9413", "127.0.0.2:9413", "127.0.0.1:9413" };
	ck_assert_int_eq(membership_from_endpoints(dup, 3, 0, "PMIx namespace x", &mem, err,
						   sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "PMIx namespace x: node 2 is at 127.0.0.1:9413, the same "
				  "address and port as node 0"),
		      "%s", err);
	ck_assert_ptr_null(mem.nodes);

	/* A rank's text that is not an endpoint names the rank. */
	static const char *const junk[] = { "127.0.0.1:9413", "node7" };
	ck_assert_int_eq(membership_from_endpoints(junk, 2, 0, "P", &mem, err, sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "P: node 1: 'node7' is not an endpoint"), "%s", err);
	ck_assert_uint_eq(mem.num_nodes, 0);

	/* self must be one of them; a job has someone. */
	ck_assert_int_eq(membership_from_endpoints(eps, 3, 3, "P", &mem, err, sizeof(err)),
			 -EINVAL);
	ck_assert_int_eq(membership_from_endpoints(eps, 0, 0, "P", &mem, err, sizeof(err)),
			 -EINVAL);

	/* One node: itself, nothing to dial. */
	ck_assert_int_eq(membership_from_endpoints(eps, 1, 0, "P", &mem, err, sizeof(err)), 0);
	ck_assert_uint_eq(mem.num_nodes, 1);
}
END_TEST

START_TEST(host_addr_is_the_first_usable_one)
{
	struct membership_addr a;

	ck_assert_int_eq(membership_host_addr("127.0.0.5", NULL, &a, err, sizeof(err)), 0);
	ck_assert_uint_eq(a.bytes[3], 5);
	ck_assert_int_eq(membership_host_addr("0.0.0.0", NULL, &a, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "0.0.0.0: resolves to no usable"), "%s", err);
}
END_TEST

/* bootstrap pmix, client side: CHI_NODE_ID, else the lowest node with a runtime socket in
 * the run directory for the config's port; never PMIX_RANK (a client's own MPI rank). */
START_TEST(pmix_client_node_is_the_local_runtime)
{
	struct config cfg;
	char dir[] = "/tmp/chi-pmix-client-XXXXXX", path[256];
	uint32_t node = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	config_with(&cfg, "pmix", "");
	snprintf(cfg.run_dir, sizeof(cfg.run_dir), "%s", dir);
	cfg.port = 9413;
	unsetenv("CHI_NODE_ID");
	setenv("PMIX_RANK", "17", 1);

	ck_assert_int_eq(membership_client_node(&cfg, &node, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "no runtime of port 9413 on this machine"), "%s", err);
	static const char *const names[] = {
		"runtime-9413-node2.sock", "runtime-9413-node1.sock", "runtime-9413-node0.lock",
		"runtime-9414-node0.sock", "runtime-9413-nodex.sock", "runtime-9413-node.sock",
		"runtime-9413-node3.sock.tmp",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		write_file(path, "");
	}
	ck_assert_msg(membership_client_node(&cfg, &node, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(node, 1);
	setenv("CHI_NODE_ID", "5", 1);
	ck_assert_int_eq(membership_client_node(&cfg, &node, err, sizeof(err)), 0);
	ck_assert_uint_eq(node, 5);
	setenv("CHI_NODE_ID", "x", 1);
	ck_assert_int_eq(membership_client_node(&cfg, &node, err, sizeof(err)), -EINVAL);
	unsetenv("CHI_NODE_ID");
	unsetenv("PMIX_RANK");

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		one_host_per_line_with_kinds_and_lines,
		comments_blank_lines_and_whitespace,
		ranges_keep_zero_padding,
		lists_and_ranges_mix,
		several_groups_expand_as_a_product_in_order,
		node_id_is_the_index_after_expansion,
		ports,
		ipv6_literals_are_bare_and_never_expanded,
		bad_ranges_name_their_line,
		expansion_is_capped,
		long_lines_and_names,
		bad_hosts_are_refused,
		duplicates_are_errors,
		empty_files_are_errors,
		files,
		literals_resolve_without_lookup,
		localhost_resolves_to_loopback,
		a_name_that_does_not_resolve_names_its_line,
		two_nodes_at_one_address_and_port_are_refused,
		local_addresses_include_the_loopback_subnet,
		the_one_local_node_is_this_one,
		several_local_nodes_need_an_id,
		chi_node_id_chooses,
		chi_node_id_errors,
		an_explicit_id_need_not_be_local,
		no_local_node,
		bind_address_chooses,
		this_machine_for_real,
		load_from_config,
		hostfile_path_expansion,
		config_check_shows_the_expansion,
		endpoints_format_and_parse,
		membership_from_launcher_endpoints,
		host_addr_is_the_first_usable_one,
		pmix_client_node_is_the_local_runtime,
	};

	log_threshold = CHI_LOG_LEVEL_ERROR;
	return chi_check_main("hostfile", 60, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
