/* cluster_kvs_probe: one kvs Put or Get through a node's runtime, for shell tests of clusters
 * (test_cluster_pmix.sh). The node is the client's usual choice: CHI_NODE_ID, the config
 * from CHI_SERVER_CONF.
 *
 *   cluster_kvs_probe put MAJOR.MINOR KEY VALUE   exit 0 when stored
 *   cluster_kvs_probe get MAJOR.MINOR KEY         prints the value, exit 0
 *
 * Exit 1 on any failure, with the reason on stderr; 2 on bad arguments. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>

static int parse_pool(const char *text, struct chi_pool_id *id)
{
	char *end;
	unsigned long major = strtoul(text, &end, 10);
	if (end == text || *end != '.' || major > UINT32_MAX)
		return -EINVAL;
	const char *m = end + 1;
	unsigned long minor = strtoul(m, &end, 10);
	if (end == m || *end || minor > UINT32_MAX)
		return -EINVAL;
	id->major = (uint32_t)major;
	id->minor = (uint32_t)minor;
	return 0;
}

int main(int argc, char **argv)
{
	struct chi_client *c;
	struct chi_pool_id pool;
	int put = argc == 5 && !strcmp(argv[1], "put");
	int get = argc == 4 && !strcmp(argv[1], "get");

	if ((!put && !get) || parse_pool(argv[2], &pool) != 0) {
		fprintf(stderr, "usage: %s put MAJOR.MINOR KEY VALUE | get MAJOR.MINOR KEY\n",
			argv[0]);
		return 2;
	}
	int rc = chi_client_connect(NULL, &c);
	if (rc) {
		fprintf(stderr, "cluster_kvs_probe: cannot attach: %s\n", strerror(-rc));
		return 1;
	}
	const char *key = argv[3];
	if (put) {
		rc = chi_kvs_put(c, pool, key, strlen(key), argv[4], strlen(argv[4]));
	} else {
		char buf[4096];
		uint64_t len = 0;
		rc = chi_kvs_get(c, pool, key, strlen(key), buf, sizeof(buf) - 1, &len);
		if (rc == 0) {
			buf[len < sizeof(buf) ? len : sizeof(buf) - 1] = '\0';
			printf("%s\n", buf);
		}
	}
	if (rc)
		fprintf(stderr, "cluster_kvs_probe: %s %s: %s\n", argv[1], key, strerror(-rc));
	chi_client_disconnect(c);
	return rc ? 1 : 0;
}
