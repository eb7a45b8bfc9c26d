//! The paper's published cost figures, as printed (OCR artefacts resolved by hand: Table 1's
//! "-0:29-", "-0199-" and "-T8I-" read 0.29, 0.99 and 1.81, the only values consistent with
//! the quadratic growth in `g` of the neighbouring rows).

/// Table 1: `(n, g)`, GFLOPS of LD (= N = E, same budget), GFLOPS of LD2.
pub const TABLE1: [((usize, usize), f64, f64); 9] = [
    ((12, 16), 0.29, 0.46),
    ((12, 24), 0.66, 1.03),
    ((12, 32), 1.17, 1.82),
    ((32, 16), 0.99, 1.41),
    ((32, 24), 2.23, 3.16),
    ((32, 32), 3.96, 5.92),
    ((52, 16), 1.81, 2.39),
    ((52, 24), 4.07, 5.35),
    ((52, 32), 7.23, 9.51),
];

/// Table 2: `(n, g)`, GFLOPS of N and E (half budgets), N+LD, and D (DenseNet without block
/// compression).
pub const TABLE2: [((usize, usize), f64, f64, f64); 7] = [
    ((12, 16), 0.49, 0.58, 0.86),
    ((12, 24), 1.09, 1.29, 1.92),
    ((12, 32), 1.93, 2.29, 3.41),
    ((32, 12), 1.12, 1.31, 2.44),
    ((32, 24), 4.45, 5.21, 9.74),
    ((32, 32), 7.91, 9.25, 17.30),
    ((52, 16), 4.34, 4.98, 10.38),
];

/// Table 3: network, parameters in millions, GFLOPS at 224x224 where legible.
pub const TABLE3: [(&str, f64, Option<f64>); 3] = [
    ("fc-densenet-67", 3.5, Some(40.9)),
    ("fc-densenet-103", 9.4, None),
    ("fc-ld-103", 4.7, Some(42.0)),
];

/// Fig. 5b is a bar plot without numbers; the text states its one quantitative claim.
pub const FIG5B_CLAIM: &str =
    "the final two blocks cost about half of the total FLOPs (Sec. 4.2, App. C.5)";

/// Fig. 5a, read off the plot: mean inputs per layer of `lglg_conn(0, L)` lie between 3 and 4
/// for L in (10, 2000), and the 4-input augmentation adds 1 to 1.5.
pub const FIG5A_PLAIN_RANGE: (f64, f64) = (3.0, 4.0);
pub const FIG5A_AUGMENTATION_GAIN: (f64, f64) = (1.0, 1.5);
