/* The pool query string grammar (shared by the config loader and the client library). */
#include <chimaera/pool_query.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const mode_names[CHI_QUERY_MODE_COUNT] = {
	[CHI_QUERY_LOCAL] = "local",	       [CHI_QUERY_DIRECT_ID] = "direct_id",
	[CHI_QUERY_DIRECT_HASH] = "direct_hash", [CHI_QUERY_RANGE] = "range",
	[CHI_QUERY_BROADCAST] = "broadcast",   [CHI_QUERY_PHYSICAL] = "physical",
	[CHI_QUERY_DYNAMIC] = "dynamic",
};

static const unsigned mode_args[CHI_QUERY_MODE_COUNT] = {
	[CHI_QUERY_DIRECT_ID] = 1, [CHI_QUERY_DIRECT_HASH] = 1, [CHI_QUERY_RANGE] = 2,
	[CHI_QUERY_PHYSICAL] = 1,
};

/* Parse one unsigned decimal argument up to ':' or the end. */
static int parse_arg(const char **p, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)**p))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(*p, &end, 10);
	if (errno == ERANGE || (*end != '\0' && *end != ':'))
		return -EINVAL;
	*out = v;
	*p = end;
	return 0;
}

int chi_pool_query_parse(const char *s, struct chi_pool_query *out)
{
	struct chi_pool_query q = { 0, 0, 0, 0 };
	uint64_t args[2] = { 0, 0 };

	if (!s || !out)
		return -EINVAL;
	size_t name_len = strcspn(s, ":");
	for (unsigned m = 0; m < CHI_QUERY_MODE_COUNT; m++) {
		if (strlen(mode_names[m]) != name_len || strncasecmp(s, mode_names[m], name_len))
			continue;
		const char *p = s + name_len;
		for (unsigned i = 0; i < mode_args[m]; i++) {
			if (*p != ':')
				return -EINVAL;
			p++;
			if (parse_arg(&p, &args[i]) != 0)
				return -EINVAL;
		}
		if (*p != '\0')
			return -EINVAL;
		if (m == CHI_QUERY_RANGE && args[1] == 0)
			return -EINVAL;
		q.mode = m;
		q.a = args[0];
		q.b = args[1];
		*out = q;
		return 0;
	}
	return -EINVAL;
}

int chi_pool_query_format(const struct chi_pool_query *q, char *buf, size_t len)
{
	if (!q || q->mode >= CHI_QUERY_MODE_COUNT)
		return -EINVAL;
	const char *name = mode_names[q->mode];
	switch (mode_args[q->mode]) {
	case 1:
		return snprintf(buf, len, "%s:%llu", name, (unsigned long long)q->a);
	case 2:
		return snprintf(buf, len, "%s:%llu:%llu", name, (unsigned long long)q->a,
				(unsigned long long)q->b);
	default:
		return snprintf(buf, len, "%s", name);
	}
}
