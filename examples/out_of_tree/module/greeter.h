/* Client side of the out-of-tree "greeter" module: a typed wrapper, so that applications
 * never build raw tasks. */
#ifndef GREETER_H
#define GREETER_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <chimaera/chimaera.h>

#define GREETER_GREET 10

struct greeter_params {
	char name[64];
	char reply[128]; /* out */
};

/* Ask pool @pool to greet @name; the reply lands in @reply. @return 0 or -errno. */
static inline int greeter_greet(struct chi_client *c, struct chi_pool_id pool, const char *name,
				char *reply, size_t len)
{
	struct chi_task *t;
	struct chi_future f;
	int rc = chi_task_alloc(c, sizeof(struct greeter_params), &t);
	if (rc)
		return rc;
	t->pool = pool;
	t->method = GREETER_GREET;
	struct greeter_params *p = (struct greeter_params *)chi_task_params(t);
	snprintf(p->name, sizeof(p->name), "%s", name);
	rc = chi_submit(c, t, &f);
	if (rc == 0)
		rc = chi_wait(&f);
	if (rc == 0)
		snprintf(reply, len, "%s", p->reply);
	if (rc != -ECONNRESET)
		chi_task_free(c, t);
	return rc;
}

#endif
