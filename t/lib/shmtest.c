#include "config.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "t/lib/shmtest.h"

void
shmtest_unlink_prefix(const char *prefix)
{
	char name[NAME_MAX + 2];
	struct dirent *de;
	DIR *d;

	if ((d = opendir("/dev/shm")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(name, sizeof(name), "/%s", de->d_name);
		shm_unlink(name);
	}
	closedir(d);
}

int
shmtest_run(Suite *s, const char *stem)
{
	SRunner *sr = srunner_create(s);
	char prefix[64];
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	snprintf(prefix, sizeof(prefix), "%s-%ld-", stem, (long)getpid());
	shmtest_unlink_prefix(prefix);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
