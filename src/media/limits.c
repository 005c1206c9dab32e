/* limits.c — the decoded-pixel budget (see media.h, "the decoded-pixel
 * budget") and the header sniffing that lets it be checked before a
 * picture is decoded.
 *
 * A compressed picture says little about the memory it takes: a 746 KB
 * PNG of one colour decodes to 16000x16000 (768 MB as RGB, and several
 * copies of it on the way through a pipeline). So sizes are checked where
 * they are first known, before anything is allocated for them: what an
 * input's header declares (km_open_input2: the container's stream
 * parameters, and for still pictures the PNG/JPEG/GIF/BMP header read
 * here, since FFmpeg learns those only by decoding), what a decoder
 * reports, and what a function will output.
 *
 * Invariant: the limits are written once per process before any thread
 * reads them (km_limits_set at start-up); until then they are the defaults,
 * or the environment's ($KILN_MAX_PIXELS, $KILN_MAX_OUTPUT_PIXELS, read on
 * first use). */
#include "media/media.h"
#include "media/media_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static km_limits g_lim;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_set;

int64_t km_parse_pixels(const char *s) {
  if (!s || !*s) return -1;
  char *end;
  long long a = strtoll(s, &end, 10);
  if (end == s || a < 0) return -1;
  if (*end == 'x' || *end == 'X') {
    const char *b0 = end + 1;
    long long b = strtoll(b0, &end, 10);
    if (end == b0 || *end || b < 0 || (a && b > (1LL << 40) / a)) return -1;
    return a * b;
  }
  return *end || a > (1LL << 40) ? -1 : a;
}

static void from_env(const char *var, int64_t *v, char *name, size_t n) {
  const char *s = getenv(var);
  int64_t x = km_parse_pixels(s);
  if (x < 0) return;                               /* unset or unreadable: the default */
  *v = x;
  snprintf(name, n, "%s", var);
}

static void init_defaults(void) {
  if (g_set) return;
  g_lim.max_pixels = g_lim.max_out_pixels = KM_MAX_PIXELS_DEFAULT;
  snprintf(g_lim.name, sizeof g_lim.name, "KILN_MAX_PIXELS");   /* what changes it for a local command */
  snprintf(g_lim.out_name, sizeof g_lim.out_name, "KILN_MAX_OUTPUT_PIXELS");
  from_env("KILN_MAX_PIXELS", &g_lim.max_pixels, g_lim.name, sizeof g_lim.name);
  from_env("KILN_MAX_OUTPUT_PIXELS", &g_lim.max_out_pixels, g_lim.out_name, sizeof g_lim.out_name);
}

void km_limits_set(const km_limits *l) {
  pthread_once(&g_once, init_defaults);
  g_lim = *l;
  g_set = 1;
}

const km_limits *km_limits_get(void) {
  pthread_once(&g_once, init_defaults);
  return &g_lim;
}

int64_t km_decoder_max_pixels(void) {
  int64_t m = km_limits_get()->max_pixels;
  return m <= 0 || m > INT_MAX ? INT_MAX : m;      /* libavcodec's option tops out at INT_MAX */
}

/* "256.0 Mpixels", or "1200 pixels" for small counts (tests, tight limits). */
static const char *mpix(int64_t n, char *buf, size_t len) {
  if (n < 100000) snprintf(buf, len, "%lld pixels", (long long)n);
  else snprintf(buf, len, "%.1f Mpixels", (double)n / 1e6);
  return buf;
}

int km_check_pixels(int w, int h, int out, kiln_err *e, const char *what_fmt, ...) {
  const km_limits *l = km_limits_get();
  int64_t lim = out ? l->max_out_pixels : l->max_pixels;
  int64_t n = (int64_t)(w > 0 ? w : 0) * (h > 0 ? h : 0);
  if (lim <= 0 || n <= lim) return 0;
  char what[300], a[32], b[32];
  va_list ap;
  va_start(ap, what_fmt);
  kiln_vformat(what, sizeof what, what_fmt, ap);
  va_end(ap);
  return kiln_fail(e, KILN_ETOOBIG, "%s is %dx%d (%s); the limit is %s (%s)", what, w, h, mpix(n, a, sizeof a),
                   mpix(lim, b, sizeof b), out ? l->out_name : l->name);
}

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static unsigned le16(const unsigned char *p) { return (unsigned)p[1] << 8 | p[0]; }
static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static int32_t le32(const unsigned char *p) { return (int32_t)((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]); }

/* JPEG: the first start-of-frame marker (SOF0..SOF15 but DHT, JPG, DAC),
 * walking the segments from the start (EXIF and other APPn segments first). */
static int jpeg_size(FILE *f, int *w, int *h) {
  unsigned char m[9];
  long pos = 2;
  for (int seg = 0; seg < 1000; seg++) {
    if (fseek(f, pos, SEEK_SET) != 0 || fread(m, 1, 4, f) != 4) return -1;
    if (m[0] != 0xFF) return -1;
    if (m[1] == 0xFF) { pos++; continue; }        /* fill byte */
    unsigned mk = m[1];
    if (mk == 0xD8 || mk == 0x01 || (mk >= 0xD0 && mk <= 0xD7)) { pos += 2; continue; }   /* no length */
    if (mk == 0xD9 || mk == 0xDA) return -1;       /* end, or scan data before any frame header */
    unsigned len = be16(m + 2);
    if (len < 2) return -1;
    if (mk >= 0xC0 && mk <= 0xCF && mk != 0xC4 && mk != 0xC8 && mk != 0xCC) {
      if (fread(m + 4, 1, 5, f) != 5) return -1;   /* precision, height, width */
      *h = (int)be16(m + 5);
      *w = (int)be16(m + 7);
      return 0;
    }
    pos += 2 + (long)len;
  }
  return -1;
}

int km_image_header_size(const char *path, int *w, int *h) {
  unsigned char b[32];
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t n = fread(b, 1, sizeof b, f);
  int r = -1;
  if (n >= 24 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) && !memcmp(b + 12, "IHDR", 4)) {
    uint32_t pw = be32(b + 16), ph = be32(b + 20);
    *w = pw > INT_MAX ? INT_MAX : (int)pw;
    *h = ph > INT_MAX ? INT_MAX : (int)ph;
    r = 0;
  } else if (n >= 4 && b[0] == 0xFF && b[1] == 0xD8) {
    r = jpeg_size(f, w, h);
  } else if (n >= 10 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) {
    *w = (int)le16(b + 6);
    *h = (int)le16(b + 8);
    r = 0;
  } else if (n >= 26 && b[0] == 'B' && b[1] == 'M') {
    int32_t bw = le32(b + 18), bh = le32(b + 22);   /* a negative height: rows top-down */
    *w = bw < 0 ? (bw == INT32_MIN ? INT_MAX : -bw) : bw;
    *h = bh < 0 ? (bh == INT32_MIN ? INT_MAX : -bh) : bh;
    r = 0;
  }
  fclose(f);
  return r;
}
