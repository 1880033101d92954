/* networking.bootstrap: pmix (bootstrap_pmix.h). */
#include "bootstrap_pmix.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifdef CHI_HAVE_PMIX

#include <pmix.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The fence's bound when networking.wait_for_restart is shorter (0 would mean "forever" to
 * PMIx), and how much longer we wait for its answer than we ask the server to. */
#define FENCE_MIN_S   10
#define FENCE_GRACE_S 5

static int pmix_up; /* PMIx_Init succeeded: bootstrap_pmix_fini() finalizes */

static int failf(char *err, size_t err_len, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int failf(char *err, size_t err_len, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	return rc;
}

int bootstrap_pmix_available(void)
{
	return 1;
}

/* The launcher's environment: a PMIx server puts its contact and our namespace there. */
static int launched_by_pmix(void)
{
	extern char **environ;
	if (getenv("PMIX_NAMESPACE"))
		return 1;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "PMIX_SERVER_URI", 15) == 0)
			return 1;
	return 0;
}

/* An unsigned number of any width a server may answer with. @return 0 or -EINVAL. */
static int value_u32(const pmix_value_t *v, uint32_t *out)
{
	switch (v->type) {
	case PMIX_UINT8:
		*out = v->data.uint8;
		return 0;
	case PMIX_UINT16:
		*out = v->data.uint16;
		return 0;
	case PMIX_UINT32:
		*out = v->data.uint32;
		return 0;
	case PMIX_UINT64:
		if (v->data.uint64 > UINT32_MAX)
			return -EINVAL;
		*out = (uint32_t)v->data.uint64;
		return 0;
	case PMIX_INT:
		if (v->data.integer < 0)
			return -EINVAL;
		*out = (uint32_t)v->data.integer;
		return 0;
	default:
		return -EINVAL;
	}
}

static int get_u32(const pmix_proc_t *proc, const char *key, uint32_t *out)
{
	pmix_value_t *val = NULL;
	pmix_status_t st = PMIx_Get(proc, key, NULL, 0, &val);
	if (st != PMIX_SUCCESS)
		return -ENOENT;
	int rc = value_u32(val, out);
	PMIX_VALUE_RELEASE(val);
	return rc;
}

/* The fence runs non-blocking so that our wait has a deadline of its own, whatever the
 * server does with PMIX_TIMEOUT. Static: after a timeout the callback may still come, and
 * what it touches (and the info the server may still read) must outlive this call. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t done_cv;
	int done;
	pmix_status_t status;
	pmix_info_t info[2];
} fence = {.lock = PTHREAD_MUTEX_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};

static void fence_done(pmix_status_t status, void *cbdata)
{
	(void)cbdata;
	pthread_mutex_lock(&fence.lock);
	fence.status = status;
	fence.done = 1;
	pthread_cond_signal(&fence.done_cv);
	pthread_mutex_unlock(&fence.lock);
}

static int fence_all(const pmix_proc_t *wild, uint32_t timeout_s, char *err, size_t err_len)
{
	bool collect = true;
	int tmo = (int)timeout_s;
	struct timespec until;

	PMIX_INFO_LOAD(&fence.info[0], PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
	PMIX_INFO_LOAD(&fence.info[1], PMIX_TIMEOUT, &tmo, PMIX_INT);
	fence.done = 0;
	pmix_status_t st = PMIx_Fence_nb(wild, 1, fence.info, 2, fence_done, NULL);
	if (st != PMIX_SUCCESS)
		return failf(err, err_len, -EIO, "PMIx_Fence: %s", PMIx_Error_string(st));
	clock_gettime(CLOCK_REALTIME, &until); /* the condition variable's clock */
	until.tv_sec += (time_t)timeout_s + FENCE_GRACE_S;
	pthread_mutex_lock(&fence.lock);
	int wrc = 0;
	while (!fence.done && wrc != ETIMEDOUT)
		wrc = pthread_cond_timedwait(&fence.done_cv, &fence.lock, &until);
	int done = fence.done;
	st = fence.status;
	pthread_mutex_unlock(&fence.lock);
	if (!done || st == PMIX_ERR_TIMEOUT)
		return failf(
			err, err_len, -ETIMEDOUT,
			"PMIx fence: not every rank arrived within %u s (networking."
			"wait_for_restart); did every rank start the runtime with this bootstrap?",
			timeout_s);
	if (st != PMIX_SUCCESS)
		return failf(err, err_len, -EIO, "PMIx fence failed: %s", PMIx_Error_string(st));
	return 0;
}

/* This rank's endpoint: networking.bind or the hostname's address; port + local rank. */
static int my_endpoint(const struct config *cfg, uint32_t local_rank, char *out, size_t len,
		       char *err, size_t err_len)
{
	struct membership_addr a;
	char host[256];

	if (cfg->port <= 0 || (uint64_t)cfg->port + local_rank > 65535)
		return failf(
			err, err_len, -EINVAL,
			"networking.port %d + local rank %u is not a port (ranks on one machine "
			"listen on port, port + 1, ...)",
			cfg->port, local_rank);
	if (cfg->bind[0]) {
		if (membership_addr_parse(cfg->bind, &a) != 0)
			return failf(err, err_len, -EINVAL,
				     "networking.bind '%s' is not a numeric IPv4 or IPv6 address",
				     cfg->bind);
	} else {
		char why[512];
		if (gethostname(host, sizeof(host)) != 0) {
			int e = errno;
			return failf(err, err_len, -e, "gethostname: %s", strerror(e));
		}
		host[sizeof(host) - 1] = '\0';
		if (membership_host_addr(host, NULL, &a, why, sizeof(why)) != 0)
			return failf(err, err_len, -EINVAL,
				     "this machine's address: %s; set networking.bind", why);
	}
	membership_endpoint_format(&a, (uint16_t)(cfg->port + (int)local_rank), out, len);
	return 0;
}

static int exchange(const struct config *cfg, const pmix_proc_t *me, struct membership *m,
		    char *err, size_t err_len)
{
	pmix_proc_t wild, peer;
	pmix_value_t v, *val = NULL;
	pmix_status_t st;
	uint32_t size = 0, local_rank = 0;
	char mine[MEMBERSHIP_ENDPOINT_STRLEN], source[PMIX_MAX_NSLEN + 32];
	int rc;

	PMIX_LOAD_PROCID(&wild, me->nspace, PMIX_RANK_WILDCARD);
	if (get_u32(&wild, PMIX_JOB_SIZE, &size) != 0 || size == 0)
		return failf(err, err_len, -EIO, "PMIx: the launcher gave no job size");
	if (me->rank >= size)
		return failf(err, err_len, -EIO, "PMIx: rank %u of a job of %u", me->rank, size);
	/* Under both Slurm's and Open MPI's servers PMIX_LOCAL_RANK is on the proc itself.
	 * Without it, 0: two ranks on one machine then share an endpoint, which the membership
	 * refuses, naming both. */
	if (get_u32(me, PMIX_LOCAL_RANK, &local_rank) != 0) {
		CHI_LOG_WARN("PMIx: no local rank from the launcher: listening on networking.port");
		local_rank = 0;
	}
	rc = my_endpoint(cfg, local_rank, mine, sizeof(mine), err, err_len);
	if (rc)
		return rc;
	PMIX_VALUE_LOAD(&v, mine, PMIX_STRING);
	st = PMIx_Put(PMIX_GLOBAL, BOOTSTRAP_PMIX_KEY, &v);
	PMIX_VALUE_DESTRUCT(&v);
	if (st == PMIX_SUCCESS)
		st = PMIx_Commit();
	if (st != PMIX_SUCCESS)
		return failf(err, err_len, -EIO, "PMIx_Put/Commit of %s: %s", mine,
			     PMIx_Error_string(st));
	uint32_t timeout_s =
		cfg->wait_for_restart_s < FENCE_MIN_S
			? FENCE_MIN_S
			: (uint32_t)(cfg->wait_for_restart_s > 86400 ? 86400
								     : cfg->wait_for_restart_s);
	CHI_LOG_INFO("PMIx: rank %u of %u (namespace %s, local rank %u): %s; fence", me->rank, size,
		     me->nspace, local_rank, mine);
	rc = fence_all(&wild, timeout_s, err, err_len);
	if (rc)
		return rc;

	char **eps = calloc(size, sizeof(*eps));
	if (!eps)
		return failf(err, err_len, -ENOMEM, "out of memory");
	rc = 0;
	for (uint32_t r = 0; r < size && rc == 0; r++) {
		PMIX_LOAD_PROCID(&peer, me->nspace, r);
		val = NULL;
		st = PMIx_Get(&peer, BOOTSTRAP_PMIX_KEY, NULL, 0, &val);
		if (st != PMIX_SUCCESS || val->type != PMIX_STRING || !val->data.string)
			rc = failf(err, err_len, -EIO,
				   "PMIx: no endpoint from rank %u (%s): did every rank start the "
				   "runtime with networking.bootstrap pmix?",
				   r, st != PMIX_SUCCESS ? PMIx_Error_string(st) : "not a string");
		else if (!(eps[r] = strdup(val->data.string)))
			rc = failf(err, err_len, -ENOMEM, "out of memory");
		if (val)
			PMIX_VALUE_RELEASE(val);
	}
	if (rc == 0) {
		snprintf(source, sizeof(source), "PMIx namespace %s", me->nspace);
		rc = membership_from_endpoints((const char *const *)eps, size, me->rank, source, m,
					       err, err_len);
	}
	for (uint32_t r = 0; r < size; r++)
		free(eps[r]);
	free(eps);
	return rc;
}

int bootstrap_pmix_init(const struct config *cfg, struct membership *m, char *err, size_t err_len)
{
	pmix_proc_t me;
	sigset_t block, old;

	memset(m, 0, sizeof(*m));
	m->self = MEMBERSHIP_NO_NODE;
	if (!launched_by_pmix())
		return failf(err, err_len, -ENOENT,
			     "networking.bootstrap pmix: not started by a PMIx server (no "
			     "PMIX_NAMESPACE in the environment): start the runtimes with "
			     "`srun --mpi=pmix` or `mpirun` (docs/deploy.md, \"PMIx\")");
	/* PMIx_Init starts the library's progress thread, which inherits our signal mask: it
	 * must block SIGINT and SIGTERM as the runtime's threads do, or a SIGTERM meant for
	 * the runtime's signalfd would kill the process there. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	pmix_status_t st = PMIx_Init(&me, NULL, 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (st != PMIX_SUCCESS)
		return failf(err, err_len, -EIO,
			     "PMIx_Init: %s (is the launcher's PMIx server up?)",
			     PMIx_Error_string(st));
	pmix_up = 1;
	const char *id = getenv("CHI_NODE_ID");
	char rank[16];
	snprintf(rank, sizeof(rank), "%u", me.rank);
	if (id && *id && strcmp(id, rank) != 0)
		CHI_LOG_WARN("CHI_NODE_ID=%s is not used with networking.bootstrap pmix: the node "
			     "id is the rank (%u)",
			     id, me.rank);
	return exchange(cfg, &me, m, err, err_len);
}

/* libpmix 4.2.2 keeps a few bytes from PMIx_Init to exit (pmix_rte_init,
 * pmix_bfrops_base_value_load: 5 bytes a process, after PMIx_Finalize). LeakSanitizer would
 * make every runtime of an ASan build exit non-zero for them, and the launcher then end the
 * job: the library's own leaks are not reported. The sanitizer runtime looks this up in the
 * executable, so it must be exported. */
#if defined(__SANITIZE_ADDRESS__)
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void)
{
	return "leak:libpmix.so\n";
}
#endif

void bootstrap_pmix_fini(void)
{
	if (!pmix_up)
		return;
	pmix_status_t st = PMIx_Finalize(NULL, 0);
	if (st != PMIX_SUCCESS)
		CHI_LOG_WARN("PMIx_Finalize: %s", PMIx_Error_string(st));
	pmix_up = 0;
}

#else /* !CHI_HAVE_PMIX */

int bootstrap_pmix_available(void)
{
	return 0;
}

int bootstrap_pmix_init(const struct config *cfg, struct membership *m, char *err, size_t err_len)
{
	(void)cfg;
	memset(m, 0, sizeof(*m));
	m->self = MEMBERSHIP_NO_NODE;
	snprintf(err, err_len,
		 "networking.bootstrap pmix: built without PMIx support: install libpmix-dev and "
		 "rebuild");
	return -ENOTSUP;
}

void bootstrap_pmix_fini(void)
{
}

#endif
