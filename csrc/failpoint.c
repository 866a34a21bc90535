/* Fault injection: the failpoint table (see pnl_failpoint.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "pnl_failpoint.h"

struct failpoint {
	const char *name;
	int action;             /* PNL_FP_*; written under fp_lock, read atomically */
	int err;                /* negative errno */
	int skip;
	int count;              /* <= 0: every hit after skip */
	unsigned long hits;     /* atomic */
};

static struct failpoint fp_table[] = {
	{ .name = "nl.send" },
	{ .name = "link.create" },
	{ .name = "link.delete" },
	{ .name = "addr.add" },
	{ .name = "route.add" },
	{ .name = "netns.create" },
	{ .name = "netns.delete" },
	{ .name = "attach.veth" },
	{ .name = "attach.plumb" },
	{ .name = "nft.setelem" },
};

#define FP_N (sizeof(fp_table) / sizeof(fp_table[0]))

int pnl_failpoint_any_armed;
static pthread_mutex_t fp_lock = PTHREAD_MUTEX_INITIALIZER;

static struct failpoint *fp_find(const char *name)
{
	size_t i;

	if (!name)
		return NULL;
	for (i = 0; i < FP_N; i++)
		if (strcmp(fp_table[i].name, name) == 0)
			return &fp_table[i];
	return NULL;
}

/* Under fp_lock. */
static void fp_update_any(void)
{
	int any = 0;
	size_t i;

	for (i = 0; i < FP_N; i++)
		if (__atomic_load_n(&fp_table[i].action, __ATOMIC_RELAXED) != PNL_FP_OFF)
			any = 1;
	__atomic_store_n(&pnl_failpoint_any_armed, any, __ATOMIC_RELEASE);
}

int pnl_failpoint_arm(const char *name, int action, int err, int skip, int count)
{
	struct failpoint *fp = fp_find(name);

	if (!fp)
		return -ENOENT;
	if (action != PNL_FP_OFF && action != PNL_FP_ERRNO && action != PNL_FP_KILL)
		return -EINVAL;
	if (err < 0)
		err = -err;
	if (action == PNL_FP_ERRNO && (err < 1 || err > 4095))
		return -EINVAL;
	if (skip < 0)
		return -EINVAL;
	pthread_mutex_lock(&fp_lock);
	fp->err = -err;
	fp->skip = skip;
	fp->count = count > 0 ? count : 0;
	__atomic_store_n(&fp->hits, 0UL, __ATOMIC_RELAXED);
	__atomic_store_n(&fp->action, action, __ATOMIC_RELAXED);
	fp_update_any();
	pthread_mutex_unlock(&fp_lock);
	return 0;
}

void pnl_failpoint_disarm_all(void)
{
	size_t i;

	pthread_mutex_lock(&fp_lock);
	for (i = 0; i < FP_N; i++) {
		__atomic_store_n(&fp_table[i].action, PNL_FP_OFF, __ATOMIC_RELAXED);
		__atomic_store_n(&fp_table[i].hits, 0UL, __ATOMIC_RELAXED);
	}
	fp_update_any();
	pthread_mutex_unlock(&fp_lock);
}

int pnl_failpoint_hit(const char *name)
{
	struct failpoint *fp = fp_find(name);
	unsigned long hit;
	int action, err, skip, count;

	if (!fp)
		return 0;
	/* A consistent view of the arming and its hit count (arm/disarm take the lock). */
	pthread_mutex_lock(&fp_lock);
	action = fp->action;
	err = fp->err;
	skip = fp->skip;
	count = fp->count;
	hit = action == PNL_FP_OFF ? 0 : __atomic_add_fetch(&fp->hits, 1UL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&fp_lock);
	if (action == PNL_FP_OFF)
		return 0;
	if (hit <= (unsigned long)skip)
		return 0;
	if (count > 0 && hit > (unsigned long)skip + (unsigned long)count)
		return 0;
	if (action == PNL_FP_KILL) {
		kill(getpid(), SIGKILL);
		_exit(128 + SIGKILL);   /* not reached: SIGKILL to oneself is delivered at once */
	}
	return err;
}
