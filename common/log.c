#include "log.h"
#include "time_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

_Atomic int log_threshold = CHI_LOG_LEVEL_WARN;

static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
/* One lock for every rate-limit state: taken only on logging paths that an event repeats,
 * never on a hot path, so sharing it costs nothing worth a lock per site. */
static pthread_mutex_t ratelimit_lock = PTHREAD_MUTEX_INITIALIZER;

int log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{ "debug", CHI_LOG_LEVEL_DEBUG }, { "info", CHI_LOG_LEVEL_INFO },
		{ "warn", CHI_LOG_LEVEL_WARN },	  { "warning", CHI_LOG_LEVEL_WARN },
		{ "error", CHI_LOG_LEVEL_ERROR }, { "fatal", CHI_LOG_LEVEL_ERROR },
	};
	for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0)
			return names[i].level;
	return -EINVAL;
}

void log_init_from_env(int dflt)
{
	const char *env = getenv("CHI_LOG_LEVEL");
	if (!env)
		env = getenv("HSHM_LOG_LEVEL");
	int lvl = env ? log_level_parse(env) : -EINVAL;
	atomic_store_explicit(&log_threshold, lvl >= 0 ? lvl : dflt, memory_order_relaxed);
}

int log_set_file(const char *path)
{
	FILE *f = fopen(path, "ae");
	if (!f)
		return -errno;
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&log_lock);
	if (log_file)
		fclose(log_file);
	log_file = f;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

int log_fd(void)
{
	FILE *f = log_file; /* a plain read: called from a signal handler */
	return f ? fileno(f) : STDERR_FILENO;
}

void log_write(int level, const char *file, int line, const char *fmt, ...)
{
	static const char *tags[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	struct timespec ts;
	struct tm tm;
	char msg[1024];
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *base = strrchr(file, '/');
	pthread_mutex_lock(&log_lock);
	FILE *out = log_file ? log_file : stderr;
	fprintf(out, "%02d:%02d:%02d.%03ld chimaera[%d] %s %s:%d: %s\n", tm.tm_hour, tm.tm_min,
		tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(), tags[level & 3],
		base ? base + 1 : file, line, msg);
	pthread_mutex_unlock(&log_lock);
}

int log_ratelimit(struct log_ratelimit *rl, uint32_t *suppressed)
{
	uint64_t now = time_now_ns();
	int pass;

	pthread_mutex_lock(&ratelimit_lock);
	if (rl->window_start_ns == 0 ||
	    now - rl->window_start_ns >= CHI_LOG_RATELIMIT_INTERVAL_NS) {
		rl->window_start_ns = now;
		rl->printed = 0;
	}
	pass = rl->printed < CHI_LOG_RATELIMIT_BURST;
	if (pass) {
		rl->printed++;
		*suppressed = rl->suppressed;
		rl->suppressed = 0;
	} else {
		*suppressed = 0;
		if (rl->suppressed < UINT32_MAX)
			rl->suppressed++;
	}
	pthread_mutex_unlock(&ratelimit_lock);
	return pass;
}
