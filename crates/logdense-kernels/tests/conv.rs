//! The fused BN-ReLU-conv kernels against the naive definition (concatenate, batch norm, ReLU,
//! direct convolution, chain-rule gradients in f64), and against finite differences.

mod common;

use common::{assert_close, values, widen};
use logdense_kernels::bf16::{bf16_to_f32, round_to_bf16};
use logdense_kernels::conv::{
    backward_with, batch_stats, f32_kernels, forward, forward_new, forward_with, with_direct_f32,
    with_gemm_f32, with_winograd_f32, Affine, Geometry, Precision,
};
use logdense_kernels::naive::{self, Layer, Stats};

/// Geometry, inputs, gamma, beta and weight of a test case.
struct Case {
    geo: Geometry,
    inputs: Vec<Vec<f32>>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    weight: Vec<f32>,
    /// Running statistics, for the inference-mode cases.
    run_mean: Vec<f32>,
    run_var: Vec<f32>,
    /// The fast path's precision (f32 unless a test says).
    precision: Precision,
}

impl Case {
    fn new(
        batch: usize,
        channels: &[usize],
        out: usize,
        kernel: usize,
        h: usize,
        w: usize,
    ) -> Self {
        let geo = Geometry {
            batch,
            height: h,
            width: w,
            channels: channels.to_vec(),
            out_channels: out,
            kernel,
        };
        let inputs = channels
            .iter()
            .enumerate()
            .map(|(j, &c)| values(batch * c * h * w, 10 + j as u64))
            .collect();
        let c = geo.in_channels();
        Case {
            inputs,
            gamma: values(c, 3).iter().map(|v| 1.0 + 0.5 * v).collect(),
            beta: values(c, 4).iter().map(|v| 0.3 * v).collect(),
            weight: values(out * c * kernel * kernel, 5),
            run_mean: values(c, 7).iter().map(|v| 0.2 * v).collect(),
            run_var: values(c, 8).iter().map(|v| 1.0 + 0.5 * v).collect(),
            geo,
            precision: Precision::F32,
        }
    }

    fn refs(&self) -> Vec<&[f32]> {
        self.inputs.iter().map(|v| v.as_slice()).collect()
    }

    /// The fast path's affine: batch statistics (training) or the running ones.
    fn affine(&self, batch_mode: bool) -> Affine {
        let (mean, var) = if batch_mode {
            batch_stats(&self.geo, &self.refs())
        } else {
            (self.run_mean.clone(), self.run_var.clone())
        };
        Affine::new(&self.gamma, &self.beta, &mean, &var, EPS)
    }

    /// The case's precision on this thread's f32 kernels (the `with_*_f32` hooks).
    fn kernels(&self) -> logdense_kernels::conv::Kernels {
        logdense_kernels::conv::Kernels {
            precision: self.precision,
            ..logdense_kernels::conv::Kernels::ambient()
        }
    }

    fn fast_forward(&self, batch_mode: bool) -> Vec<f32> {
        let geo = &self.geo;
        let mut out = vec![0f32; geo.batch * geo.out_channels * geo.height * geo.width];
        forward_with(
            self.kernels(),
            geo,
            &self.refs(),
            &self.affine(batch_mode),
            &self.weight,
            &mut out,
        );
        out
    }

    fn fast_backward(&self, batch_mode: bool, out_grad: &[f32]) -> logdense_kernels::Gradients {
        let affine = self.affine(batch_mode);
        backward_with(
            self.kernels(),
            &self.geo,
            &self.refs(),
            &self.gamma,
            &affine,
            batch_mode,
            &self.weight,
            out_grad,
        )
    }

    fn out_len(&self) -> usize {
        let geo = &self.geo;
        geo.batch * geo.out_channels * geo.height * geo.width
    }
}

const EPS: f64 = 1e-5;

/// The case's values widened to f64, for the naive path.
struct Wide {
    inputs: Vec<Vec<f64>>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    weight: Vec<f64>,
    run_mean: Vec<f64>,
    run_var: Vec<f64>,
}

impl Wide {
    fn of(case: &Case) -> Self {
        Wide {
            inputs: case.inputs.iter().map(|v| widen(v)).collect(),
            gamma: widen(&case.gamma),
            beta: widen(&case.beta),
            weight: widen(&case.weight),
            run_mean: widen(&case.run_mean),
            run_var: widen(&case.run_var),
        }
    }

    fn refs(&self) -> Vec<&[f64]> {
        self.inputs.iter().map(|v| v.as_slice()).collect()
    }

    fn layer(&self, batch_mode: bool) -> Layer<'_> {
        Layer {
            gamma: &self.gamma,
            beta: &self.beta,
            stats: if batch_mode {
                Stats::Batch
            } else {
                Stats::Given {
                    mean: &self.run_mean,
                    var: &self.run_var,
                }
            },
            epsilon: EPS,
            weight: &self.weight,
        }
    }
}

/// Shapes that reach every tiling: whole small images stacked into one tile or split one per
/// thread (23 x 17, 5 x 4, 1 x 1), images split into row bands with a short last band (40 x 29),
/// 1x1, 3x3, 5x5 and 7x7 kernels, one input or several; channels and filters past one
/// register block of the direct kernels (4 filters by 96 positions forward, 16 filters by 16,
/// 8 or 4 channels in the weight gradient) with short last blocks. The 3x3 cases of even
/// height and width can take the Winograd products: stacked small images
/// (12 x 14, 2 x 2), row bands (30 x 36, bands of 14 rows and a last one of 2), a row of more
/// tiles than one vector (40 wide: 16 tiles, then 4).
fn cases() -> Vec<Case> {
    vec![
        Case::new(2, &[16, 7], 20, 3, 12, 14),
        Case::new(1, &[5, 4], 6, 3, 30, 36),
        Case::new(1, &[3, 2], 5, 3, 4, 40),
        Case::new(2, &[3], 5, 3, 2, 2),
        Case::new(2, &[16, 7], 20, 3, 11, 13),
        Case::new(2, &[9, 8], 17, 1, 6, 5),
        Case::new(1, &[5, 6], 6, 7, 9, 8),
        Case::new(3, &[2, 3, 1], 4, 1, 23, 17),
        Case::new(3, &[2, 3, 1], 4, 3, 23, 17),
        Case::new(3, &[2, 3, 1], 4, 3, 40, 29),
        Case::new(2, &[2, 3, 1], 4, 1, 40, 29),
        Case::new(2, &[3], 5, 3, 5, 4),
        Case::new(4, &[1, 2], 3, 3, 1, 1),
        Case::new(1, &[2, 2], 3, 5, 9, 6),
        Case::new(2, &[1, 1, 1, 1, 1], 2, 3, 2, 7),
    ]
}

fn describe(case: &Case, batch_mode: bool) -> String {
    let g = &case.geo;
    format!(
        "batch {} channels {:?} -> {} kernel {} {}x{} batch stats {batch_mode}",
        g.batch, g.channels, g.out_channels, g.kernel, g.height, g.width
    )
}

#[test]
fn batch_stats_equal_the_naive_mean_and_biased_variance() {
    for case in cases() {
        let (mean, var) = batch_stats(&case.geo, &case.refs());
        let wide = Wide::of(&case);
        let g = &case.geo;
        let x = naive::concat(&wide.refs(), &g.channels, g.batch, g.height * g.width);
        let (m, v) = naive::batch_stats(&x, [g.batch, g.in_channels(), g.height, g.width]);
        assert_close(&mean, &m, 1e-6, "mean");
        assert_close(&var, &v, 1e-6, "variance");
    }
}

#[test]
fn forward_equals_the_naive_definition() {
    check_forward();
}

/// Where the CPU runs the direct kernels, the f32 path of other CPUs (`gemm`'s kernels) is
/// checked here; elsewhere this repeats the two tests above.
#[test]
fn the_gemm_path_equals_the_naive_definition_and_chain_rule() {
    with_gemm_f32(|| {
        check_forward();
        check_gradients();
    });
}

/// The opt-in Winograd products (where the CPU runs them; elsewhere this repeats the tests
/// above on the `gemm` kernels they fall back to, and says so) on every case: the even 3x3
/// ones take them, the rest the direct kernels.
#[test]
fn the_winograd_path_equals_the_naive_definition_and_chain_rule() {
    let kernels = with_winograd_f32(|| {
        check_forward();
        check_gradients();
        f32_kernels()
    });
    if kernels != "winograd" {
        assert_eq!(
            kernels, "gemm",
            "asking for Winograd ran neither it nor gemm"
        );
        println!(
            "skipped: the Winograd products (no AVX-512 on this CPU); the gemm path they fall \
             back to was checked instead"
        );
    }
}

/// On an even 3x3 case the Winograd products really run where the CPU has them (AVX-512): the
/// output and the input gradients differ in their last bits from the direct kernels' (the sums
/// are formed differently), while both match the naive definition. Without AVX-512, asking for
/// them must fall back to `gemm`'s kernels, which must match the naive definition; the
/// comparison with the direct kernels, which do not run there either, is reported as skipped.
#[test]
fn the_winograd_products_run_on_even_3x3_maps() {
    let case = Case::new(2, &[16, 7], 20, 3, 12, 14);
    let probe = values(case.out_len(), 98);
    let wide = Wide::of(&case);
    let layer = wide.layer(true);
    let expected = naive::bn_relu_conv(&case.geo, &wide.refs(), &layer);
    let exact = naive::bn_relu_conv_backward(&case.geo, &wide.refs(), &layer, &widen(&probe));
    let run = || {
        (
            f32_kernels(),
            case.fast_forward(true),
            case.fast_backward(true, &probe).inputs,
        )
    };
    let check = |(kernels, forward, inputs): &(&str, Vec<f32>, Vec<Vec<f32>>)| {
        assert_close(forward, &expected, 1e-5, &format!("{kernels}: forward"));
        assert_eq!(inputs.len(), exact.inputs.len());
        for (j, (a, b)) in inputs.iter().zip(&exact.inputs).enumerate() {
            assert_close(a, b, 1e-4, &format!("{kernels}: input {j} gradient"));
        }
    };
    let winograd = with_winograd_f32(run);
    check(&winograd);
    if winograd.0 == "winograd" {
        let direct = with_direct_f32(run);
        assert_eq!(direct.0, "direct");
        check(&direct);
        assert_ne!(winograd.1, direct.1, "the forward took the direct kernels");
        assert_ne!(
            winograd.2, direct.2,
            "the input gradient took the direct kernels"
        );
    } else {
        assert_eq!(
            winograd.0, "gemm",
            "asking for Winograd ran neither it nor gemm"
        );
        println!(
            "skipped: the Winograd products against the direct kernels (no AVX-512 on this \
             CPU); the gemm path they fall back to matches the naive definition"
        );
    }
}

fn check_forward() {
    for case in cases() {
        let wide = Wide::of(&case);
        for batch_mode in [true, false] {
            let expected = naive::bn_relu_conv(&case.geo, &wide.refs(), &wide.layer(batch_mode));
            // Into a new, unwritten buffer (in f32): every element must be written.
            let new = forward_new(
                logdense_kernels::conv::Kernels::ambient(),
                &case.geo,
                &case.refs(),
                &case.affine(batch_mode),
                &case.weight,
            );
            assert_close(&new, &expected, 1e-5, &describe(&case, batch_mode));
            assert_close(
                &case.fast_forward(batch_mode),
                &expected,
                1e-5,
                &describe(&case, batch_mode),
            );
        }
    }
}

#[test]
fn every_gradient_equals_the_naive_chain_rule() {
    check_gradients();
}

fn check_gradients() {
    for case in cases() {
        let wide = Wide::of(&case);
        let probe = values(case.out_len(), 99);
        for batch_mode in [true, false] {
            let what = describe(&case, batch_mode);
            let fast = case.fast_backward(batch_mode, &probe);
            let exact = naive::bn_relu_conv_backward(
                &case.geo,
                &wide.refs(),
                &wide.layer(batch_mode),
                &widen(&probe),
            );
            for (j, (a, b)) in fast.inputs.iter().zip(&exact.inputs).enumerate() {
                assert_close(a, b, 1e-4, &format!("{what}: input {j} gradient"));
            }
            assert_close(&fast.gamma, &exact.gamma, 1e-4, &format!("{what}: gamma"));
            assert_close(&fast.beta, &exact.beta, 1e-4, &format!("{what}: beta"));
            assert_close(
                &fast.weight,
                &exact.weight,
                1e-4,
                &format!("{what}: weight"),
            );
        }
    }
}

/// Central differences of `loss = sum(naive_forward * probe)` in f64, against both the fast
/// backward and the naive one, at a sample of inputs, every gamma and beta, and a sample of
/// weights.
#[test]
fn backward_matches_finite_differences_of_the_naive_forward() {
    for case in [
        Case::new(2, &[2, 1], 3, 3, 4, 3),
        Case::new(2, &[2, 1], 3, 1, 4, 3),
        Case::new(3, &[1, 2], 2, 3, 30, 20),
    ] {
        let probe = values(case.out_len(), 99);
        let probe64 = widen(&probe);
        let base = Wide::of(&case);
        for batch_mode in [true, false] {
            let what = describe(&case, batch_mode);
            let fast = case.fast_backward(batch_mode, &probe);
            let exact = naive::bn_relu_conv_backward(
                &case.geo,
                &base.refs(),
                &base.layer(batch_mode),
                &probe64,
            );
            let loss = |p: &Wide| -> f64 {
                naive::bn_relu_conv(&case.geo, &p.refs(), &p.layer(batch_mode))
                    .iter()
                    .zip(&probe64)
                    .map(|(a, b)| a * b)
                    .sum()
            };
            let h = 1e-6;
            let numeric = |nudge: &dyn Fn(&mut Wide, f64)| {
                let shifted = |d: f64| {
                    let mut p = Wide::of(&case);
                    nudge(&mut p, d);
                    loss(&p)
                };
                (shifted(h) - shifted(-h)) / (2.0 * h)
            };
            let check = |fast: f32, exact: f64, numeric: f64, name: String| {
                let tol = 1e-6 * (1.0 + numeric.abs());
                assert!(
                    (exact - numeric).abs() < tol,
                    "{what}: naive {name} {exact} vs finite difference {numeric}"
                );
                let tol = 1e-4 * (1.0 + numeric.abs());
                assert!(
                    (fast as f64 - numeric).abs() < tol,
                    "{what}: fast {name} {fast} vs finite difference {numeric}"
                );
            };
            for (j, input) in case.inputs.iter().enumerate() {
                let step = (input.len() / 7).max(1);
                for i in (0..input.len()).step_by(step) {
                    let n = numeric(&|p, d| p.inputs[j][i] += d);
                    check(
                        fast.inputs[j][i],
                        exact.inputs[j][i],
                        n,
                        format!("input {j}[{i}]"),
                    );
                }
            }
            for c in 0..case.gamma.len() {
                let n = numeric(&|p, d| p.gamma[c] += d);
                check(fast.gamma[c], exact.gamma[c], n, format!("gamma[{c}]"));
                let n = numeric(&|p, d| p.beta[c] += d);
                check(fast.beta[c], exact.beta[c], n, format!("beta[{c}]"));
            }
            let step = (case.weight.len() / 9).max(1);
            for i in (0..case.weight.len()).step_by(step) {
                let n = numeric(&|p, d| p.weight[i] += d);
                check(fast.weight[i], exact.weight[i], n, format!("weight[{i}]"));
            }
        }
    }
}

/// Central differences of the fast forward itself (f32), against the fast backward, including
/// an input in the second row band of a 30 x 20 image.
#[test]
fn backward_matches_finite_differences_of_the_fast_forward() {
    for (kernel, batch_mode, h, w) in [
        (3, true, 6, 5),
        (1, true, 6, 5),
        (3, false, 6, 5),
        (3, true, 30, 20),
    ] {
        let case = Case::new(3, &[2, 3, 1], 4, kernel, h, w);
        let probe = values(case.out_len(), 99);
        let grads = case.fast_backward(batch_mode, &probe);
        let loss = |c: &Case| -> f64 {
            c.fast_forward(batch_mode)
                .iter()
                .zip(&probe)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let eps = 1e-3f32;
        let numeric = |nudge: &dyn Fn(&mut Case, f32)| -> f64 {
            let shifted = |d: f32| {
                let mut c = Case::new(3, &[2, 3, 1], 4, kernel, h, w);
                nudge(&mut c, d);
                loss(&c)
            };
            (shifted(eps) - shifted(-eps)) / (2.0 * eps as f64)
        };
        let check = |analytic: f32, numeric: f64, what: &str| {
            let tol = 2e-2 * (1.0 + numeric.abs());
            assert!(
                (analytic as f64 - numeric).abs() < tol,
                "kernel {kernel} batch {batch_mode} {what}: {analytic} vs {numeric}"
            );
        };
        // (1, 3524) lies in the second row band of the 30 x 20 case.
        for (j, idx) in [(0usize, 7usize), (1, 40), (2, 61), (1, 3), (1, 3524)] {
            let idx = idx % case.inputs[j].len();
            let n = numeric(&|c, d| c.inputs[j][idx] += d);
            check(grads.inputs[j][idx], n, &format!("input {j}[{idx}]"));
        }
        for c in [0usize, 4] {
            check(grads.gamma[c], numeric(&|p, d| p.gamma[c] += d), "gamma");
            check(grads.beta[c], numeric(&|p, d| p.beta[c] += d), "beta");
        }
        for i in [0usize, 13, case.weight.len() - 1] {
            check(grads.weight[i], numeric(&|p, d| p.weight[i] += d), "weight");
        }
    }
}

#[test]
#[should_panic(expected = "input shape")]
fn a_short_input_is_refused() {
    let case = Case::new(2, &[2, 1], 3, 3, 4, 3);
    let mut refs = case.refs();
    refs[1] = &refs[1][1..];
    let mut out = vec![0f32; case.out_len()];
    forward(
        &case.geo,
        &refs,
        &case.affine(false),
        &case.weight,
        &mut out,
    );
}

/// Shapes for the bf16 path: besides [`cases`], channel counts past one tile of 16 pairs,
/// outputs past one tile of 16 rows, several row bands and a 1x1 bottleneck's 48 outputs.
fn bf16_cases() -> Vec<Case> {
    let mut cases = cases();
    cases.extend([
        Case::new(2, &[20, 17, 9], 20, 3, 12, 11),
        Case::new(1, &[16, 18], 16, 3, 40, 29),
        Case::new(3, &[33, 7], 48, 1, 8, 8),
        Case::new(2, &[40], 12, 3, 7, 9),
    ]);
    for case in &mut cases {
        case.precision = Precision::Bf16;
    }
    cases
}

fn round(x: f32) -> f64 {
    f64::from(bf16_to_f32(round_to_bf16(x)))
}

/// The bf16 forward is the convolution of the bf16-rounded activations with the bf16-rounded
/// weights, summed in f32: against that product computed in f64 it differs only by f32
/// rounding. (This checks every tap's offset, every padding pair and row of the layouts.)
#[test]
fn bf16_forward_is_the_exact_product_of_the_rounded_operands() {
    for case in bf16_cases() {
        let g = &case.geo;
        let (hw, c) = (g.height * g.width, g.in_channels());
        for batch_mode in [true, false] {
            let affine = case.affine(batch_mode);
            let x = naive::concat(&Wide::of(&case).refs(), &g.channels, g.batch, hw);
            let activated: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = (i / hw) % c;
                    round((affine.scale[ch] * v as f32 + affine.shift[ch]).max(0.0))
                })
                .collect();
            let weight: Vec<f64> = case.weight.iter().map(|&w| round(w)).collect();
            let expected = naive::conv2d_same(
                &activated,
                [g.batch, c, g.height, g.width],
                &weight,
                g.out_channels,
            );
            assert_close(
                &case.fast_forward(batch_mode),
                &expected,
                1e-5,
                &format!("bf16 {}", describe(&case, batch_mode)),
            );
        }
    }
}

/// The bf16 layer against the exact f64 layer (whose gradients the finite-difference tests
/// check): forward and every gradient within 2 % of the largest value. Operands rounded to 8
/// significant bits carry a relative error of 2^-9 each; sums of a few hundred products of
/// either sign keep the error near 1 % of the largest output in the worst case here.
#[test]
fn bf16_forward_and_gradients_are_within_two_percent_of_the_exact_ones() {
    const TOL: f64 = 2e-2;
    for case in bf16_cases() {
        let wide = Wide::of(&case);
        let probe = values(case.out_len(), 99);
        for batch_mode in [true, false] {
            let what = format!("bf16 {}", describe(&case, batch_mode));
            let layer = wide.layer(batch_mode);
            let expected = naive::bn_relu_conv(&case.geo, &wide.refs(), &layer);
            assert_close(&case.fast_forward(batch_mode), &expected, TOL, &what);
            let fast = case.fast_backward(batch_mode, &probe);
            let exact =
                naive::bn_relu_conv_backward(&case.geo, &wide.refs(), &layer, &widen(&probe));
            for (j, (a, b)) in fast.inputs.iter().zip(&exact.inputs).enumerate() {
                assert_close(a, b, TOL, &format!("{what}: input {j} gradient"));
            }
            assert_close(&fast.gamma, &exact.gamma, TOL, &format!("{what}: gamma"));
            assert_close(&fast.beta, &exact.beta, TOL, &format!("{what}: beta"));
            assert_close(&fast.weight, &exact.weight, TOL, &format!("{what}: weight"));
        }
    }
}
