/* An out-of-tree application: attach, make sure a greeter pool exists, call it. */
#include <stdio.h>
#include <string.h>

#include <chimaera/chimaera.h>

#include "greeter.h"

int main(int argc, char **argv)
{
	struct chi_client *c;
	struct chi_pool_id pool;
	char why[256], reply[128];
	static const char *kv[] = { "greeting", "hello" };

	int rc = chi_client_connect(NULL, &c);
	if (rc) {
		fprintf(stderr, "greet: cannot attach: %s\n", strerror(-rc));
		return 1;
	}
	rc = chi_admin_get_or_create_pool(c, "greeter", "greeters", NULL, 2, kv, 1, &pool, why,
					  sizeof(why));
	if (rc == 0)
		rc = greeter_greet(c, pool, argc > 1 ? argv[1] : "world", reply, sizeof(reply));
	if (rc) {
		fprintf(stderr, "greet: %s\n", why[0] ? why : strerror(-rc));
		chi_client_disconnect(c);
		return 1;
	}
	printf("%s\n", reply);
	chi_client_disconnect(c);
	return 0;
}
