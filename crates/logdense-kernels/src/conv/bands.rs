//! The tiles and their band buffers: how a call's rows are split into tiles, and the fills that
//! normalise and rectify a tile's inputs into a zero-padded band where every kernel tap is a
//! plain offset.

use super::*;

/// Output pixels per tile (about): large enough for full micro-kernel panels, small enough that
/// the im2col tile of a wide layer stays in cache.
const TILE: usize = 512;

/// Rows `y0..y0 + rows` of one image inside a tile, at padded row `offset` of its band buffer.
#[derive(Debug, Clone)]
pub(super) struct ImageRows {
    pub(super) image: usize,
    pub(super) y0: usize,
    pub(super) rows: usize,
    pub(super) offset: usize,
}

/// A tile: segments stacked in one band buffer of `padded_rows` rows (each segment carries
/// `pad` halo rows above and below).
#[derive(Debug, Clone)]
pub(super) struct Tile {
    pub(super) segments: Vec<ImageRows>,
    pub(super) padded_rows: usize,
}

/// Band geometry shared by all tiles of a call.
pub(super) struct Bands {
    pub(super) pad: usize,
    /// Padded width.
    pub(super) wp: usize,
    pub(super) tiles: Vec<Tile>,
    /// The largest tile's band buffer, in elements per channel (with the read-past slack).
    pub(super) max_plane: usize,
}

impl Bands {
    pub(super) fn new(geo: &Geometry) -> Self {
        let pad = geo.kernel / 2;
        let wp = geo.width + 2 * pad;
        let mut tiles = Vec::new();
        let mut push = |segments: Vec<ImageRows>| {
            let padded_rows = segments.iter().map(|s| s.rows + 2 * pad).sum();
            tiles.push(Tile {
                segments,
                padded_rows,
            });
        };
        if geo.pixels() >= TILE {
            let band = (TILE / geo.width).clamp(1, geo.height);
            // Row pairs, for the Winograd products' 2 x 2 output blocks, where the height is even.
            let band = if geo.height.is_multiple_of(2) {
                (band & !1).max(2)
            } else {
                band
            };
            for image in 0..geo.batch {
                for y0 in (0..geo.height).step_by(band) {
                    let rows = band.min(geo.height - y0);
                    push(vec![ImageRows {
                        image,
                        y0,
                        rows,
                        offset: 0,
                    }]);
                }
            }
        } else {
            // Small maps stack whole images; a batch too small to fill one tile per thread is
            // split further, so that every thread gets work (an 8 x 8 map at batch 8 is one
            // 512-pixel tile otherwise).
            let threads = rayon::current_num_threads().max(1);
            let target = TILE.min(geo.columns().div_ceil(threads));
            let per_tile = (target / geo.pixels()).max(1);
            for first in (0..geo.batch).step_by(per_tile) {
                let segments = (first..(first + per_tile).min(geo.batch))
                    .enumerate()
                    .map(|(i, image)| ImageRows {
                        image,
                        y0: 0,
                        rows: geo.height,
                        offset: i * (geo.height + 2 * pad),
                    })
                    .collect();
                push(segments);
            }
        }
        let max_rows = tiles.iter().map(|t| t.padded_rows).max().unwrap_or(0);
        Bands {
            pad,
            wp,
            tiles,
            max_plane: max_rows * wp + 2 * pad,
        }
    }

    /// The image width (the padded width less the padding).
    pub(super) fn width(&self) -> usize {
        self.wp - 2 * self.pad
    }

    /// Output columns of a tile (padded-width coordinates, halo rows included).
    pub(super) fn columns(&self, tile: &Tile) -> usize {
        (tile.padded_rows - 2 * self.pad) * self.wp
    }

    pub(super) fn plane(&self, tile: &Tile) -> usize {
        tile.padded_rows * self.wp + 2 * self.pad
    }

    /// Fills `band` (`[channels, plane]`) with `act(channel)` of the sources' rows the
    /// tile reads, zero outside the image.
    pub(super) fn fill(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [f32],
        act: impl Fn(usize) -> Act,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::avx512() {
            // SAFETY: the CPU has AVX512F and AVX512BW (checked just above).
            return unsafe { self.fill_avx512(geo, tile, sources, channels, band, act) };
        }
        self.fill_rows(geo, tile, sources, channels, band, act)
    }

    /// [`Bands::fill`] compiled for AVX-512 as one function, the row loop with the rows'
    /// arithmetic inlined (a call per row cost more than the row on 8- and 16-wide maps).
    ///
    /// # Safety
    ///
    /// The CPU must support AVX512F and AVX512BW.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fill_avx512(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [f32],
        act: impl Fn(usize) -> Act,
    ) {
        self.fill_rows(geo, tile, sources, channels, band, act)
    }

    /// The body of [`Bands::fill`], inlined into each of its two compilations.
    #[inline(always)]
    fn fill_rows(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [f32],
        act: impl Fn(usize) -> Act,
    ) {
        let plane = self.plane(tile);
        self.fill_with(
            geo,
            tile,
            sources,
            channels,
            band,
            plane,
            0.0,
            |c, src, dst| act_row(dst, src, act(c)),
        );
    }

    /// The band of `channels` rows at row stride `stride` (each the tile's plane): `put(channel,
    /// source row, destination row)` writes each image row the tile reads, and everything
    /// outside the image (pad columns, halo rows past the border, the plane's tail) is `zero`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn fill_with<T: Copy>(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [T],
        stride: usize,
        zero: T,
        put: impl Fn(usize, &[f32], &mut [T]),
    ) {
        let mut c = 0;
        for (j, &cj) in channels.iter().enumerate() {
            for cl in 0..cj {
                // The next channel's rows start loading while this one is filled.
                self.prefetch_next(geo, tile, sources, channels, (j, cl));
                self.fill_plane(geo, tile, &mut band[c * stride..], zero, |image, y, dst| {
                    put(
                        c,
                        &sources[j][(image * cj + cl) * geo.pixels() + y * geo.width..]
                            [..geo.width],
                        dst,
                    )
                });
                c += 1;
            }
        }
    }

    /// Asks the CPU to start loading the rows of one source channel that a tile reads
    /// (`plane(image)`: where that image's plane starts in `source`), so that those loads
    /// overlap the work on the channel before. The planes of 32 x 32 maps are one page each,
    /// where the hardware's prefetchers stop, and each channel's rows are only a few lines.
    #[inline(always)]
    pub(super) fn prefetch(
        &self,
        geo: &Geometry,
        tile: &Tile,
        source: &[f32],
        plane: impl Fn(usize) -> usize,
    ) {
        for seg in &tile.segments {
            let first = seg.y0.saturating_sub(self.pad);
            let end = (seg.y0 + seg.rows + self.pad).min(geo.height);
            prefetch(&source[plane(seg.image) + first * geo.width..][..(end - first) * geo.width]);
        }
    }

    /// [`Bands::prefetch`] of the channel after channel `cl` of source `j` (in concatenation
    /// order; `channels` are the sources' channel counts), where there is one.
    #[inline(always)]
    pub(super) fn prefetch_next(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        (j, cl): (usize, usize),
    ) {
        let (nj, ncl) = if cl + 1 < channels[j] {
            (j, cl + 1)
        } else {
            (j + 1, 0)
        };
        if let (Some(&ncj), Some(next)) = (channels.get(nj), sources.get(nj)) {
            self.prefetch(geo, tile, next, |image| (image * ncj + ncl) * geo.pixels());
        }
    }

    /// One plane of a band at the start of `dst`: `put(image, y, destination row)` writes the
    /// `width` values of each image row the tile reads; the rest of the plane is `zero`.
    #[inline(always)]
    pub(super) fn fill_plane<T: Copy>(
        &self,
        geo: &Geometry,
        tile: &Tile,
        dst: &mut [T],
        zero: T,
        mut put: impl FnMut(usize, usize, &mut [T]),
    ) {
        let (h, w, pad, wp) = (geo.height, geo.width, self.pad, self.wp);
        let dst_plane = &mut dst[..self.plane(tile)];
        dst_plane[tile.padded_rows * wp..].fill(zero);
        for seg in &tile.segments {
            for t in 0..seg.rows + 2 * pad {
                let row = &mut dst_plane[(seg.offset + t) * wp..][..wp];
                let y = (seg.y0 + t) as isize - pad as isize;
                if y < 0 || y >= h as isize {
                    row.fill(zero);
                    continue;
                }
                match pad {
                    // Single stores for the 1x1 and 3x3 kernels: a `memset` call per padding
                    // column cost more than the store.
                    0 => {}
                    1 => {
                        row[0] = zero;
                        row[w + 1] = zero;
                    }
                    _ => {
                        row[..pad].fill(zero);
                        row[pad + w..].fill(zero);
                    }
                }
                put(seg.image, y as usize, &mut row[pad..pad + w]);
            }
        }
    }

    /// The im2col matrix (`channels * taps` rows of `columns` values) of a filled band: each
    /// row is one contiguous copy at the tap's offset.
    pub(super) fn im2col(
        &self,
        tile: &Tile,
        band: &[f32],
        channels: usize,
        kernel: usize,
        col: &mut [f32],
    ) {
        let (n, plane) = (self.columns(tile), self.plane(tile));
        for c in 0..channels {
            for ky in 0..kernel {
                for kx in 0..kernel {
                    let row = (c * kernel + ky) * kernel + kx;
                    col[row * n..][..n]
                        .copy_from_slice(&band[c * plane + ky * self.wp + kx..][..n]);
                }
            }
        }
    }

    /// Calls `visit(segment, output row within the image, tile column of the row's first pixel)`
    /// for every real output row of a tile.
    pub(super) fn rows(&self, tile: &Tile, mut visit: impl FnMut(&ImageRows, usize, usize)) {
        for seg in &tile.segments {
            for i in 0..seg.rows {
                visit(seg, seg.y0 + i, (seg.offset + i) * self.wp);
            }
        }
    }
}

/// The offsets of a `kernel x kernel` filter's taps in a band of padded width `wp`.
pub(super) fn tap_shifts(kernel: usize, wp: usize) -> Vec<usize> {
    (0..kernel * kernel)
        .map(|t| (t / kernel) * wp + t % kernel)
        .collect()
}

/// Values past a band's last plane that the direct kernels read (their last vector of a row
/// reaches up to 15 columns past it), allocated so that every read stays in the buffer.
pub(super) const BAND_SLACK: usize = 16;

/// Asks the CPU to start loading `values` into its caches, a hint that never faults: for
/// reads that jump between channel planes, where the hardware's prefetchers stop (at page
/// ends: a 32 x 32 plane is one page).
#[inline(always)]
pub(super) fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..values.len()).step_by(16) {
        // SAFETY: a prefetch only hints the cache and never faults; the address is in `values`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                values.as_ptr().add(at).cast(),
            )
        };
    }
}

/// `dst[i] = act(src[i])`.
#[inline(always)]
fn act_row(dst: &mut [f32], src: &[f32], act: Act) {
    if act.relu {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (act.k * v + act.b).max(0.0);
        }
    } else {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = act.k * v + act.b;
        }
    }
}

/// `y = k * x + b`, rectified or not: a band row's values (BN-ReLU for a layer's inputs, the
/// identity for an output gradient).
#[derive(Clone, Copy)]
pub(crate) struct Act {
    pub k: f32,
    pub b: f32,
    pub relu: bool,
}

impl Act {
    pub(crate) fn layer(affine: &Affine, c: usize) -> Self {
        Act {
            k: affine.scale[c],
            b: affine.shift[c],
            relu: true,
        }
    }

    pub(crate) const IDENTITY: Act = Act {
        k: 1.0,
        b: 0.0,
        relu: false,
    };

    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        let y = self.k * x + self.b;
        if self.relu {
            y.max(0.0)
        } else {
            y
        }
    }
}
