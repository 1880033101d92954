/* Logging shared by the runtime, the CLI and the client library.
 *
 * Level comes from the config (logging.level) or the environment (CHI_LOG_LEVEL, then
 * upstream's HSHM_LOG_LEVEL). Debug messages compile out of release builds (NDEBUG). */
#ifndef CHI_COMMON_LOG_H
#define CHI_COMMON_LOG_H

#include <stdio.h>

enum chi_log_level {
	CHI_LOG_LEVEL_ERROR = 0,
	CHI_LOG_LEVEL_WARN = 1,
	CHI_LOG_LEVEL_INFO = 2,
	CHI_LOG_LEVEL_DEBUG = 3,
};

extern int chi_log_threshold;

/** Parse "debug|info|warn|warning|error|fatal" (case-insensitive). @return level or -EINVAL. */
int chi_log_level_parse(const char *s);
/** Apply CHI_LOG_LEVEL / HSHM_LOG_LEVEL if set; otherwise keep @p dflt. */
void chi_log_init_from_env(int dflt);
/** Send log lines to @p path (appended) instead of stderr. @return 0 or -errno. */
int chi_log_set_file(const char *path);
/** The descriptor log lines go to (for async-signal-safe writes from fault handlers). */
int chi_log_fd(void);
void chi_log_write(int level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define CHI_LOG_AT(lvl, ...)                                                   \
	do {                                                                   \
		if ((lvl) <= chi_log_threshold)                                \
			chi_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#define CHI_LOG_ERROR(...) CHI_LOG_AT(CHI_LOG_LEVEL_ERROR, __VA_ARGS__)
#define CHI_LOG_WARN(...) CHI_LOG_AT(CHI_LOG_LEVEL_WARN, __VA_ARGS__)
#define CHI_LOG_INFO(...) CHI_LOG_AT(CHI_LOG_LEVEL_INFO, __VA_ARGS__)
#ifdef NDEBUG
#define CHI_LOG_DEBUG(...) ((void)0)
#else
#define CHI_LOG_DEBUG(...) CHI_LOG_AT(CHI_LOG_LEVEL_DEBUG, __VA_ARGS__)
#endif

/** A broken invariant: log and abort. Never used for bad input. */
#define CHI_PANIC(...)                                                         \
	do {                                                                   \
		chi_log_write(CHI_LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__); \
		abort();                                                       \
	} while (0)

#endif
