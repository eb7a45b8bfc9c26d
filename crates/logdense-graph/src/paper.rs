//! The paper's published cost figures and error rates, as printed (OCR artefacts resolved by hand: Table 1's
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
/// Fig. 5a: range of mean inputs per layer that the 4-input augmentation adds to `lglg_conn`.
pub const FIG5A_AUGMENTATION_GAIN: (f64, f64) = (1.0, 1.5);

/// A row of an error table: `(n, g)`, then per data set the error rates (%) of four columns.
pub type ErrorRow<const DATASETS: usize> = ((usize, usize), [[f64; 4]; DATASETS]);

/// Table 1's test error rates (%): `(n, g)`, then per data set (CIFAR10, CIFAR100, SVHN) the
/// columns LD, N, E, LD2.
pub const TABLE1_ERRORS: [ErrorRow<3>; 9] = [
    (
        (12, 16),
        [
            [7.23, 7.59, 7.45, 5.52],
            [29.14, 30.59, 30.72, 25.10],
            [2.03, 2.11, 2.27, 1.77],
        ],
    ),
    (
        (12, 24),
        [
            [5.98, 6.46, 6.56, 4.88],
            [26.36, 26.96, 27.80, 22.50],
            [1.94, 2.10, 2.05, 1.63],
        ],
    ),
    (
        (12, 32),
        [
            [5.48, 6.00, 6.15, 4.63],
            [24.21, 24.70, 25.57, 21.67],
            [1.85, 1.92, 1.90, 1.56],
        ],
    ),
    (
        (32, 16),
        [
            [5.96, 6.45, 6.21, 4.70],
            [25.32, 27.48, 26.81, 22.15],
            [1.97, 1.94, 1.96, 1.68],
        ],
    ),
    (
        (32, 24),
        [
            [5.03, 5.74, 5.43, 4.21],
            [22.73, 25.08, 24.80, 19.58],
            [1.77, 1.82, 1.95, 1.62],
        ],
    ),
    (
        (32, 32),
        [
            [4.81, 5.65, 4.94, 4.16],
            [21.77, 23.79, 23.87, 19.54],
            [1.76, 1.82, 1.95, 1.61],
        ],
    ),
    (
        (52, 16),
        [
            [5.13, 6.80, 6.09, 4.20],
            [23.45, 27.99, 26.58, 21.73],
            [1.66, 1.98, 1.85, 1.67],
        ],
    ),
    (
        (52, 24),
        [
            [4.34, 5.83, 5.03, 4.04],
            [20.99, 26.07, 24.19, 20.13],
            [1.64, 1.90, 1.80, 1.69],
        ],
    ),
    (
        (52, 32),
        [
            [4.56, 6.10, 4.98, 4.10],
            [20.58, 24.79, 23.10, 19.45],
            [1.72, 1.89, 1.78, 1.60],
        ],
    ),
];

/// The data sets of [`TABLE1_ERRORS`], in its order.
pub const TABLE1_DATASETS: [&str; 3] = ["cifar10", "cifar100", "svhn"];
/// The columns of [`TABLE1_ERRORS`], in its order.
pub const TABLE1_COLUMNS: [&str; 4] = ["LD", "N", "E", "LD2"];

/// Table 2's test error rates (%): `(n, g)`, then per data set (CIFAR10, CIFAR100) the
/// columns N, E, N+LD, D.
pub const TABLE2_ERRORS: [ErrorRow<2>; 7] = [
    (
        (12, 16),
        [[9.45, 6.42, 5.77, 4.95], [35.97, 29.61, 25.49, 23.54]],
    ),
    (
        (12, 24),
        [[6.49, 5.18, 5.12, 4.29], [29.11, 24.61, 22.87, 21.73]],
    ),
    (
        (12, 32),
        [[5.01, 4.84, 4.70, 4.05], [25.04, 23.70, 21.96, 20.56]],
    ),
    (
        (32, 12),
        [[7.16, 4.90, 4.80, 4.00], [33.64, 24.03, 22.70, 20.35]],
    ),
    (
        (32, 24),
        [[4.69, 4.06, 4.36, 4.00], [24.58, 21.00, 21.27, 19.54]],
    ),
    (
        (32, 32),
        [[4.30, 4.24, 4.03, 3.64], [22.84, 21.23, 21.81, 19.41]],
    ),
    (
        (52, 16),
        [[5.68, 4.72, 4.34, 3.59], [29.38, 21.73, 20.68, 19.83]],
    ),
];

/// The data sets of [`TABLE2_ERRORS`], in its order.
pub const TABLE2_DATASETS: [&str; 2] = ["cifar10", "cifar100"];
/// The columns of [`TABLE2_ERRORS`], in its order.
pub const TABLE2_COLUMNS: [&str; 4] = ["N", "E", "N+LD", "D"];

/// One error-table row's errors: per data set, four columns.
type PerDataSet = &'static [[f64; 4]];

/// Table 1 or 2's errors, with its data sets and columns in order.
struct ErrorTable {
    /// `(n, g)` and the row's errors, one array of four columns per data set.
    rows: Vec<((usize, usize), PerDataSet)>,
    datasets: &'static [&'static str],
    columns: &'static [&'static str],
}

fn error_table(table: u8) -> Option<ErrorTable> {
    match table {
        1 => Some(ErrorTable {
            rows: TABLE1_ERRORS.iter().map(|(ng, e)| (*ng, &e[..])).collect(),
            datasets: &TABLE1_DATASETS,
            columns: &TABLE1_COLUMNS,
        }),
        2 => Some(ErrorTable {
            rows: TABLE2_ERRORS.iter().map(|(ng, e)| (*ng, &e[..])).collect(),
            datasets: &TABLE2_DATASETS,
            columns: &TABLE2_COLUMNS,
        }),
        _ => None,
    }
}

/// The paper's error rate (%) for a cell of Table 1 or 2 (`table` 1 or 2), where it prints one.
pub fn table_error(table: u8, dataset: &str, label: &str, n: usize, g: usize) -> Option<f64> {
    let t = error_table(table)?;
    let d = t.datasets.iter().position(|&x| x == dataset)?;
    let c = t.columns.iter().position(|&x| x == label)?;
    t.rows
        .iter()
        .find(|(ng, _)| *ng == (n, g))
        .map(|(_, e)| e[d][c])
}

/// Every `(error of a, error of b)` pair of Table 1 or 2, over all its (n, g, data set) cells.
pub fn table_error_pairs(table: u8, a: &str, b: &str) -> Option<Vec<(f64, f64)>> {
    let t = error_table(table)?;
    let ia = t.columns.iter().position(|&x| x == a)?;
    let ib = t.columns.iter().position(|&x| x == b)?;
    Some(
        t.rows
            .iter()
            .flat_map(|(_, sets)| sets.iter().map(move |e| (e[ia], e[ib])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transcription of Table 1's errors against the text's own summary of them (Sec. 4.1):
    /// "the average relative increase of top-1 error rate using NEAREST and EVENLY-SPACED from
    /// using Log-DenseNet is 12.2% and 8.5%" (over all 27 (n, g, data set) cells).
    #[test]
    fn table1_errors_reproduce_the_texts_average_relative_increases() {
        let increase = |column: usize| {
            let ratios: Vec<f64> = TABLE1_ERRORS
                .iter()
                .flat_map(|(_, sets)| sets.iter().map(move |e| (e[column] - e[0]) / e[0]))
                .collect();
            100.0 * ratios.iter().sum::<f64>() / ratios.len() as f64
        };
        assert!((increase(1) - 12.2).abs() < 0.05, "N: {}", increase(1));
        assert!((increase(2) - 8.5).abs() < 0.06, "E: {}", increase(2));
    }

    #[test]
    fn table_error_looks_cells_up_by_data_set_and_column() {
        assert_eq!(table_error(1, "cifar100", "E", 52, 32), Some(23.10));
        assert_eq!(table_error(1, "svhn", "LD2", 12, 16), Some(1.77));
        assert_eq!(table_error(2, "cifar10", "N+LD", 32, 12), Some(4.80));
        assert_eq!(table_error(2, "svhn", "N", 12, 16), None);
        assert_eq!(table_error(1, "fashion-mnist", "LD", 12, 16), None);
        assert_eq!(table_error(1, "cifar10", "LD", 24, 4), None);
    }
}
