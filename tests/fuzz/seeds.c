/* seeds.c — the harnesses' seed corpora, made here rather than downloaded
 * or copied: `fuzz_seeds DIR` writes DIR/NAME/seed-NNN for every harness
 * NAME in tests/fuzz. Valid inputs of each kind (and a few near misses):
 * object keys, Range headers, presigned queries, parameters for every
 * function built from its own parameter table (defaults, bounds, choices),
 * job bodies in both forms with inline base64 media, HTTP requests for
 * every route, small ncnn models with their weights (fp32 and fp16), and
 * pictures and clips made with kiln's own writers (km_image_write_png,
 * km_testsrc_write) and libavcodec's encoders. */
#include <errno.h>
#include <jansson.h>
#include <libavcodec/avcodec.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fn/fn.h"
#include "fz.h"
#include "media/media.h"
#include "util/b64.h"

static const char *out_dir;
static char cur[4200];
static int nseed;

static void harness(const char *name) {
  snprintf(cur, sizeof cur, "%s/%s", out_dir, name);
  if (mkdir(cur, 0755) < 0 && errno != EEXIST) fz_fail("cannot make %s: %s", cur, strerror(errno));
  nseed = 0;
}

static void seed(const void *p, size_t n) {
  char path[4300];
  snprintf(path, sizeof path, "%s/seed-%03d", cur, nseed++);
  fz_write(path, p, n);
}
static void seeds(const char *s) { seed(s, strlen(s)); }

/* A seed of one byte b, then n bytes. */
static void seed1(uint8_t b, const void *p, size_t n) {
  uint8_t *t = malloc(n + 1);
  t[0] = b;
  memcpy(t + 1, p, n);
  seed(t, n + 1);
  free(t);
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) fz_fail("cannot read %s", path);
  fseek(f, 0, SEEK_END);
  long l = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)l + 1);
  if (fread(b, 1, (size_t)l, f) != (size_t)l) fz_fail("cannot read %s", path);
  fclose(f);
  *n = (size_t)l;
  return b;
}

/* ---- media made here ---------------------------------------------------- */

static uint8_t *png_rgb, *jpeg, *png_rgba, *bmp, *mp4, *mkv;
static size_t png_rgb_n, jpeg_n, png_rgba_n, bmp_n, mp4_n, mkv_n;

/* One picture w x h in pix_fmt through libavcodec's encoder for id. */
static uint8_t *encode_still(enum AVCodecID id, enum AVPixelFormat fmt, int w, int h, size_t *n) {
  const AVCodec *c = avcodec_find_encoder(id);
  if (!c) fz_fail("no encoder %s", avcodec_get_name(id));
  AVCodecContext *cc = avcodec_alloc_context3(c);
  cc->width = w;
  cc->height = h;
  cc->pix_fmt = fmt;
  cc->time_base = (AVRational){1, 25};
  if (id == AV_CODEC_ID_MJPEG) cc->color_range = AVCOL_RANGE_JPEG;
  if (avcodec_open2(cc, c, NULL) < 0) fz_fail("cannot open %s", avcodec_get_name(id));
  AVFrame *f = av_frame_alloc();
  f->width = w;
  f->height = h;
  f->format = fmt;
  if (av_frame_get_buffer(f, 0) < 0) abort();
  for (int p = 0; p < 4 && f->data[p]; p++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < f->linesize[p]; x++) f->data[p][y * f->linesize[p] + x] = (uint8_t)(x * 7 + y * 13 + p * 50);
  AVPacket *pkt = av_packet_alloc();
  if (avcodec_send_frame(cc, f) < 0 || avcodec_send_frame(cc, NULL) < 0 || avcodec_receive_packet(cc, pkt) < 0)
    fz_fail("%s did not encode", avcodec_get_name(id));
  uint8_t *b = malloc((size_t)pkt->size);
  memcpy(b, pkt->data, (size_t)pkt->size);
  *n = (size_t)pkt->size;
  av_packet_free(&pkt);
  av_frame_free(&f);
  avcodec_free_context(&cc);
  return b;
}

static void make_media(void) {
  char path[4300];
  kiln_err e = {0};
  km_image im;
  if (km_image_alloc(&im, 16, 12) < 0) abort();
  for (int i = 0; i < 16 * 12 * 3; i++) im.rgb[i] = (uint8_t)(i * 5);
  snprintf(path, sizeof path, "%s/seed.png", fz_scratch());
  if (km_image_write_png(path, &im, &e) < 0) fz_fail("png: %s", e.msg);
  km_image_release(&im);
  png_rgb = slurp(path, &png_rgb_n);
  jpeg = encode_still(AV_CODEC_ID_MJPEG, AV_PIX_FMT_YUVJ420P, 16, 12, &jpeg_n);
  png_rgba = encode_still(AV_CODEC_ID_PNG, AV_PIX_FMT_RGBA, 9, 7, &png_rgba_n);
  bmp = encode_still(AV_CODEC_ID_BMP, AV_PIX_FMT_BGR24, 8, 6, &bmp_n);
  km_testsrc t = {.pattern = KM_PATTERN_BARS, .width = 32, .height = 24, .fps = {10, 1}, .frames = 5, .tone_hz = 440, .gop = 2};
  snprintf(path, sizeof path, "%s/seed.mp4", fz_scratch());
  if (km_testsrc_write(path, &t, &e) < 0) fz_fail("mp4: %s", e.msg);
  mp4 = slurp(path, &mp4_n);
  t.pattern = KM_PATTERN_COORDS, t.tone_hz = 0, t.lossless = 1, t.rotation_meta = 90, t.frames = 3;
  snprintf(path, sizeof path, "%s/seed.mkv", fz_scratch());
  if (km_testsrc_write(path, &t, &e) < 0) fz_fail("mkv: %s", e.msg);
  mkv = slurp(path, &mkv_n);
}

/* ---- parameters from the tables ----------------------------------------- */

/* mode 0: defaults where there are some; 1: minimums; 2: maximums; 3: the last choice, false. */
static json_t *table_json(const kf_param *tab, int mode);

static json_t *value_json(const kf_param *p, int mode) {
  switch (p->type) {
  case KF_INT:
  case KF_NUM: {
    if (mode == 0 && p->def) return json_loads(p->def, JSON_DECODE_ANY, NULL);
    double v = !p->ranged ? 1 : mode == 2 ? p->max : mode == 1 ? p->min : (p->min + p->max) / 2;
    return p->type == KF_INT ? json_integer((json_int_t)v) : json_real(v);
  }
  case KF_BOOL: return json_boolean(mode != 3);
  case KF_STR:
    if (p->choices) {
      int n = 0;
      while (p->choices[n]) n++;
      return json_string(p->choices[mode == 3 ? n - 1 : mode % n]);
    }
    if (mode == 0 && p->def) return json_loads(p->def, JSON_DECODE_ANY, NULL);
    return json_string("realesr-animevideov3-x4");
  case KF_COLOR: return json_string(mode == 1 ? "yellow" : "#FFD400");
  case KF_OBJ: return p->fields ? table_json(p->fields, mode) : json_object();
  case KF_ARR: {
    json_t *a = json_array();
    int n = p->ranged && p->min > 1 ? (int)p->min : mode == 2 ? 2 : 1;
    for (int i = 0; i < n; i++) json_array_append_new(a, p->fields ? table_json(p->fields, mode) : json_object());
    return a;
  }
  }
  return json_null();
}

static json_t *table_json(const kf_param *tab, int mode) {
  json_t *o = json_object();
  for (const kf_param *p = tab; p->name; p++) json_object_set_new(o, p->name, value_json(p, mode));
  return o;
}

/* ---- ncnn models ---------------------------------------------------------- */

typedef struct bin { uint8_t *p; size_t n; } bin;

static void bin_add(bin *b, const void *p, size_t n) {
  b->p = realloc(b->p, b->n + n);
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

static void bin_floats(bin *b, int n, float scale) {
  for (int i = 0; i < n; i++) {
    float v = scale * (float)((i * 7) % 11 - 5) / 5;
    bin_add(b, &v, 4);
  }
}

static uint16_t to_half(float f) {               /* values here are small and normal */
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int exp = (int)((x >> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return (uint16_t)sign;
  return (uint16_t)(sign | (uint32_t)exp << 10 | ((x >> 13) & 0x3ff));
}

/* Flagged weights: tag 0 then float32, or the fp16 tag then halves (padded to 4 bytes). */
static void bin_weights(bin *b, int n, int half) {
  uint32_t tag = half ? 0x01306B47 : 0;
  bin_add(b, &tag, 4);
  if (!half) { bin_floats(b, n, 0.2f); return; }
  for (int i = 0; i < n; i++) {
    uint16_t h = to_half(0.2f * (float)((i * 7) % 11 - 5) / 5);
    bin_add(b, &h, 2);
  }
  if (n % 2) { uint16_t z = 0; bin_add(b, &z, 2); }
}

static void seed_model(uint8_t flags, const char *param, const bin *b) {
  size_t pl = strlen(param);
  uint8_t *t = malloc(1 + pl + 1 + b->n);
  t[0] = flags;
  memcpy(t + 1, param, pl);
  t[1 + pl] = 0;
  memcpy(t + 2 + pl, b->p, b->n);
  seed(t, 2 + pl + b->n);
  free(t);
}

static void ncnn_seeds(void) {
  /* A small Real-ESRGAN-like net: 3x3 convolutions (Winograd's), PReLU, x2 pixel shuffle, a nearest upsample, a sum. */
  const char *p1 =
      "7767517\n"
      "8 9\n"
      "Input            in    0 1 data\n"
      "Split            sp    1 2 data d0 d1\n"
      "Convolution      c1    1 1 d0 c1 0=8 1=3 11=3 2=1 12=1 3=1 13=1 4=1 14=1 15=1 16=1 5=1 6=216\n"
      "PReLU            pr    1 1 c1 p1 0=8\n"
      "Convolution      c2    1 1 p1 c2 0=12 1=3 11=3 4=1 5=1 6=864\n"
      "PixelShuffle     ps    1 1 c2 s1 0=2\n"
      "Interp           up    1 1 d1 u1 0=1 1=2.0 2=2.0\n"
      "BinaryOp         add   2 1 s1 u1 out 0=0\n";
  for (int half = 0; half < 2; half++) {
    bin b = {0};
    bin_weights(&b, 216, half);
    bin_floats(&b, 8, 0.1f);
    bin_floats(&b, 8, 0.25f);
    bin_weights(&b, 864, half);
    bin_floats(&b, 12, 0.1f);
    seed_model(0, p1, &b);
    seed_model(1, p1, &b);
    free(b.p);
  }
  /* The other layer types: depthwise with an activation array, ReLU, Eltwise with coefficients, Concat, bilinear and
   * bicubic Interp, a strided convolution with SAME padding and leaky relu. */
  const char *p2 =
      "7767517\n"
      "10 12\n"
      "Input                 in   0 1 data\n"
      "Split                 sp   1 3 data a b c\n"
      "ConvolutionDepthWise  dw   1 1 a dw 0=3 1=3 4=1 5=1 6=27 7=3 9=3 -23310=2,0.0,0.8\n"
      "ReLU                  re   1 1 b re 0=0.1\n"
      "Eltwise               el   2 1 dw re el 0=1 -23301=2,0.5,2.0\n"
      "Convolution           cs   1 1 c cs 0=3 1=3 3=2 4=-233 5=0 6=81 9=2 -23310=1,0.2\n"
      "Interp                bl   1 1 cs bl 0=2 3=5 4=7\n"
      "Concat                ct   2 1 el bl ct 0=0\n"
      "Interp                bc   1 1 ct bc 0=3 1=0.5 2=0.5\n"
      "BinaryOp              mul  1 1 bc out 0=2 1=1 2=0.5\n";
  bin b = {0};
  bin_weights(&b, 27, 0);
  bin_floats(&b, 3, 0.1f);
  bin_weights(&b, 81, 1);
  seed_model(0, p2, &b);
  seed_model(1, p2, &b);
  free(b.p);
}

/* ---- the corpora ---------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_seeds DIR   (writes DIR/NAME/seed-NNN for each harness)\n");
    return 2;
  }
  out_dir = argv[1];
  if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) fz_fail("cannot make %s: %s", out_dir, strerror(errno));
  av_log_set_level(AV_LOG_ERROR);
  make_media();

  harness("key");
  static const char *const keys[] = {"fuzz/a", "uploads/0123456789abcdef/input", "a/b/c.mp4", "vidéo/ünïcode/ß.mp4",
                                     "a/../b", "/abs", "a//b", "trail/", ".", "x\\y", "emoji/\xf0\x9f\x8e\xac.mp4",
                                     "bad\xff", "ctl\x01", NULL};
  for (int i = 0; keys[i]; i++) seeds(keys[i]);
  char lng[1100];
  memset(lng, 'k', 255);
  lng[255] = 0;
  seeds(lng);
  for (int i = 0; i < 1024; i++) lng[i] = i % 100 == 99 ? '/' : 'k';
  lng[1024] = 0;
  seeds(lng);

  harness("range");
  static const char *const ranges[] = {"bytes=0-99", "bytes=-10", "bytes=5-", "bytes=0-0", "bytes=999-", "bytes=0-1,2-3",
                                       "bytes=10-5", "bytes=-0", "bytes=0-999999999999999999999", "items=0-1", NULL};
  for (int i = 0; ranges[i]; i++) {
    seed1(4, ranges[i], strlen(ranges[i]));
    seed1(0, ranges[i], strlen(ranges[i]));
    seed1(6, ranges[i], strlen(ranges[i]));
  }

  harness("presign");
  seeds("GET\nfuzz/a\nGET\n2000000000\n@");
  seeds("PUT\nuploads/x/input\nPUT\n1900000001\n@");
  seeds("GET\nfuzz/a\nGET\n1800000000\n@");
  seeds("PUT\nfuzz/a\nGET\n2000000000\n@");
  seeds("GET\nfuzz/a\nGET\n2000000000\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  seeds("GET\nfuzz/a\nGET\n-9223372036854775808\n@");
  seeds("GET\nfuzz/a");

  harness("params");
  const kf_desc *const *all = kf_registry_all();
  for (int i = 0; all[i]; i++) {
    seed1((uint8_t)i, "{}", 2);
    for (int mode = 0; mode < 4; mode++) {
      json_t *o = table_json(all[i]->params, mode);
      char *s = json_dumps(o, JSON_COMPACT);
      seed1((uint8_t)i, s, strlen(s));
      free(s);
      json_decref(o);
    }
  }

  harness("video_bytes");
  const kf_desc *const *pub = kf_registry();
  char *b64s[3] = {ku_b64_encode(mp4, mp4_n), ku_b64_encode(png_rgb, png_rgb_n), ku_b64_encode(jpeg, jpeg_n)};
  for (int i = 0; pub[i]; i++) {
    json_t *params = table_json(pub[i]->params, 0);
    for (int k = 0; k < 3; k++) {
      json_t *flat = json_deep_copy(params);
      json_object_set_new(flat, "video_bytes", json_string(b64s[k]));
      if (k == 1) json_object_set_new(flat, "webhook", json_string("http://example.com/hook"));
      if (k == 2) json_object_set_new(flat, "plan", json_pack("{s:s, s:i}", "objective", "cost", "chunks", 1));
      char *s = json_dumps(flat, JSON_COMPACT);
      seed1((uint8_t)i, s, strlen(s));
      free(s);
      json_decref(flat);
    }
    json_t *full = json_pack("{s:{s:s}, s:O}", "input", "base64", b64s[0], "params", params);
    char *s = json_dumps(full, JSON_COMPACT);
    seed1((uint8_t)i, s, strlen(s));
    free(s);
    json_decref(full);
    full = json_pack("{s:s, s:O, s:s}", "input", "fuzz/a", "params", params, "webhook", "https://example.com:8443/h?x=1");
    s = json_dumps(full, JSON_COMPACT);
    seed1((uint8_t)i, s, strlen(s));
    free(s);
    json_decref(full);
    json_decref(params);
  }
  for (int k = 0; k < 3; k++) free(b64s[k]);

  harness("http");
  static const char *const reqs[] = {
      "GET\n/health\n\n",
      "GET\n/v1/objects/fuzz/a\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/objects/fuzz/a\nAuthorization: Bearer @T\nRange: bytes=0-9\n\n",
      "HEAD\n/v1/objects/fuzz/a\nAuthorization: Bearer @T\nRange: bytes=-5\n\n",
      "GET\n/v1/objects/fuzz/a?@P\nRange: bytes=990-\n\n",
      "GET\n/v1/objects/fuzz/a?@Q\n\n",
      "PUT\n/v1/objects/fuzz/a?@Q\n\n0123456789",
      "PUT\n/v1/objects/fuzz/b/c.bin\nAuthorization: Bearer @T\n\nhello",
      "DELETE\n/v1/objects/fuzz/b/c.bin\nAuthorization: Bearer @T\n\n",
      "POST\n/v1/objects/fuzz/a/presign\nAuthorization: Bearer @T\n\n{\"method\":\"GET\",\"ttl\":60}",
      "POST\n/v1/objects/fuzz/a/presign\nAuthorization: Bearer @T\n\n{\"method\":\"PUT\"}",
      "GET\n/v1/objects/%2e%2e/etc/passwd\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/objects/fuzz/a?method=GET&expires=99999999999&sig=00\n\n",
      "GET\n/v1/functions\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/functions/reframe\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/functions/nope\nAuthorization: Bearer @T\n\n",
      "POST\n/v1/functions/noop/spawn\nAuthorization: Bearer @T\nContent-Type: application/json\n\n{\"params\":{\"frames\":2}}",
      "POST\n/v1/functions/reframe/spawn\nAuthorization: Bearer @T\n\n{\"input\":\"fuzz/a\",\"params\":{\"width\":64,\"height\":64}}",
      "GET\n/v1/jobs?state=queued&limit=5\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/jobs?fn=noop&limit=1000\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/jobs/0123456789abcdef0123456789abcdef\nAuthorization: Bearer @T\n\n",
      "DELETE\n/v1/jobs/0123456789abcdef0123456789abcdef\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/jobs/0123456789abcdef0123456789abcdef/events\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/usage?since=2026-01-01\nAuthorization: Bearer @T\n\n",
      "GET\n/metrics\nAuthorization: Bearer @T\n\n",
      "GET\n/v1/jobs\nAuthorization: Bearer wrong\n\n",
      NULL};
  for (int i = 0; reqs[i]; i++) seeds(reqs[i]);

  harness("ncnn");
  ncnn_seeds();

  harness("image");
  seed(png_rgb, png_rgb_n);
  seed(jpeg, jpeg_n);
  seed(png_rgba, png_rgba_n);
  seed(bmp, bmp_n);

  harness("probe");
  seed1(1, mp4, mp4_n);
  seed1(2, mkv, mkv_n);
  seed1(0, mp4, mp4_n);
  seed1(3, png_rgb, png_rgb_n);
  seed1(0, jpeg, jpeg_n);
  /* files that name another file (the harness puts its canary's path for @CANARY@): none may be read as it */
  static const char *const refs[] = {
      "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n@CANARY@\n#EXT-X-ENDLIST\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:@CANARY@\n#EXT-X-ENDLIST\n",
      "ffconcat version 1.0\nfile '@CANARY@'\n",
      "ffconcat version 1.0\nfile canary.mp4\n",
      "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" mediaPresentationDuration=\"PT1S\">"
      "<Period><AdaptationSet mimeType=\"video/mp4\"><Representation id=\"1\" bandwidth=\"1000\"><BaseURL>@CANARY@</BaseURL>"
      "</Representation></AdaptationSet></Period></MPD>\n",
      NULL};
  for (int i = 0; refs[i]; i++) seed1(0, refs[i], strlen(refs[i]));
  printf("fuzz_seeds: wrote the seed corpora under %s\n", out_dir);
  return 0;
}
