//! The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV:
//! Using Iso-Value Curves for Customer Base Analysis", JMR 42(4); Fader & Hardie, "The
//! Gamma-Gamma Model of Monetary Value", 2013).
//!
//! A customer's transaction values are Gamma(p, ν) with ν ~ Gamma(q, v) across customers. It
//! is fitted on customers with `x > 0` repeat transactions of mean value `m > 0`:
//! - `ln L = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln v + (px−1) ln m + px ln x − (px+q) ln(xm+v)`
//!   (the density of the mean `m`);
//! - `E[Z | p, q, v, x, m] = p (v + x m) / (p x + q − 1)`, a weighted average of the population
//!   mean `p v / (q − 1)` (the value for `x = 0`) and the customer's own mean; defined for
//!   `q > 1` (otherwise the population mean is infinite).

use std::collections::HashMap;

use rayon::prelude::*;

use super::bgnbd::{Fit, FitError, SUBSAMPLE, WALL, finish, polish};
use super::optim::{NelderMead, nelder_mead};
use super::special::ln_gamma;

/// Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

/// Fewest customers with x > 0 and a positive mean a fit is attempted on: one per parameter.
pub const MIN_CUSTOMERS: usize = 3;

impl GammaGamma {
    pub const NAMES: &'static [&'static str] = &["p", "q", "v"];

    pub fn from_slice(s: &[f64]) -> GammaGamma {
        GammaGamma {
            p: s[0],
            q: s[1],
            v: s[2],
        }
    }

    /// The log-likelihood of a customer with `x > 0` transactions of mean value `m > 0`.
    pub fn ln_likelihood(&self, x: u32, m: f64) -> f64 {
        let (p, q, v) = (self.p, self.q, self.v);
        let (xf, px) = (x as f64, p * x as f64);
        ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q) + q * v.ln() + (px - 1.0) * m.ln() + px * xf.ln()
            - (px + q) * (xf * m + v).ln()
    }

    /// The sum of [`GammaGamma::ln_likelihood`] over `(x, m)` pairs.
    pub fn log_likelihood(&self, data: &[(u32, f64)]) -> f64 {
        Compressed::new(data).log_likelihood(self)
    }

    /// Expected mean transaction value of a customer with `x` transactions of mean `m`
    /// (`x = 0`: the population mean). `None` when `q <= 1`.
    pub fn expected_average_value(&self, x: u32, m: f64) -> Option<f64> {
        let (p, q, v) = (self.p, self.q, self.v);
        if q <= 1.0 {
            return None;
        }
        let xf = x as f64;
        let m = if x == 0 { 0.0 } else { m };
        Some(p * (v + xf * m) / (p * xf + q - 1.0))
    }

    /// Fits the model by maximum likelihood on `(x, m)` pairs with `x > 0` and `m > 0` (others
    /// are ignored): Nelder–Mead on the log-parameters from two starts (on an evenly spaced
    /// subsample when there are more than [`SUBSAMPLE`] pairs), then Newton steps on all of
    /// them; standard errors from the finite-difference Hessian.
    pub fn fit(data: &[(u32, f64)]) -> Result<Fit<GammaGamma>, FitError> {
        let used: Vec<(u32, f64)> = data
            .iter()
            .copied()
            .filter(|&(x, m)| x > 0 && m > 0.0 && m.is_finite())
            .collect();
        if used.len() < MIN_CUSTOMERS {
            return Err(FitError::TooFewCustomers {
                needed: MIN_CUSTOMERS,
                got: used.len(),
            });
        }
        fn objective(d: &Compressed) -> impl Fn(&[f64]) -> f64 + '_ {
            move |phi: &[f64]| {
                if phi.iter().any(|v| v.abs() > WALL) {
                    return f64::INFINITY;
                }
                let g = GammaGamma::from_slice(&phi.iter().map(|v| v.exp()).collect::<Vec<_>>());
                -d.log_likelihood(&g) / d.weight
            }
        }
        let full = Compressed::new(&used);
        let sample: Vec<(u32, f64)> = if used.len() > SUBSAMPLE {
            let step = used.len() as f64 / SUBSAMPLE as f64;
            (0..SUBSAMPLE).map(|k| used[(k as f64 * step) as usize]).collect()
        } else {
            Vec::new()
        };
        let sub = (!sample.is_empty()).then(|| Compressed::new(&sample));
        let first = sub.as_ref().unwrap_or(&full);
        // Starts: q = 2, p = 1 and v matching the mean spend (p v / (q − 1) = mean), and a
        // flatter one.
        let mean = used.iter().map(|c| c.1).sum::<f64>() / used.len() as f64;
        let starts = [[1.0, 2.0, mean], [5.0, 5.0, mean]];
        let opts = NelderMead::default();
        let mut best = starts
            .iter()
            .map(|s| nelder_mead(objective(first), &s.map(f64::ln), &opts))
            .min_by(|a, b| a.value.total_cmp(&b.value))
            .expect("two starts");
        best = polish(best, objective(&full), sub.is_some());
        finish(
            best,
            Self::NAMES,
            GammaGamma::from_slice,
            |s| full.log_likelihood(&GammaGamma::from_slice(s)),
            used.len(),
        )
    }
}

/// `(x, m)` pairs with identical pairs merged, `ln m` precomputed.
struct Compressed {
    /// Distinct x, ascending.
    xs: Vec<u32>,
    /// (x index, m, ln m, weight), sorted.
    rows: Vec<(u32, f64, f64, f64)>,
    weight: f64,
}

/// Rows per parallel chunk of a likelihood evaluation (fixed, so the sum is reproducible).
const CHUNK: usize = 4096;

impl Compressed {
    fn new(data: &[(u32, f64)]) -> Compressed {
        let mut by_x: HashMap<u32, HashMap<u64, (f64, f64)>> = HashMap::new();
        for &(x, m) in data {
            by_x.entry(x).or_default().entry(m.to_bits()).or_insert((m, 0.0)).1 += 1.0;
        }
        let mut xs: Vec<u32> = by_x.keys().copied().collect();
        xs.sort_unstable();
        let mut rows = Vec::new();
        for (xi, x) in xs.iter().enumerate() {
            let mut g: Vec<(u32, f64, f64, f64)> = by_x[x].values().map(|&(m, w)| (xi as u32, m, m.ln(), w)).collect();
            g.sort_by(|a, b| a.1.total_cmp(&b.1));
            rows.extend(g);
        }
        Compressed {
            xs,
            rows,
            weight: data.len() as f64,
        }
    }

    fn log_likelihood(&self, g: &GammaGamma) -> f64 {
        let (p, q, v) = (g.p, g.q, g.v);
        if ![p, q, v].iter().all(|s| s.is_finite() && *s > 0.0) {
            return f64::NAN;
        }
        // Per x: ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln v + px ln x.
        let common: Vec<f64> = self
            .xs
            .iter()
            .map(|&x| {
                let (xf, px) = (x as f64, p * x as f64);
                ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q) + q * v.ln() + px * xf.ln()
            })
            .collect();
        let chunk_sums: Vec<f64> = self
            .rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|&(xi, m, ln_m, w)| {
                        let x = self.xs[xi as usize] as f64;
                        w * (common[xi as usize] + (p * x - 1.0) * ln_m - (p * x + q) * (x * m + v).ln())
                    })
                    .sum::<f64>()
            })
            .collect();
        chunk_sums.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: GammaGamma = GammaGamma {
        p: 6.25,
        q: 3.74,
        v: 15.44,
    };

    fn rel(got: f64, want: f64) -> f64 {
        (got - want).abs() / want.abs()
    }

    #[test]
    fn log_likelihood_at_known_parameters() {
        // mpmath on the formula of the module documentation.
        assert!(rel(CDNOW.ln_likelihood(2, 22.35), -3.551_316_759_731_704_7) < 1e-13);
        assert!(rel(CDNOW.ln_likelihood(10, 50.5), -4.889_364_932_235_236) < 1e-13);
        let data = [(2, 22.35), (10, 50.5), (2, 22.35)];
        let want = 2.0 * -3.551_316_759_731_704_7 + -4.889_364_932_235_236;
        assert!(rel(CDNOW.log_likelihood(&data), want) < 1e-13);
    }

    #[test]
    fn expected_average_value_shrinks_towards_the_population_mean() {
        // 6.25 (15.44 + 2 · 22.35) / (6.25 · 2 + 3.74 − 1) = 375.875 / 15.24
        let e = CDNOW.expected_average_value(2, 22.35).unwrap();
        assert!(rel(e, 375.875 / 15.24) < 1e-15, "{e}");
        // x = 0: p v / (q − 1) = 96.5 / 2.74, whatever m says.
        assert!(rel(CDNOW.expected_average_value(0, 0.0).unwrap(), 96.5 / 2.74) < 1e-15);
        assert_eq!(
            CDNOW.expected_average_value(0, 123.0),
            CDNOW.expected_average_value(0, 0.0)
        );
        // Many transactions: close to the customer's own mean.
        let e = CDNOW.expected_average_value(1000, 50.0).unwrap();
        assert!((e - 50.0).abs() < 0.05, "{e}");
        assert_eq!(GammaGamma { q: 1.0, ..CDNOW }.expected_average_value(2, 10.0), None);
    }

    #[test]
    fn fit_recovers_simulated_parameters() {
        // Customers with x transactions of Gamma(p, ν) values, ν ~ Gamma(q, v).
        let truth = GammaGamma {
            p: 4.0,
            q: 3.0,
            v: 20.0,
        };
        let mut s: u64 = 11;
        let mut u = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        // Gamma(k, 1) for integer k as a sum of exponentials; q = 3 and p = 4 are integers.
        let mut gamma_int = |k: u32| (0..k).map(|_| -u().ln()).sum::<f64>();
        let data: Vec<(u32, f64)> = (0..4000)
            .map(|i| {
                let x = 1 + (i % 6) as u32;
                let nu = gamma_int(3) / truth.v; // rate ν ~ Gamma(q, v)
                let total: f64 = (0..x).map(|_| gamma_int(4) / nu).sum();
                (x, total / x as f64)
            })
            .collect();
        let fit = GammaGamma::fit(&data).unwrap();
        for (i, t) in [truth.p, truth.q, truth.v].iter().enumerate() {
            let se = fit.std_err[i].unwrap();
            assert!(
                (fit.estimates[i] - t).abs() < 4.0 * se,
                "{}: {:?}",
                GammaGamma::NAMES[i],
                fit
            );
        }
    }

    #[test]
    fn too_few_positive_repeat_customers_is_an_error() {
        let data = [(0, 0.0), (2, 10.0), (3, 0.0), (1, 5.0)];
        assert_eq!(
            GammaGamma::fit(&data),
            Err(FitError::TooFewCustomers { needed: 3, got: 2 })
        );
    }
}
