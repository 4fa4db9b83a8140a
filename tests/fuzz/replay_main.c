/*
 * A main() for the fuzz targets in builds without libFuzzer (gcc, the
 * plain and sanitizer trees): runs LLVMFuzzerTestOneInput once on every
 * file named, or found in a directory named, on the command line (a
 * directory that does not exist holds nothing). So
 * the seeds and the regression inputs are replayed by `meson test` in
 * every build, and the targets keep compiling with the project's flags.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

/* Runs the target on one file; returns 0, or -1 when it is unreadable. */
static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0, n;
  if (f == NULL)
    return -1;
  do {
    if (cap - len < 4096) {
      cap = cap ? 2 * cap : 65536;
      if ((buf = realloc(buf, cap)) == NULL)
        abort();
    }
    n = fread(buf + len, 1, cap - len, f);
    len += n;
  } while (n > 0);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int replay_dir(const char *dir, unsigned *count) {
  struct dirent **names;
  char path[4096];
  int n = scandir(dir, &names, NULL, alphasort), i, rc = 0;
  if (n < 0)
    return errno == ENOENT ? 0 : -1; /* no such directory (yet) */
  for (i = 0; i < n; i++) {
    if (names[i]->d_name[0] != '.') {
      snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
      if (replay_file(path) != 0)
        rc = -1;
      (*count)++;
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  struct stat st;
  unsigned count = 0;
  int i, rc;
  for (i = 1; i < argc; i++) {
    if (stat(argv[i], &st) != 0 || S_ISDIR(st.st_mode)) {
      rc = replay_dir(argv[i], &count);
    } else {
      rc = replay_file(argv[i]);
      count++;
    }
    if (rc != 0) {
      fprintf(stderr, "%s: cannot read\n", argv[i]);
      return 1;
    }
  }
  printf("replayed %u inputs\n", count);
  return 0;
}
