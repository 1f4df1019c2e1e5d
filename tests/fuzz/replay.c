/*
 * replay: runs the fuzz target (fuzz_request.c) over every file of the seed corpus, so
 * that `make check` (and the sanitizer build) keeps the corpus, and every crash once
 * found and added to it, passing without libFuzzer.
 *
 * Usage: replay [DIR...]   default: $PARTNERD_SRCDIR/tests/fuzz/corpus, else
 *                          tests/fuzz/corpus under the current directory.
 * A file "passes" when the target returns for it; a crash (abort, sanitizer report) ends
 * the process, so the failure is the process's exit status, with the file's name printed
 * just before. Prints "N passed, M failed" as its last line (M counts unreadable files);
 * exit status 0 only when every file passed and at least one ran.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads path whole into a malloc'd buffer; returns 0 or -1. */
static int
slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	size_t n = 0, cap = 0, got;

	if (f == NULL)
		return -1;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			p = realloc(p, cap);
			if (p == NULL)
				abort();
		}
		got = fread(p + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fclose(f);
		free(p);
		return -1;
	}
	fclose(f);
	*out = p;
	*len = n;
	return 0;
}

static void
replay_dir(const char *dir, unsigned *passed, unsigned *failed)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;

	if (d == NULL) {
		fprintf(stderr, "replay: cannot open %s\n", dir);
		(*failed)++;
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (names == NULL)
				abort();
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp);
	for (i = 0; i < n; i++) {
		char path[4096];
		struct stat sb;
		uint8_t *data;
		size_t len;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			free(names[i]);
			continue;
		}
		if (slurp(path, &data, &len) != 0) {
			printf("FAIL: %s (unreadable)\n", path);
			(*failed)++;
		} else {
			/* Named first, so that a crash report follows the file it came from. */
			fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
			LLVMFuzzerTestOneInput(data, len);
			free(data);
			(*passed)++;
		}
		free(names[i]);
	}
	free(names);
}

int
main(int argc, char **argv)
{
	unsigned passed = 0, failed = 0;
	const char *top = getenv("PARTNERD_SRCDIR");
	char def[4096];
	int i;

	if (argc > 1) {
		for (i = 1; i < argc; i++)
			replay_dir(argv[i], &passed, &failed);
	} else {
		snprintf(def, sizeof(def), "%s/tests/fuzz/corpus", top && *top ? top : ".");
		replay_dir(def, &passed, &failed);
	}
	printf("%u passed, %u failed\n", passed, failed);
	return failed == 0 && passed > 0 ? 0 : 1;
}
