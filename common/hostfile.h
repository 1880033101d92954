/* The hostfile: cluster membership as a list of hosts, one per line (docs/config.md,
 * "Hostfile"). This layer is syntax only: it expands ranges, classifies each host as an
 * IPv4 literal, an IPv6 literal or a name, and refuses duplicates. It never touches the
 * network; membership.h resolves the entries and finds which one this process is.
 *
 * Node id = index into hostfile.entries (the order of the file after expansion). */
#ifndef CHI_COMMON_HOSTFILE_H
#define CHI_COMMON_HOSTFILE_H

#include <stddef.h>
#include <stdint.h>

/** At most this many hosts after expansion, over the whole file. */
#define HOSTFILE_MAX_NODES 65536u
/** Longest line, in bytes without its newline (comments count). */
#define HOSTFILE_MAX_LINE 4096u
/** Largest file hostfile_parse_file() reads. */
#define HOSTFILE_MAX_FILE (64u << 20)
/** Longest host name after expansion (DNS: 253 characters). */
#define HOSTFILE_HOST_MAX 253u

enum hostfile_kind {
	HOSTFILE_NAME = 0, /* a name for the resolver (DNS, /etc/hosts) */
	HOSTFILE_IPV4 = 1, /* a dotted-quad literal */
	HOSTFILE_IPV6 = 2, /* a bare IPv6 literal (never range-expanded, never with a port) */
};

struct hostfile_entry {
	const char *host; /* as written after expansion, without ":port"; owned by the hostfile */
	uint32_t line;	  /* 1-based line of the file it came from */
	uint16_t port;	  /* from "host:port"; 0 when none was given (networking.port applies) */
	uint8_t kind;	  /* enum hostfile_kind */
};

struct hostfile {
	struct hostfile_entry *entries; /* node id = index; owned, freed by hostfile_fini() */
	uint32_t num_entries;
	char *strings; /* storage of every entry's host; owned */
};

/**
 * Parse hostfile text.
 * @param name Used in messages ("name:line: reason"): the file's path, "PMIx", ...
 * @param text Need not be NUL-terminated; a NUL byte inside is an error.
 * @param hf Filled on success (release with hostfile_fini()); left empty on failure.
 * @param err Filled with "name:line: reason" (or "name: reason" for the file as a whole).
 * @return 0; -EINVAL (syntax, duplicate host, no hosts), -E2BIG (more than
 *         HOSTFILE_MAX_NODES hosts), -ENOMEM.
 */
int hostfile_parse_string(const char *name, const char *text, size_t len, struct hostfile *hf,
			  char *err, size_t err_len);

/**
 * Read and parse the file at @p path (relative paths from the current directory).
 * @return as hostfile_parse_string(), or -errno when it cannot be read, -EFBIG when it is
 *         larger than HOSTFILE_MAX_FILE.
 */
int hostfile_parse_file(const char *path, struct hostfile *hf, char *err, size_t err_len);

/** Release what @p hf owns; @p hf is left empty (finishing twice is harmless). */
void hostfile_fini(struct hostfile *hf);

#endif
