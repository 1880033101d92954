/* An out-of-tree ChiMod: built against the installed headers only. Compose key "greeting"
 * sets the word it uses (default "hello"). */
#include <stdio.h>
#include <string.h>

#include <chimaera/module.h>

#include "greeter.h"

struct greeter_state {
	char greeting[32];
};

static int greeter_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	struct greeter_state *s = chi_container_state(c);
	snprintf(s->greeting, sizeof(s->greeting), "hello");
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(kv[i].key, "greeting"))
			snprintf(s->greeting, sizeof(s->greeting), "%s", kv[i].value);
	return 0;
}

static int greeter_greet_handler(struct chi_request *req)
{
	uint32_t size;
	struct greeter_params *p = chi_req_params(req, &size);
	struct greeter_state *s = chi_container_state(chi_req_container(req));
	char name[sizeof(p->name)];
	memcpy(name, p->name, sizeof(name));
	name[sizeof(name) - 1] = '\0'; /* the client's bytes: terminate them ourselves */
	snprintf(p->reply, sizeof(p->reply), "%s, %s (from container %u of pool %s)", s->greeting,
		 name, chi_container_id(chi_req_container(req)),
		 chi_container_pool_name(chi_req_container(req)));
	return 0;
}

static const struct chi_method_desc greeter_methods[] = {
	{ GREETER_GREET, "greet", greeter_greet_handler, 0, sizeof(struct greeter_params), NULL, NULL, 0 },
};

static const struct chi_module_desc greeter_desc = {
	.abi_version = CHI_MODULE_ABI_VERSION,
	.name = "greeter",
	.state_size = sizeof(struct greeter_state),
	.create = greeter_create,
	.methods = greeter_methods,
	.num_methods = 1,
};

CHI_MODULE_DEFINE(greeter_desc)
