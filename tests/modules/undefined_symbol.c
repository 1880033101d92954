/* A module that needs a symbol nobody defines: dlopen(RTLD_NOW) must refuse it, and the
 * loader must say so (dlerror's "undefined symbol") with -ELIBBAD, not "not found". */
#include <chimaera/module.h>

int chi_test_symbol_nobody_defines(void);

static int needs_missing(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	(void)c;
	(void)kv;
	(void)n;
	return chi_test_symbol_nobody_defines();
}

static const struct chi_module_desc d = { .abi_version = CHI_MODULE_ABI_VERSION,
					  .name = "undefined_symbol",
					  .create = needs_missing };

CHI_MODULE_DEFINE(d)
