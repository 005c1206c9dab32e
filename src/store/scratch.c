/* scratch.c — the temporary folder every store backend with local files
 * keeps (the local store's root/tmp, the S3 store's cache folder's tmp):
 * scratch folders for a handle's partial outputs (run-XXXXXX, flock'ed for
 * as long as the handle lives) and the sweep that removes what dead
 * holders left there (run-* folders no live handle holds; put-* files no
 * live put holds, once a minute old). Nothing here follows a link. */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ks_clear_dir(int dfd, int depth) {
  int fd = dup(dfd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) { if (fd >= 0) close(fd); return; }
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (unlinkat(dfd, de->d_name, 0) == 0 || (errno != EISDIR && errno != EPERM) || depth <= 0) continue;
    int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;
    ks_clear_dir(sub, depth - 1);
    close(sub);
    unlinkat(dfd, de->d_name, AT_REMOVEDIR);
  }
  closedir(d);
}

int ks_scratch_get(ks_scratch *sc, const char *tmpdir, char *out, size_t n, kiln_err *e) {
  for (int tries = 0; !sc->held; tries++) {
    if (tries == 8) return kiln_fail(e, KILN_EIO, "cannot make a scratch folder in '%s'", tmpdir);
    snprintf(sc->path, sizeof sc->path, "%s/run-XXXXXX", tmpdir);
    if (!mkdtemp(sc->path))
      return kiln_fail(e, errno == ENOSPC || errno == EDQUOT ? KILN_ENOSPACE : KILN_EIO,
                       "cannot make a scratch folder in '%s': %s", tmpdir, strerror(errno));
    int fd = open(sc->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd >= 0 && flock(fd, LOCK_EX) == 0 && fstat(fd, &sb) == 0 && sb.st_nlink > 0) { sc->fd = fd; sc->held = 1; }
    else if (fd >= 0) close(fd);                  /* a sweep took it between mkdtemp and the lock: another */
  }
  if (strlen(sc->path) >= n) return kiln_fail(e, KILN_EINVAL, "the store's scratch folder path is too long");
  snprintf(out, n, "%s", sc->path);
  return 0;
}

void ks_scratch_release(ks_scratch *sc) {
  if (!sc->held) return;
  ks_clear_dir(sc->fd, 8);
  rmdir(sc->path);
  close(sc->fd);
  sc->held = 0;
}

int ks_tmp_sweep(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *de;
  time_t now = time(NULL);
  while ((de = readdir(d))) {
    int put = strncmp(de->d_name, "put-", 4) == 0, run = strncmp(de->d_name, "run-", 4) == 0;
    if (!put && !run) continue;
    int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat sb;
    if (fstat(fd, &sb) != 0) { close(fd); continue; }
    if (put && S_ISREG(sb.st_mode) && now - sb.st_mtime >= KS_TMP_GRACE_S && flock(fd, LOCK_EX | LOCK_NB) == 0)
      unlinkat(dirfd(d), de->d_name, 0);
    else if (run && S_ISDIR(sb.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0) {
      ks_clear_dir(fd, 8);                        /* a dead worker's partial outputs */
      unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
    }
    close(fd);
  }
  closedir(d);
  return 0;
}
