/* Pool management on the control thread. GetOrCreatePool and DestroyPool may be slow (a
 * module's create opens files; a destroy waits for in-flight tasks), so a worker hands them
 * here instead of running them: the worker stays free, and a destroy can wait for every
 * worker, the one that received it included. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "common/log.h"
#include "pool_manager.h"
#include "runtime_internal.h"

#define MAX_KV 256

struct rt_job {
	struct rt_client *client; /* referenced until the job completes */
	struct chi_task *task;
	uint32_t method;	  /* read once: the header is the client's to scribble on */
	void *params;		  /* validated pointer into the client's segment */
	uint32_t size;
	struct rt_job *next;
};

struct rt_jobs {
	pthread_mutex_t lock;
	struct rt_job *head;
	struct rt_job **tail;
};

int rt_jobs_init(struct runtime *rt)
{
	struct rt_jobs *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_init(&j->lock, NULL);
	j->tail = &j->head;
	rt->jobs = j;
	return 0;
}

void rt_jobs_fini(struct runtime *rt)
{
	if (!rt->jobs)
		return;
	rt_jobs_run(rt); /* nothing is left hanging */
	pthread_mutex_destroy(&rt->jobs->lock);
	free(rt->jobs);
	rt->jobs = NULL;
}

int rt_jobs_submit(struct worker *w, struct rt_client *c, struct chi_task *task, uint32_t method,
		   void *params, uint32_t size)
{
	struct runtime *rt = w->rt;
	struct rt_job *job = calloc(1, sizeof(*job));
	uint64_t one = 1;

	if (!job)
		return -ENOMEM;
	rt_client_get(c);
	job->client = c;
	job->task = task;
	job->method = method;
	job->params = params;
	job->size = size;
	pthread_mutex_lock(&rt->jobs->lock);
	*rt->jobs->tail = job;
	rt->jobs->tail = &job->next;
	pthread_mutex_unlock(&rt->jobs->lock);
	if (write(rt->event_fd, &one, sizeof(one)) < 0)
		CHI_LOG_ERROR("cannot signal the control thread: %s", strerror(errno));
	return RT_TASK_PENDING;
}

/* Split "key\0value\0..." into pairs; every string must end inside the block. */
static int parse_kv(const char *buf, uint32_t size, struct chi_compose_kv *kv, uint32_t *n)
{
	uint32_t off = 0, count = 0;
	while (off < size) {
		const char *k = buf + off;
		const char *kend = memchr(k, '\0', size - off);
		if (!kend)
			return -EINVAL;
		off = (uint32_t)(kend - buf) + 1;
		const char *v = buf + off;
		const char *vend = off < size ? memchr(v, '\0', size - off) : NULL;
		if (!vend || count == MAX_KV)
			return -EINVAL;
		off = (uint32_t)(vend - buf) + 1;
		kv[count].key = k;
		kv[count].value = v;
		count++;
	}
	*n = count;
	return 0;
}

static int bounded_copy(char *dst, const char *src, size_t len)
{
	if (!memchr(src, '\0', len))
		return -EINVAL;
	memcpy(dst, src, len);
	return 0;
}

static int run_create(struct runtime *rt, struct rt_job *job)
{
	struct chi_admin_create_pool_params p;
	struct chi_compose_kv kv[MAX_KV];
	char mod[CHI_MOD_NAME_LEN], name[CHI_POOL_NAME_LEN], why[CHI_WHY_LEN] = "";
	uint32_t nkv = 0;
	int rc;

	if (job->size < sizeof(p))
		return -EINVAL;
	memcpy(&p, job->params, sizeof(p)); /* one read of the untrusted request */
	struct chi_admin_create_pool_params *out = job->params;
	if (bounded_copy(mod, p.mod_name, sizeof(mod)) ||
	    bounded_copy(name, p.pool_name, sizeof(name))) {
		snprintf(out->why, sizeof(out->why), "mod_name and pool_name must be terminated");
		return -EINVAL;
	}
	char *kvbuf = NULL;
	if (p.kv_size) {
		if (p.kv_size > job->size - sizeof(p) || !(kvbuf = malloc(p.kv_size)))
			return -EINVAL;
		memcpy(kvbuf, (char *)job->params + sizeof(p), p.kv_size);
		if (parse_kv(kvbuf, p.kv_size, kv, &nkv) != 0) {
			free(kvbuf);
			snprintf(out->why, sizeof(out->why), "malformed module keys");
			return -EINVAL;
		}
	}
	struct rt_pool_spec spec = { mod, name, p.pool_id, p.has_pool_id != 0, p.num_containers,
				     kv, nkv };
	struct chi_pool_id id;
	rc = rt_pool_get_or_create(rt, &spec, &id, why, sizeof(why));
	free(kvbuf);
	if (rc == 0)
		out->pool_id = id;
	snprintf(out->why, sizeof(out->why), "%s", why);
	if (rc)
		CHI_LOG_WARN("GetOrCreatePool '%s' from pid %d: %s", name, (int)job->client->pid, why);
	return rc;
}

static int run_destroy(struct runtime *rt, struct rt_job *job)
{
	struct chi_admin_destroy_pool_params *out = job->params;
	char why[CHI_WHY_LEN] = "";

	if (job->size < sizeof(*out))
		return -EINVAL;
	struct chi_pool_id id = out->pool_id;
	int rc = rt_pool_destroy(rt, id, why, sizeof(why));
	snprintf(out->why, sizeof(out->why), "%s", why);
	return rc;
}

void rt_jobs_run(struct runtime *rt)
{
	for (;;) {
		pthread_mutex_lock(&rt->jobs->lock);
		struct rt_job *job = rt->jobs->head;
		if (job) {
			rt->jobs->head = job->next;
			if (!rt->jobs->head)
				rt->jobs->tail = &rt->jobs->head;
		}
		pthread_mutex_unlock(&rt->jobs->lock);
		if (!job)
			return;
		int rc = job->method == CHI_ADMIN_DESTROY_POOL ? run_destroy(rt, job) :
								run_create(rt, job);
		rt_task_finish(job->task, rc);
		rt_client_put(rt, job->client);
		free(job);
	}
}
