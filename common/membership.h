/* Cluster membership: who the nodes are, where to reach them, and which one this process
 * is (docs/config.md, "Hostfile" and "Which node am I"). Built from the config's
 * networking.bootstrap: `none` (one node), `hostfile` (hostfile.h, then resolution), `pmix`
 * (the launcher's ranks: bootstrap_pmix.h builds the same structure with
 * membership_from_endpoints()). The runtime calls membership_load() at start, or
 * bootstrap_pmix_init() for `pmix`; `chimaera config check` calls membership_check().
 *
 * Resolution: address literals are taken as they are (no lookup); a name goes through
 * getaddrinfo, numeric forms first (AI_NUMERICHOST), then the system's resolver
 * (/etc/hosts, DNS), without AI_ADDRCONFIG (in a network namespace with only `lo`, glibc
 * counts no IPv4 address and would drop 127.0.0.1). A node keeps every IPv4 and IPv6 address
 * its name gives, in getaddrinfo's order, up to MEMBERSHIP_MAX_ADDRS. */
#ifndef CHI_COMMON_MEMBERSHIP_H
#define CHI_COMMON_MEMBERSHIP_H

#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "config.h"
#include "hostfile.h"

/** Addresses kept per node (a name may resolve to more). */
#define MEMBERSHIP_MAX_ADDRS 8
/** Longest text membership_addr_format() writes, NUL included. */
#define MEMBERSHIP_ADDR_STRLEN 64
/** No node: membership.self before it is known. */
#define MEMBERSHIP_NO_NODE UINT32_MAX

struct membership_addr {
	int family;	   /* AF_INET or AF_INET6 */
	uint8_t bytes[16]; /* network order; the first 4 for AF_INET */
	uint32_t scope_id; /* IPv6 scope (link-local), else 0 */
};

struct membership_node {
	const char *host;		     /* as the hostfile wrote it; owned by the membership */
	uint32_t line;			     /* hostfile line; 0 when no hostfile */
	uint16_t port;			     /* its ":port", else networking.port */
	uint32_t num_addrs;		     /* 0 only for the single node of bootstrap `none` */
	const struct membership_addr *addrs; /* connect in this order; owned by the membership */
};

struct membership {
	char source[PATH_MAX];	       /* the hostfile path, or "" */
	struct membership_node *nodes; /* node id = index; owned */
	uint32_t num_nodes;
	uint32_t self;	/* this process's node id, MEMBERSHIP_NO_NODE until found */
	int self_local; /* 1 when one of self's addresses is on this machine (0: chosen by
			   id only, e.g. behind NAT: the runtime should say so) */
	struct membership_addr *addrs; /* storage of every node's addresses; owned */
	char *strings;		       /* storage of every node's host; owned */
};

/** One address of this machine (membership_local). */
struct membership_ifaddr {
	struct membership_addr addr;
	uint8_t prefix_len; /* of the interface's netmask */
	uint8_t loopback;   /* on an IFF_LOOPBACK interface */
};

/** The addresses of this machine; built by membership_local_load() or by hand (tests). */
struct membership_local {
	struct membership_ifaddr *addrs; /* owned */
	uint32_t num_addrs;
};

/** getaddrinfo's shape, so tests can resolve without DNS. Results are freed with
 *  freeaddrinfo(). @return 0 or an EAI_* code. */
typedef int membership_resolve_fn(void *ctx, const char *host, const struct addrinfo *hints,
				  struct addrinfo **res);

struct membership_opts {
	uint16_t default_port;		/* for entries without ":port": networking.port */
	membership_resolve_fn *resolve; /* NULL: getaddrinfo */
	void *resolve_ctx;
};

/**
 * Resolve every entry of @p hf into @p m (m->self stays MEMBERSHIP_NO_NODE).
 * @param source Hostfile path for messages and m->source.
 * @param err "source:line: host: reason" on failure.
 * @return 0; -EINVAL (a name that does not resolve, two nodes at one address and port),
 *         -ENOMEM.
 */
int membership_resolve(const struct hostfile *hf, const char *source,
		       const struct membership_opts *opts, struct membership *m, char *err,
		       size_t err_len);

/** Release what @p m owns; @p m is left empty. */
void membership_fini(struct membership *m);

/**
 * Parse a node id given as text (the runtime's `--node-id N`, the env `CHI_NODE_ID`).
 * @param what Names the source in messages ("CHI_NODE_ID", "--node-id").
 * @return 0 with @p out set; -EINVAL (not a plain decimal), -ERANGE (not below
 *         @p num_nodes); @p err says which, with the valid range.
 */
int membership_node_id_parse(const char *text, const char *what, uint32_t num_nodes, uint32_t *out,
			     char *err, size_t err_len);

/** The addresses of this machine's interfaces (getifaddrs). @return 0 or -errno. */
int membership_local_load(struct membership_local *local);
void membership_local_fini(struct membership_local *local);

/**
 * 1 when @p a is an address of this machine: one an interface holds, or one inside the
 * subnet of an address on a loopback interface (Linux answers the whole 127.0.0.0/8 on lo
 * though getifaddrs lists only 127.0.0.1/8).
 */
int membership_is_local(const struct membership_local *local, const struct membership_addr *a);

/**
 * Find which node this process is, by the rules of docs/config.md ("Which node am I"):
 * an explicit id first (@p node_id, else the env CHI_NODE_ID), then @p bind, then the one
 * node with an address of this machine.
 * @param node_id `--node-id`'s value, or NULL (then CHI_NODE_ID; empty means unset).
 * @param bind networking.bind, or NULL / "".
 * @param local This machine's addresses; NULL loads them (getifaddrs).
 * @return 0 with m->self and m->self_local set; -EINVAL / -ERANGE (bad id), -ENOENT (no node
 *         is local, or none has the bind address), -EEXIST (several are: choose with
 *         CHI_NODE_ID), -errno from getifaddrs.
 */
int membership_find_self(struct membership *m, const struct membership_local *local,
			 const char *node_id, const char *bind, char *err, size_t err_len);

/**
 * The runtime's entry point: the membership @p cfg's networking.bootstrap describes, with
 * this process's node found. `none`: one node, id 0 (an explicit id must then be 0).
 * `hostfile`: networking.hostfile (`${VAR}` expanded; relative to the current directory)
 * parsed, resolved, self found. `pmix`: -ENOTSUP (only the runtime, under its launcher, can
 * learn a PMIx job's membership: bootstrap_pmix_init()).
 * @param node_id As membership_find_self().
 */
int membership_load(const struct config *cfg, const char *node_id, struct membership *m, char *err,
		    size_t err_len);

/** Where `chimaera cluster up` keeps the hostfile and secret of a cluster it started on this
 *  machine for @p cfg's run directory and port: <run_dir>/cluster-<port>. */
int membership_local_cluster_dir(const struct config *cfg, char *buf, size_t len);

/**
 * Which node's runtime a client or the CLI on this machine talks to. A single-node config
 * (bootstrap `none`): MEMBERSHIP_NO_NODE, unless `chimaera cluster up` runs a cluster on its
 * port (membership_local_cluster_dir holds a hostfile): then CHI_NODE_ID's node, else node 0.
 * A cluster config: CHI_NODE_ID when set; else the one node with an address of this
 * machine; when several have one (a cluster on one machine), the lowest of them.
 * Bootstrap `pmix` (the membership is the launcher's, unknown here): CHI_NODE_ID, else the
 * lowest node whose runtime socket exists on this machine for the config's port. PMIX_RANK
 * is not used: a client that is a rank of its own MPI job has its job's rank there.
 * @return 0, or as membership_load() with @p err filled.
 */
int membership_client_node(const struct config *cfg, uint32_t *node, char *err, size_t err_len);

/**
 * For `chimaera config check`: with bootstrap `hostfile`, parse and resolve the hostfile and
 * print its expansion to @p out as YAML comments (one line per node), then which node this
 * machine would be, or why that is not known (informational: the checking machine need not
 * be a member). Prints nothing for `none`.
 * @return 0, or the error of parsing or resolving, with @p err filled.
 */
int membership_check(const struct config *cfg, FILE *out, char *err, size_t err_len);

/** networking.hostfile with `${VAR}` expanded. @return 0, -EINVAL (unset variable, bad
 *  syntax), -ENAMETOOLONG. */
int membership_hostfile_path(const char *value, char *buf, size_t len, char *err, size_t err_len);

/** Parse a numeric IPv4 or IPv6 address (no name, no port). @return 0 or -EINVAL. */
int membership_addr_parse(const char *text, struct membership_addr *out);

/** @p a as text ("127.0.0.1", "::1", "fe80::1%2"). */
void membership_addr_format(const struct membership_addr *a, char *buf, size_t len);

/** @p a and @p port as a socket address for bind/connect. @return its length. */
socklen_t membership_addr_sockaddr(const struct membership_addr *a, uint16_t port,
				   struct sockaddr_storage *out);

/* ---- endpoints: a node's address and port as one text, for bootstraps that exchange them
 * (bootstrap_pmix.h): "127.0.0.1:9413", "[::1]:9413", "[fe80::1%2]:9413". ---- */

/** Longest text membership_endpoint_format() writes, NUL included. */
#define MEMBERSHIP_ENDPOINT_STRLEN (MEMBERSHIP_ADDR_STRLEN + 8)

/** @p a and @p port as an endpoint text (IPv6 in brackets). */
void membership_endpoint_format(const struct membership_addr *a, uint16_t port, char *buf,
				size_t len);

/**
 * Parse an endpoint text of membership_endpoint_format(): a numeric address (no name), a
 * colon, a port in 1..65535.
 * @return 0 with @p a and @p port set; -EINVAL (no port, a bad port, not a numeric address,
 *         an address no node can have: unspecified, multicast, broadcast).
 */
int membership_endpoint_parse(const char *text, struct membership_addr *a, uint16_t *port);

/**
 * Build @p m from one endpoint per node, node id = index (a launcher's ranks), this process
 * being node @p self. Each node's host is its endpoint text, its line 0. The texts are
 * copied: the caller keeps @p endpoints; membership_fini() releases what @p m holds.
 * @param source Says where the endpoints came from, for messages and m->source.
 * @param err "source: node N: reason" on failure.
 * @return 0; -EINVAL (an endpoint that does not parse, two nodes at one address and port,
 *         @p self not below @p n, @p n 0), -ENOMEM.
 */
int membership_from_endpoints(const char *const *endpoints, uint32_t n, uint32_t self,
			      const char *source, struct membership *m, char *err, size_t err_len);

/**
 * The address a node named @p host listens on when nothing else says: the first usable one
 * its name resolves to (as a hostfile entry would: numeric first, then /etc/hosts and DNS).
 * @return 0, or -EINVAL with @p err saying why.
 */
int membership_host_addr(const char *host, const struct membership_opts *opts,
			 struct membership_addr *out, char *err, size_t err_len);

#endif
