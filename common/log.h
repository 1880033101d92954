/* Logging shared by the runtime, the CLI and the client library.
 *
 * Level comes from the config (logging.level) or the environment (CHI_LOG_LEVEL, then
 * upstream's HSHM_LOG_LEVEL). Debug messages compile out of release builds (NDEBUG). */
#ifndef CHI_COMMON_LOG_H
#define CHI_COMMON_LOG_H

#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>

enum log_level {
	CHI_LOG_LEVEL_ERROR = 0,
	CHI_LOG_LEVEL_WARN = 1,
	CHI_LOG_LEVEL_INFO = 2,
	CHI_LOG_LEVEL_DEBUG = 3,
};

/* Read on every log statement, written at start-up (and by each client connect, from any
 * thread): atomic, relaxed. */
extern _Atomic int log_threshold;

static inline int log_enabled(int lvl)
{
	return lvl <= atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

/** Parse "debug|info|warn|warning|error|fatal" (case-insensitive). @return level or -EINVAL. */
int log_level_parse(const char *s);
/** Apply CHI_LOG_LEVEL / HSHM_LOG_LEVEL if set; otherwise keep @p dflt. */
void log_init_from_env(int dflt);
/** Send log lines to @p path (appended) instead of stderr. @return 0 or -errno. */
int log_set_file(const char *path);
/** The descriptor log lines go to (for async-signal-safe writes from fault handlers). */
int log_fd(void);
void log_write(int level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define CHI_LOG_AT(lvl, ...)                                                   \
	do {                                                                   \
		if (log_enabled(lvl))                                      \
			log_write((lvl), __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#define CHI_LOG_ERROR(...) CHI_LOG_AT(CHI_LOG_LEVEL_ERROR, __VA_ARGS__)
#define CHI_LOG_WARN(...) CHI_LOG_AT(CHI_LOG_LEVEL_WARN, __VA_ARGS__)
#define CHI_LOG_INFO(...) CHI_LOG_AT(CHI_LOG_LEVEL_INFO, __VA_ARGS__)
#ifdef NDEBUG
#define CHI_LOG_DEBUG(...) ((void)0)
#else
#define CHI_LOG_DEBUG(...) CHI_LOG_AT(CHI_LOG_LEVEL_DEBUG, __VA_ARGS__)
#endif

/* Rate-limited logging, for lines that an outside event can repeat at will (a client that
 * reconnects in a loop, accept() at the descriptor limit): a flood of identical lines buries
 * the one that matters and costs the process more than the event itself. */

/** At most this many lines per interval from one rate-limited site... */
#define CHI_LOG_RATELIMIT_BURST 5
/** ...per this interval; the rest are counted, and the count is logged before the next line
 *  that passes ("suppressed N similar messages"). */
#define CHI_LOG_RATELIMIT_INTERVAL_NS (5ull * 1000000000ull)

/** State of one rate-limited site (or of one thing logged about, e.g. one client): zero it
 *  before use (a static is). Any thread may use it; the logger locks it. */
struct log_ratelimit {
	uint64_t window_start_ns;
	uint32_t printed;    /* lines that passed in this window */
	uint32_t suppressed; /* lines dropped since the last one that passed */
};

/**
 * Count one line against @p rl.
 * @param suppressed set, when the line may pass, to the number dropped before it (log that
 *        first); 0 otherwise.
 * @return 1 when the line may be printed, 0 when it is dropped (and counted).
 */
int log_ratelimit(struct log_ratelimit *rl, uint32_t *suppressed);

/** As CHI_LOG_AT, but at most CHI_LOG_RATELIMIT_BURST lines per interval counted in @p rl. */
#define CHI_LOG_RATELIMITED_BY(lvl, rl, ...)                                            \
	do {                                                                            \
		uint32_t log_rl_dropped_;                                               \
		if (log_enabled(lvl) &&                                       \
		    log_ratelimit((rl), &log_rl_dropped_)) {                        \
			if (log_rl_dropped_)                                            \
				log_write((lvl), __FILE__, __LINE__,                \
					      "suppressed %u similar messages",         \
					      log_rl_dropped_);                         \
			log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);          \
		}                                                                       \
	} while (0)

/** As CHI_LOG_AT, rate-limited per call site (each use has its own state). */
#define CHI_LOG_RATELIMITED(lvl, ...)                                                   \
	do {                                                                            \
		static struct log_ratelimit log_rl_site_;                           \
		CHI_LOG_RATELIMITED_BY((lvl), &log_rl_site_, __VA_ARGS__);              \
	} while (0)

/** A broken invariant: log and abort. Never used for bad input. */
#define CHI_PANIC(...)                                                         \
	do {                                                                   \
		log_write(CHI_LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__); \
		abort();                                                       \
	} while (0)

#endif
