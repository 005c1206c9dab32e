/* tile.h — running a net on an image in overlapping tiles (tile.c), so a
 * frame too large for a memory cap goes through in pieces and the stitched
 * result equals one whole run (within float rounding): each tile is read
 * with `overlap` extra input pixels on every side (clipped at the image's
 * border), and only its centre is kept. With overlap >= the net's receptive
 * field radius (kn_net_radius) no output pixel sees a tile's cut, so there
 * are no seams. */
#ifndef KILN_NN_TILE_H
#define KILN_NN_TILE_H

#include <stddef.h>

#include "nn/net.h"

/* An upper bound on the receptive field radius of n in input pixels: the
 * sum of its convolutions' radii (dilation x (kernel - 1) / 2, times the
 * stride so far), plus 2 for each smoothing (bilinear/bicubic) Interp. */
int kn_net_radius(const kn_net *n);

/* An estimate of the bytes one run of n needs per input pixel (the widest
 * activations alive at once, the input and the output), for a net that
 * makes `scale` output pixels per input pixel on each axis. */
size_t kn_net_bytes_per_pixel(const kn_net *n, int scale);

/* The tile side (input pixels) that keeps one run of n on a tile (with its
 * overlap) under cap bytes; 0 when a whole w x h image fits. At least 16. */
int kn_tile_auto(const kn_net *n, int scale, int overlap, int w, int h, size_t cap);

/* Runs n on in (3 channels) in tiles of tile x tile input pixels, each with
 * overlap more on every side, and stitches the centres into *out
 * (allocated; free with kn_tensor_free): what kn_net_run makes, within float
 * rounding. tile <= 0, or a tile covering the input: one kn_net_run. The net
 * must scale every tile by the same whole factor (an error otherwise). */
int kn_net_run_tiled(kn_net *n, const kn_tensor *in, int tile, int overlap, kn_tensor *out, kiln_err *e);

#endif
