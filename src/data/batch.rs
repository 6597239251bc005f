//! Epoch order and batch assembly. In: a [`Split`], the example indices of one batch, the
//! plan's augmentations and the engine's rng. Out: a seeded permutation per epoch, and batch
//! buffers of images (randomly cropped and flipped) and labels.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Split;
use crate::ir::plan::Augment;

/// Keeps the shuffle's stream apart from other streams the engine derives from the same seed.
const ORDER_DOMAIN: u64 = 0x6570_6f63_685f_6f72; // "epoch_or"

/// Index order of one epoch: a seeded shuffle, deterministic in (seed, epoch).
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ORDER_DOMAIN);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng);
    order
}

/// Copy examples `idx` of `split` into `images` (len idx.len()*C*H*W) and `labels`, applying
/// the augmentations in order with `rng` (random crop with zero padding, horizontal flip).
///
/// The output is always C x H x W: `Crop { size, pad }` pads by `pad`, then takes a window at a
/// random offset in `0..=H + 2 pad - size`; with `size == H == W`, the usual case, that is the
/// standard random crop. Zero padding is the mean on normalised data.
///
/// # Panics
/// When a buffer length does not match `idx.len()` or an index is out of range (caller bugs).
pub fn fill_batch(
    split: &Split,
    shape: [usize; 3],
    idx: &[usize],
    augment: &[Augment],
    rng: &mut ChaCha8Rng,
    images: &mut [f32],
    labels: &mut [usize],
) {
    let n = shape.iter().product::<usize>();
    assert_eq!(images.len(), idx.len() * n, "fill_batch: images buffer length");
    assert_eq!(labels.len(), idx.len(), "fill_batch: labels buffer length");
    let mut scratch = vec![0.0f32; if augment.is_empty() { 0 } else { n }];
    for (b, &i) in idx.iter().enumerate() {
        let out = &mut images[b * n..(b + 1) * n];
        out.copy_from_slice(split.image(i, shape));
        labels[b] = split.labels[i] as usize;
        for aug in augment {
            match *aug {
                Augment::Crop { size, pad } => {
                    let [_, h, w] = shape;
                    let oy = rng.gen_range(0..=(h + 2 * pad).saturating_sub(size));
                    let ox = rng.gen_range(0..=(w + 2 * pad).saturating_sub(size));
                    scratch.copy_from_slice(out);
                    shift(&scratch, out, shape, oy as isize - pad as isize, ox as isize - pad as isize);
                }
                Augment::Flip => {
                    if rng.gen_bool(0.5) {
                        out.chunks_exact_mut(shape[2]).for_each(<[f32]>::reverse);
                    }
                }
            }
        }
    }
}

/// `dst(c, y, x) = src(c, y + dy, x + dx)`, zero outside `src`.
fn shift(src: &[f32], dst: &mut [f32], [c, h, w]: [usize; 3], dy: isize, dx: isize) {
    // Output columns whose source column is inside the image.
    let x0 = (-dx).clamp(0, w as isize) as usize;
    let x1 = (w as isize - dx).clamp(0, w as isize) as usize;
    for ch in 0..c {
        for y in 0..h {
            let row = &mut dst[(ch * h + y) * w..(ch * h + y + 1) * w];
            let sy = y as isize + dy;
            if sy < 0 || sy >= h as isize || x0 >= x1 {
                row.fill(0.0);
                continue;
            }
            let src_row = &src[(ch * h + sy as usize) * w..(ch * h + sy as usize + 1) * w];
            row[..x0].fill(0.0);
            row[x1..].fill(0.0);
            let sx0 = (x0 as isize + dx) as usize;
            row[x0..x1].copy_from_slice(&src_row[sx0..sx0 + (x1 - x0)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_and_zero_fills() {
        // 1 x 2 x 3 image: rows [1 2 3], [4 5 6].
        let src = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut dst = [9.0; 6];
        shift(&src, &mut dst, [1, 2, 3], 0, 1);
        assert_eq!(dst, [2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
        shift(&src, &mut dst, [1, 2, 3], -1, -2);
        assert_eq!(dst, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        shift(&src, &mut dst, [1, 2, 3], 0, 5);
        assert_eq!(dst, [0.0; 6]);
    }
}
