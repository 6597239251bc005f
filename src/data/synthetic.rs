//! `synthetic_digits`: an offline stand-in for MNIST. In: split sizes and the recipe seed.
//! Out: 1 x 28 x 28 images of the ten digits, normalised like MNIST, labels `i % 10`.
//!
//! Each digit is a few strokes (lines and elliptic arcs) in a unit box. Every example draws
//! its own arc extents, point jitter, smooth warp, affine map (rotation, scale, aspect, shear,
//! translation), stroke width and ink, then adds distractor strokes and background noise. The
//! variation is there so that the task is not linearly trivial and sparsity has something to
//! lose. Each example has its own rng stream, so generation is parallel yet identical for a
//! seed whatever the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::error::DataError;
use super::{Loaded, Norm, Split};

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
/// Pixels per template unit: the template's 0.1..0.9 spans about 18 px, as MNIST's digits do.
const UNIT: f32 = 22.0;
/// Keeps these streams apart from other uses of the recipe seed.
const DOMAIN: u64 = 0x7379_6e74_6469_6769; // "syntdigi"

/// A stroke in template coordinates: x right, y down, the digit inside 0..1.
#[derive(Clone, Copy)]
enum Stroke {
    Line([f32; 2], [f32; 2]),
    /// Elliptic arc, angles in degrees (0 = right, 90 = down), drawn from `from` to `to`.
    Arc {
        c: [f32; 2],
        r: [f32; 2],
        from: f32,
        to: f32,
    },
}

const fn line(x0: f32, y0: f32, x1: f32, y1: f32) -> Stroke {
    Stroke::Line([x0, y0], [x1, y1])
}

const fn arc(cx: f32, cy: f32, rx: f32, ry: f32, from: f32, to: f32) -> Stroke {
    Stroke::Arc { c: [cx, cy], r: [rx, ry], from, to }
}

const DIGITS: [&[Stroke]; 10] = [
    &[arc(0.5, 0.5, 0.27, 0.38, -90.0, 270.0)],
    &[line(0.5, 0.1, 0.5, 0.9), line(0.37, 0.23, 0.5, 0.1)],
    &[arc(0.5, 0.32, 0.24, 0.21, 195.0, 385.0), line(0.717, 0.41, 0.22, 0.9), line(0.22, 0.9, 0.8, 0.9)],
    &[arc(0.48, 0.3, 0.24, 0.2, 200.0, 450.0), arc(0.48, 0.7, 0.26, 0.2, 270.0, 520.0)],
    &[line(0.62, 0.9, 0.62, 0.1), line(0.62, 0.1, 0.2, 0.62), line(0.2, 0.62, 0.82, 0.62)],
    &[line(0.76, 0.1, 0.32, 0.1), line(0.32, 0.1, 0.3, 0.47), arc(0.5, 0.66, 0.25, 0.24, 220.0, 510.0)],
    &[arc(0.7, 0.62, 0.42, 0.52, 260.0, 160.0), arc(0.5, 0.68, 0.2, 0.2, 0.0, 360.0)],
    &[line(0.2, 0.1, 0.8, 0.1), line(0.8, 0.1, 0.42, 0.9)],
    &[arc(0.5, 0.29, 0.2, 0.19, 0.0, 360.0), arc(0.5, 0.69, 0.24, 0.21, 0.0, 360.0)],
    &[arc(0.5, 0.32, 0.22, 0.21, 0.0, 360.0), line(0.72, 0.32, 0.62, 0.9)],
];

/// Generates `train` and `test` examples from `seed`.
pub(crate) fn generate(train: usize, test: usize, seed: u64) -> Result<Loaded, DataError> {
    for (split, n) in [("train", train), ("test", test)] {
        if n == 0 {
            let source_desc = format!("synthetic_digits({split}: 0)");
            return Err(DataError::Empty { dataset: "synthetic_digits".into(), split, source_desc });
        }
    }
    let train = split(train, seed, 0);
    let test = split(test, seed, 1);
    let files = Vec::new();
    Ok(Loaded { train, test, files, note: None })
}

fn split(len: usize, seed: u64, split_id: u64) -> Split {
    let (mean, std) = (Norm::MNIST.mean[0], Norm::MNIST.std[0]);
    let mut images = vec![0.0f32; len * PIXELS];
    images.par_chunks_mut(PIXELS).enumerate().for_each(|(i, img)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ DOMAIN);
        rng.set_stream((split_id << 40) | i as u64);
        render(i % 10, &mut rng, img);
        for p in img.iter_mut() {
            *p = (*p - mean) / std;
        }
    });
    let labels = (0..len).map(|i| (i % 10) as u8).collect();
    Split { images, labels, len }
}

/// The per-example map from template coordinates to pixels.
struct Pose {
    /// 2x2 linear part (rotation * shear * scale) and the translation, in pixels.
    m: [f32; 4],
    t: [f32; 2],
    /// Smooth displacement `amp * sin(freq * other + phase)` per axis, in template units.
    warp: [[f32; 3]; 2],
}

impl Pose {
    fn random(rng: &mut ChaCha8Rng) -> Pose {
        let rot = rng.gen_range(-0.32f32..0.32);
        let scale = rng.gen_range(0.78f32..1.1);
        let aspect = rng.gen_range(0.8f32..1.2).sqrt();
        let shear = rng.gen_range(-0.35f32..0.35);
        let (sx, sy) = (scale * aspect * UNIT, scale / aspect * UNIT);
        let (s, c) = rot.sin_cos();
        // R * [[1, shear], [0, 1]] * diag(sx, sy)
        let m = [c * sx, (c * shear - s) * sy, s * sx, (s * shear + c) * sy];
        let t = [13.5 + rng.gen_range(-2.5..2.5), 13.5 + rng.gen_range(-2.5..2.5)];
        let mut wave = || [rng.gen_range(0.0..0.05), rng.gen_range(3.0..9.0), rng.gen_range(0.0..6.3)];
        let warp = [wave(), wave()];
        Pose { m, t, warp }
    }

    fn map(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let [wx, wy] = self.warp;
        let u = x - 0.5 + wx[0] * (wx[1] * y + wx[2]).sin();
        let v = y - 0.5 + wy[0] * (wy[1] * x + wy[2]).sin();
        [self.m[0] * u + self.m[1] * v + self.t[0], self.m[2] * u + self.m[3] * v + self.t[1]]
    }
}

/// Draws `digit` into `img` (values 0..1).
fn render(digit: usize, rng: &mut ChaCha8Rng, img: &mut [f32]) {
    let pose = Pose::random(rng);
    let radius = rng.gen_range(0.6f32..1.7);
    let ink = rng.gen_range(0.65f32..1.0);
    let mut points = Vec::with_capacity(24);
    for stroke in DIGITS[digit] {
        points.clear();
        match *stroke {
            Stroke::Line(a, b) => {
                // A midpoint lets the jitter bend the line a little.
                points.extend([a, [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0], b]);
            }
            Stroke::Arc { c, r, from, to } => {
                let from = from + rng.gen_range(-22.0..22.0);
                let to = to + rng.gen_range(-22.0..22.0);
                let n = ((to - from).abs() / 24.0).ceil().max(2.0) as usize;
                points.extend((0..=n).map(|k| {
                    let a = (from + (to - from) * k as f32 / n as f32).to_radians();
                    [c[0] + r[0] * a.cos(), c[1] + r[1] * a.sin()]
                }));
            }
        }
        for p in points.iter_mut() {
            let jitter = [rng.gen_range(-0.03..0.03), rng.gen_range(-0.03..0.03)];
            *p = pose.map([p[0] + jitter[0], p[1] + jitter[1]]);
        }
        for seg in points.windows(2) {
            draw_segment(img, seg[0], seg[1], radius, ink);
        }
    }
    // Distractors: short stray strokes anywhere in the frame.
    while rng.gen_bool(0.35) {
        let a = [rng.gen_range(0.0..27.0), rng.gen_range(0.0..27.0)];
        let (len, dir) = (rng.gen_range(3.0f32..9.0), rng.gen_range(0.0f32..6.3));
        let b = [a[0] + len * dir.cos(), a[1] + len * dir.sin()];
        draw_segment(img, a, b, rng.gen_range(0.5..1.2), rng.gen_range(0.3..0.9));
    }
    add_noise(img, rng.gen_range(0.0..0.15), rng.gen());
}

/// Max-blends an anti-aliased segment of half-width `radius` (pixels) into `img`.
fn draw_segment(img: &mut [f32], a: [f32; 2], b: [f32; 2], radius: f32, ink: f32) {
    // Coverage falls from 1 to 0 between `radius - 0.5` and `radius + 0.5` from the centre
    // line. The inner loop is branch-free so that it vectorises.
    let reach = radius + 0.5;
    let lo = |v: f32| (v - reach).floor().clamp(0.0, (SIDE - 1) as f32) as usize;
    let hi = |v: f32| (v + reach).ceil().clamp(0.0, (SIDE - 1) as f32) as usize;
    let d = [b[0] - a[0], b[1] - a[1]];
    let len2 = d[0] * d[0] + d[1] * d[1];
    let inv = if len2 > 0.0 { 1.0 / len2 } else { 0.0 };
    let (x0, x1) = (lo(a[0].min(b[0])), hi(a[0].max(b[0])));
    for y in lo(a[1].min(b[1]))..=hi(a[1].max(b[1])) {
        let py = y as f32 - a[1];
        for (x, px) in img[y * SIDE + x0..=y * SIDE + x1].iter_mut().enumerate() {
            let qx = (x + x0) as f32 - a[0];
            let t = ((qx * d[0] + py * d[1]) * inv).clamp(0.0, 1.0);
            let dist = ((qx - t * d[0]).powi(2) + (py - t * d[1]).powi(2)).sqrt();
            let cover = (reach - dist).clamp(0.0, 1.0) * ink;
            *px = px.max(cover);
        }
    }
}

/// Adds non-negative noise of scale `sigma`, then clamps to 0..1. One SplitMix64 draw gives
/// four pixels 16 bits each, which keeps the 784 draws per image cheap; squaring a uniform
/// skews the noise towards 0 like the folded normal of a real scanner's background.
fn add_noise(img: &mut [f32], sigma: f32, seed: u64) {
    let mut state = seed;
    for quad in img.chunks_mut(4) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        for (k, px) in quad.iter_mut().enumerate() {
            let u = ((z >> (16 * k)) & 0xffff) as f32 * (1.0 / 65536.0);
            *px = (*px + sigma * u * u).min(1.0);
        }
    }
}
