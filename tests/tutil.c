/* tutil.c — see tutil.h. */
#include "tutil.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/crc.h>
#include "img/img.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

const char *t_dir(void) {
  if (!g_dir[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/kiln-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); exit(2); }
  }
  return g_dir;
}

void t_cleanup(void) {
  if (!g_dir[0]) return;
  DIR *d = opendir(g_dir);
  struct dirent *de;
  char p[1024];
  while (d && (de = readdir(d))) {
    if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
    snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(g_dir);
}

const char *t_path(const char *name) {
  static char buf[8][1024];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", t_dir(), name);
  return buf[k];
}

int t_decode(const char *path, int64_t start, int64_t end, t_video *v) {
  memset(v, 0, sizeof *v);
  km_decoder *d = NULL;
  kiln_err e = {0};
  int r = km_decoder_open(&d, path, NULL, start, end, 0, &e);
  if (r < 0) { fprintf(stderr, "  decode %s: %s\n", path, e.msg); return r; }
  int cap = 0;
  for (;;) {
    AVFrame *f;
    km_frame_info fi;
    r = km_decoder_read(d, &f, &fi, &e);
    if (r <= 0) break;
    if (v->n == cap) {
      cap = cap ? 2 * cap : 64;
      v->f = realloc(v->f, sizeof *v->f * (size_t)cap);
      v->info = realloc(v->info, sizeof *v->info * (size_t)cap);
    }
    v->f[v->n] = f;
    v->info[v->n++] = fi;
    v->w = f->width;
    v->h = f->height;
  }
  if (r < 0) fprintf(stderr, "  decode %s: %s\n", path, e.msg);
  km_decoder_free(d);
  return r;
}

void t_video_free(t_video *v) {
  for (int i = 0; i < v->n; i++) av_frame_free(&v->f[i]);
  free(v->f);
  free(v->info);
  memset(v, 0, sizeof *v);
}

int t_moov_first(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  long off = 0;
  int moov = -1, mdat = -1, i = 0;
  unsigned char h[16];
  while (fseek(f, off, SEEK_SET) == 0 && fread(h, 1, 8, f) == 8) {
    uint64_t size = ((uint64_t)h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3];
    if (size == 1 && fread(h + 8, 1, 8, f) == 8) {
      size = 0;
      for (int k = 8; k < 16; k++) size = (size << 8) | h[k];
    }
    if (!memcmp(h + 4, "moov", 4) && moov < 0) moov = i;
    if (!memcmp(h + 4, "mdat", 4) && mdat < 0) mdat = i;
    if (size < 8) break;
    off += (long)size;
    i++;
  }
  fclose(f);
  return moov >= 0 && mdat >= 0 && moov < mdat;
}

int t_file_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

int t_count_files(const char *s) {
  DIR *d = opendir(t_dir());
  struct dirent *de;
  int n = 0;
  while (d && (de = readdir(d)))
    if (strstr(de->d_name, s)) n++;
  if (d) closedir(d);
  return n;
}

double t_psnr_plane(const AVFrame *f, int plane, double (*expect)(void *, int, int, int), void *arg) {
  int w = plane ? f->width / 2 : f->width, h = plane ? f->height / 2 : f->height;
  double sum = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double ev = expect(arg, plane, x, y);
      ev = ev < 0 ? 0 : ev > 255 ? 255 : round(ev);
      double d = f->data[plane][(size_t)y * f->linesize[plane] + x] - ev;
      sum += d * d;
    }
  return ki_psnr(sum / ((double)w * h));
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) { h ^= c[i]; h *= 1099511628211ULL; }
  return h;
}

int t_packets_of(const char *path, int type, t_packets *out) {
  memset(out, 0, sizeof *out);
  out->data_hash = out->ts_hash = 1469598103934665603ULL;
  AVFormatContext *ic = NULL;
  if (avformat_open_input(&ic, path, NULL, NULL) < 0) return -1;
  int si = avformat_find_stream_info(ic, NULL) < 0 ? -1 : av_find_best_stream(ic, (enum AVMediaType)type, -1, -1, NULL, 0);
  AVPacket *pkt = av_packet_alloc();
  while (si >= 0 && pkt && av_read_frame(ic, pkt) >= 0) {
    if (pkt->stream_index == si) {
      AVRational tb = ic->streams[si]->time_base;
      int64_t ts[3] = {av_rescale_q(pkt->pts, tb, (AVRational){1, 1000000}), av_rescale_q(pkt->dts, tb, (AVRational){1, 1000000}),
                       av_rescale_q(pkt->duration, tb, (AVRational){1, 1000000})};
      out->data_hash = fnv(out->data_hash, pkt->data, (size_t)pkt->size);
      out->ts_hash = fnv(out->ts_hash, ts, sizeof ts);
      out->n++;
      out->bytes += pkt->size;
    }
    av_packet_unref(pkt);
  }
  av_packet_free(&pkt);
  avformat_close_input(&ic);
  return si >= 0 ? 0 : -1;
}

int t_png_solid(const char *path, int w, int h) {
  const AVCodec *enc = avcodec_find_encoder(AV_CODEC_ID_PNG);
  AVCodecContext *cc = enc ? avcodec_alloc_context3(enc) : NULL;
  AVFrame *f = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  int r = -1;
  if (!cc || !f || !pkt) goto done;
  cc->width = w;
  cc->height = h;
  cc->pix_fmt = AV_PIX_FMT_MONOBLACK;
  cc->time_base = (AVRational){1, 1};
  f->width = w;
  f->height = h;
  f->format = AV_PIX_FMT_MONOBLACK;
  if (avcodec_open2(cc, enc, NULL) < 0 || av_frame_get_buffer(f, 0) < 0) goto done;
  for (int y = 0; y < h; y++) memset(f->data[0] + (size_t)y * f->linesize[0], 0xff, (size_t)(w + 7) / 8);   /* white */
  if (avcodec_send_frame(cc, f) < 0 || avcodec_send_frame(cc, NULL) < 0 || avcodec_receive_packet(cc, pkt) < 0) goto done;
  FILE *o = fopen(path, "wb");
  if (!o) goto done;
  r = fwrite(pkt->data, 1, (size_t)pkt->size, o) == (size_t)pkt->size ? 0 : -1;
  if (fclose(o) != 0) r = -1;
done:
  av_packet_free(&pkt);
  av_frame_free(&f);
  avcodec_free_context(&cc);
  return r;
}

static int read_all(const char *path, uint8_t **buf, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  *buf = len > 0 ? malloc((size_t)len) : NULL;
  int r = *buf && fread(*buf, 1, (size_t)len, f) == (size_t)len ? 0 : -1;
  fclose(f);
  *n = (size_t)len;
  if (r < 0) free(*buf);
  return r;
}

static int write_all(const char *path, const uint8_t *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int r = fwrite(buf, 1, n, f) == n ? 0 : -1;
  if (fclose(f) != 0) r = -1;
  return r;
}

static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v; }

int t_png_set_size(const char *path, uint32_t w, uint32_t h) {
  uint8_t *b;
  size_t n;
  if (read_all(path, &b, &n) < 0) return -1;
  int r = -1;
  if (n >= 33 && !memcmp(b + 12, "IHDR", 4)) {     /* length 13, "IHDR", 13 bytes of fields, CRC over type + fields */
    put_be32(b + 16, w);
    put_be32(b + 20, h);
    uint32_t crc = av_crc(av_crc_get_table(AV_CRC_32_IEEE_LE), 0xFFFFFFFFu, b + 12, 17) ^ 0xFFFFFFFFu;
    put_be32(b + 29, crc);
    r = write_all(path, b, n);
  }
  free(b);
  return r;
}

int t_mp4_set_size(const char *path, int w, int h) {
  uint8_t *b;
  size_t n;
  if (read_all(path, &b, &n) < 0) return -1;
  int r = -1;
  uint8_t *stsd = memmem(b, n, "stsd", 4);        /* not "avc1" alone: ftyp lists it as a brand */
  uint8_t *e = stsd ? memmem(stsd, n - (size_t)(stsd - b), "avc1", 4) : NULL;
  if (e && (size_t)(e - b) + 32 <= n) {            /* type, 6 reserved, data ref 2, 16 predefined/reserved, w, h */
    e[28] = (uint8_t)(w >> 8); e[29] = (uint8_t)w;
    e[30] = (uint8_t)(h >> 8); e[31] = (uint8_t)h;
    r = write_all(path, b, n);
  }
  free(b);
  return r;
}

int t_jpeg_claiming(const char *path, int w, int h) {
  const AVCodec *enc = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
  AVCodecContext *cc = enc ? avcodec_alloc_context3(enc) : NULL;
  AVFrame *f = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  int r = -1;
  if (!cc || !f || !pkt) goto done;
  cc->width = cc->height = f->width = f->height = 64;
  cc->pix_fmt = f->format = AV_PIX_FMT_YUVJ420P;
  cc->time_base = (AVRational){1, 25};
  if (avcodec_open2(cc, enc, NULL) < 0 || av_frame_get_buffer(f, 0) < 0) goto done;
  for (int p = 0; p < 3; p++) memset(f->data[p], 128, (size_t)f->linesize[p] * (p ? 32 : 64));
  if (avcodec_send_frame(cc, f) < 0 || avcodec_send_frame(cc, NULL) < 0 || avcodec_receive_packet(cc, pkt) < 0) goto done;
  uint8_t *sof = memmem(pkt->data, (size_t)pkt->size, "\xff\xc0", 2);   /* length 2, precision 1, height 2, width 2 */
  if (!sof || sof + 9 > pkt->data + pkt->size) goto done;
  sof[5] = (uint8_t)(h >> 8); sof[6] = (uint8_t)h;
  sof[7] = (uint8_t)(w >> 8); sof[8] = (uint8_t)w;
  r = write_all(path, pkt->data, (size_t)pkt->size);
done:
  av_packet_free(&pkt);
  av_frame_free(&f);
  avcodec_free_context(&cc);
  return r;
}

long t_vm_hwm_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
  if (f) fclose(f);
  return kb;
}
