//! The resampling loops against the naive window average and transposed convolution, and
//! their backward loops against the naive adjoints and finite differences.

mod common;

use common::{assert_close, values, widen};
use logdense_kernels::naive;
use logdense_kernels::resample::{
    avg_pool2, avg_pool2_backward, overlap_add_3x3s2, overlap_add_3x3s2_backward,
};
use logdense_kernels::Resample;

/// Even, odd and 1-pixel sizes.
const SIZES: [(usize, usize); 6] = [(6, 8), (7, 5), (1, 2), (2, 1), (1, 1), (9, 12)];

#[test]
fn average_pool_equals_the_window_mean_with_its_gradient() {
    for (h, w) in SIZES {
        let dims = [2, 3, h, w];
        let x = values(dims.iter().product(), 1);
        let out_dims = Resample::AvgPool2.output_dims(dims);
        assert_eq!(out_dims, [2, 3, h / 2, w / 2]);
        let g = values(out_dims.iter().product(), 2);
        let what = format!("{h}x{w}");
        assert_close(
            &avg_pool2(&x, dims),
            &naive::avg_pool2(&widen(&x), dims),
            1e-6,
            &what,
        );
        assert_close(
            &avg_pool2_backward(&g, dims),
            &naive::avg_pool2_backward(&widen(&g), dims),
            1e-6,
            &format!("{what} gradient"),
        );
        assert_eq!(Resample::AvgPool2.forward(&x, dims), avg_pool2(&x, dims));
        assert_eq!(
            Resample::AvgPool2.backward(&g, dims),
            avg_pool2_backward(&g, dims)
        );
    }
}

#[test]
fn overlap_add_equals_the_transposed_convolution_with_its_gradient() {
    for (h, w) in SIZES {
        let c = 2;
        let dims = [2, 9 * c, h, w];
        let x = values(dims.iter().product(), 3);
        let out_dims = Resample::OverlapAdd3x3S2.output_dims(dims);
        assert_eq!(out_dims, [2, c, 2 * h, 2 * w]);
        let g = values(out_dims.iter().product(), 4);
        let what = format!("{h}x{w}");
        assert_close(
            &overlap_add_3x3s2(&x, dims),
            &naive::overlap_add_3x3s2(&widen(&x), dims),
            1e-6,
            &what,
        );
        assert_close(
            &overlap_add_3x3s2_backward(&g, dims),
            &naive::overlap_add_3x3s2_backward(&widen(&g), dims),
            1e-6,
            &format!("{what} gradient"),
        );
        assert_eq!(
            Resample::OverlapAdd3x3S2.forward(&x, dims),
            overlap_add_3x3s2(&x, dims)
        );
        assert_eq!(
            Resample::OverlapAdd3x3S2.backward(&g, dims),
            overlap_add_3x3s2_backward(&g, dims)
        );
    }
}

/// What `Resample::OverlapAdd3x3S2` documents: a 1x1 convolution with the weights
/// `W[i, o, kh, kw]` permuted to `[(kh, kw, o), i]`, then the overlap-add, is the transposed
/// convolution with kernel 3, stride 2, padding 1 and output padding 1.
#[test]
fn permuted_1x1_convolution_then_overlap_add_is_the_3x3_stride_2_transposed_convolution() {
    let (cin, cout) = (3, 2);
    for (h, w) in SIZES {
        let dims = [2, cin, h, w];
        let x = widen(&values(dims.iter().product(), 5));
        let weight = widen(&values(cin * cout * 9, 6));
        let mut permuted = vec![0.0; 9 * cout * cin];
        for i in 0..cin {
            for o in 0..cout {
                for tap in 0..9 {
                    permuted[(tap * cout + o) * cin + i] = weight[(i * cout + o) * 9 + tap];
                }
            }
        }
        let taps = naive::conv2d_same(&x, dims, &permuted, 9 * cout);
        let taps: Vec<f32> = taps.iter().map(|&v| v as f32).collect();
        let fast = overlap_add_3x3s2(&taps, [2, 9 * cout, h, w]);
        let exact = naive::conv_transpose2d(&x, dims, &weight, cout, [2, 1, 1]);
        assert_close(&fast, &exact, 1e-5, &format!("{h}x{w}"));
    }
}

/// Both loops are linear: central differences of the naive forward in f64 are exact up to
/// rounding, and the fast backward must match them at every input element.
#[test]
fn backward_loops_match_finite_differences() {
    for kind in [Resample::AvgPool2, Resample::OverlapAdd3x3S2] {
        for (h, w) in [(3, 4), (2, 1)] {
            let channels = if kind == Resample::AvgPool2 { 2 } else { 9 };
            let dims = [2, channels, h, w];
            let x = widen(&values(dims.iter().product(), 7));
            let out_dims = kind.output_dims(dims);
            let g = values(out_dims.iter().product(), 8);
            let g64 = widen(&g);
            let forward = |x: &[f64]| match kind {
                Resample::AvgPool2 => naive::avg_pool2(x, dims),
                Resample::OverlapAdd3x3S2 => naive::overlap_add_3x3s2(x, dims),
            };
            let loss = |x: &[f64]| -> f64 { forward(x).iter().zip(&g64).map(|(a, b)| a * b).sum() };
            let fast = kind.backward(&g, dims);
            let eps = 1e-3;
            for i in 0..x.len() {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += eps;
                down[i] -= eps;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * eps);
                assert!(
                    (fast[i] as f64 - numeric).abs() < 1e-6,
                    "{kind:?} {h}x{w} [{i}]: {} vs {numeric}",
                    fast[i]
                );
            }
        }
    }
}
