/* Finding and loading ChiMods: lib<mod_name>.so from CHI_REPO_PATH (colon-separated), then
 * next to the executable (install layout, then build tree), then the configured prefix.
 * dlopen(RTLD_NOW | RTLD_LOCAL), one versioned entry symbol, and a descriptor checked before
 * anything of it is used. Each way a load fails has its own errno and a reason naming the
 * module and the cause. Built-in modules (the admin pool's) are added, checked, by
 * rt_module_add_builtin: no file, never dlclose'd. */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "pool_manager.h"

/* Relative to the directory of the chimaera executable: the install layout
 * (<prefix>/bin -> <prefix>/<libdir>/chimaera) and the build tree (build/bin -> build/lib). */
#ifndef CHI_INSTALL_REL_MODULE_DIR
#define CHI_INSTALL_REL_MODULE_DIR "lib/chimaera"
#endif
#ifndef CHI_INSTALL_MODULE_DIR
#define CHI_INSTALL_MODULE_DIR ""
#endif

#define MAX_STATE_SIZE (1u << 30)

static int valid_name(const char *name)
{
	if (!*name || strlen(name) >= 64)
		return 0;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			return 0;
	return 1;
}

/* Try each directory of @dirs (colon-separated) for lib<name>.so. */
static int search(const char *dirs, const char *name, char *path, size_t len, char *tried,
		  size_t tried_len)
{
	for (const char *d = dirs, *end; *d; d = *end ? end + 1 : end) {
		end = strchr(d, ':');
		if (!end)
			end = d + strlen(d);
		if (end == d)
			continue;
		snprintf(path, len, "%.*s/lib%s.so", (int)(end - d), d, name);
		size_t used = strlen(tried);
		snprintf(tried + used, tried_len - used, "%s%.*s", used ? ", " : "", (int)(end - d), d);
		if (access(path, R_OK) == 0)
			return 1;
	}
	return 0;
}

/* A descriptor the runtime cannot use: -EPROTO when it was built for another ABI (rebuild
 * it), -EINVAL when it is malformed (fix it). */
/* Declared bulk fields must lie within the parameters every task is checked to have. */
static int check_bulk_fields(const struct chi_method_desc *m, char *why, size_t len)
{
	if (m->num_bulk && !m->bulk) {
		snprintf(why, len, "method %u (%s): num_bulk is %u but the table is missing", m->id,
			 m->name ? m->name : "?", m->num_bulk);
		return -EINVAL;
	}
	if (m->num_bulk > CHI_MAX_BULK_FIELDS) {
		snprintf(why, len, "method %u (%s): %u bulk fields; at most %u (what a task carries "
			 "to another node)", m->id, m->name ? m->name : "?", m->num_bulk,
			 CHI_MAX_BULK_FIELDS);
		return -EINVAL;
	}
	for (uint32_t k = 0; k < m->num_bulk; k++) {
		const struct chi_bulk_field *b = &m->bulk[k];
		int bad_len = b->dir != CHI_BULK_IN && b->out_len_offset != CHI_BULK_LEN_WHOLE &&
			      (uint64_t)b->out_len_offset + sizeof(uint64_t) > m->min_params_size;
		if ((uint64_t)b->offset + sizeof(struct chi_bulk) > m->min_params_size ||
		    b->dir < CHI_BULK_IN || b->dir > CHI_BULK_INOUT || bad_len) {
			snprintf(why, len,
				 "method %u (%s): bulk field %u lies outside min_params_size %u or "
				 "has no direction",
				 m->id, m->name ? m->name : "?", k, m->min_params_size);
			return -EINVAL;
		}
	}
	return 0;
}

/* @builtin: a module linked into the runtime, which may define the reserved ids (the admin
 * pool answers Create, Destroy and Monitor itself) and set RT_METHOD_OWNS_TASK. */
static int check_desc(const struct chi_module_desc *d, const char *name, int builtin, char *why,
		      size_t len)
{
	if (d->abi_version != CHI_MODULE_ABI_VERSION) {
		snprintf(why, len, "ABI version %u, the runtime needs %u (rebuild the module)",
			 d->abi_version, CHI_MODULE_ABI_VERSION);
		return -EPROTO;
	}
	if (!d->name || strcmp(d->name, name) != 0) {
		snprintf(why, len, "its descriptor names it '%s'", d->name ? d->name : "(null)");
		return -EINVAL;
	}
	if (d->state_size > MAX_STATE_SIZE || !d->create) {
		snprintf(why, len, "%s", d->create ? "state_size over 1 GiB" : "no create callback");
		return -EINVAL;
	}
	if (d->num_methods && !d->methods) {
		snprintf(why, len, "num_methods is %u but the method table is missing",
			 d->num_methods);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < d->num_methods; i++) {
		const struct chi_method_desc *m = &d->methods[i];
		if ((m->id < CHI_METHOD_FIRST_CUSTOM && !builtin) || !m->handler) {
			snprintf(why, len, "method %u (%s): %s", m->id, m->name ? m->name : "?",
				 m->handler ? "ids below 10 are reserved" : "no handler");
			return -EINVAL;
		}
		uint32_t own = RT_METHOD_OWNS_TASK | RT_METHOD_TO_LEADER | RT_METHOD_CONTROL_PLANE;
		if ((m->flags & own) && !builtin) {
			snprintf(why, len, "method %u (%s): flags 0x%x are the runtime's own", m->id,
				 m->name ? m->name : "?", m->flags & own);
			return -EINVAL;
		}
		int rc = check_bulk_fields(m, why, len);
		if (rc)
			return rc;
		for (uint32_t j = 0; j < i; j++)
			if (d->methods[j].id == m->id) {
				snprintf(why, len, "method id %u is defined twice", m->id);
				return -EINVAL;
			}
	}
	return 0;
}

/* Put checked @desc into @m, and @m into the list. */
static void add_module(struct rt_pools *pools, struct rt_module *m,
		       const struct chi_module_desc *desc)
{
	m->desc = desc;
	for (uint32_t i = 0; i < desc->num_methods; i++) /* ids are unique: checked */
		if (desc->methods[i].id < RT_METHOD_INDEX)
			m->by_id[desc->methods[i].id] = &desc->methods[i];
	m->next = pools->modules;
	pools->modules = m;
}

int rt_module_find(const char *name, char *path, size_t path_len, char *why, size_t why_len)
{
	char tried[2048] = "", dirs[4096];

	if (!valid_name(name)) {
		snprintf(why, why_len, "module '%s': not a valid module name", name);
		return -EINVAL;
	}
	const char *repo = getenv("CHI_REPO_PATH");
	char exe[PATH_MAX] = "";
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	snprintf(dirs, sizeof(dirs), "%s:%s/../%s:%s/../lib:%s", repo ? repo : "", exe,
		 CHI_INSTALL_REL_MODULE_DIR, exe, CHI_INSTALL_MODULE_DIR);
	if (!search(dirs, name, path, path_len, tried, sizeof(tried))) {
		snprintf(why, why_len, "module '%s': lib%s.so not found (looked in %s)", name, name,
			 tried[0] ? tried : "no directory");
		return -ENOENT;
	}
	return 0;
}

int rt_module_load(struct rt_pools *pools, const char *name, struct rt_module **out, char *why,
		   size_t why_len)
{
	char path[PATH_MAX];
	char reason[512];

	for (struct rt_module *m = pools->modules; m; m = m->next)
		if (strcmp(m->name, name) == 0) {
			*out = m;
			return 0;
		}
	int rc = rt_module_find(name, path, sizeof(path), why, why_len);
	if (rc)
		return rc;
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		/* Not an ELF library for this machine, a dependency missing, a symbol undefined:
		 * dlerror() names which; there is no errno for it. */
		const char *err = dlerror();
		if (!err)
			err = "unknown dlopen error";
		/* dlerror() first, so that a short @why keeps the cause; the file only when
		 * dlerror() does not name it already (a missing dependency names its own). */
		int named = strstr(err, path) != NULL;
		snprintf(why, why_len, "module '%s': cannot load: %s%s%s%s", name, err,
			 named ? "" : " (loading ", named ? "" : path, named ? "" : ")");
		return -ELIBBAD;
	}
	chi_module_entry_fn entry = (chi_module_entry_fn)dlsym(dl, CHI_MODULE_ENTRY_NAME);
	const struct chi_module_desc *desc = entry ? entry() : NULL;
	if (!entry) {
		snprintf(reason, sizeof(reason), "no %s symbol (not a ChiMod)",
			 CHI_MODULE_ENTRY_NAME);
		rc = -ENOEXEC;
	} else if (!desc) {
		snprintf(reason, sizeof(reason), "%s returned NULL", CHI_MODULE_ENTRY_NAME);
		rc = -EINVAL;
	} else {
		rc = check_desc(desc, name, 0, reason, sizeof(reason));
	}
	struct rt_module *m = NULL;
	if (rc == 0 && !(m = calloc(1, sizeof(*m)))) {
		snprintf(reason, sizeof(reason), "out of memory");
		rc = -ENOMEM;
	}
	if (rc) {
		/* The reason before the path: a short @why keeps the cause. */
		snprintf(why, why_len, "module '%s': %s (%s)", name, reason, path);
		dlclose(dl);
		return rc;
	}
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->path, sizeof(m->path), "%s", path);
	m->dl = dl;
	add_module(pools, m, desc);
	CHI_LOG_INFO("module '%s' loaded from %s (%u methods)", name, path, desc->num_methods);
	*out = m;
	return 0;
}

int rt_module_add_builtin(struct rt_pools *pools, const struct chi_module_desc *desc,
			  uint32_t flags, struct rt_module **out, char *why, size_t why_len)
{
	char reason[512];

	int rc = check_desc(desc, desc->name ? desc->name : "", 1, reason, sizeof(reason));
	/* Its containers may run on several workers at once: nothing may stay on one. */
	for (uint32_t i = 0; rc == 0 && (flags & RT_MODULE_ANY_WORKER) && i < desc->num_methods;
	     i++)
		if (desc->methods[i].flags & CHI_METHOD_MAY_YIELD) {
			snprintf(reason, sizeof(reason), "method %u may yield, but any worker runs it",
				 desc->methods[i].id);
			rc = -EINVAL;
		}
	if (rc == 0 && (flags & RT_MODULE_ANY_WORKER) && desc->monitor) {
		snprintf(reason, sizeof(reason), "a monitor, but no worker owns its containers");
		rc = -EINVAL;
	}
	if (rc) {
		snprintf(why, why_len, "built-in module '%s': %s", desc->name ? desc->name : "?",
			 reason);
		return rc;
	}
	struct rt_module *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	snprintf(m->name, sizeof(m->name), "%s", desc->name);
	m->flags = RT_MODULE_BUILTIN | flags;
	add_module(pools, m, desc);
	*out = m;
	return 0;
}

void rt_modules_unload(struct rt_pools *pools)
{
	while (pools->modules) {
		struct rt_module *m = pools->modules;
		pools->modules = m->next;
		if (m->dl) /* a built-in one has none */
			dlclose(m->dl);
		free(m);
	}
}
