//! The BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005, "Counting Your Customers
//! the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2)).
//!
//! While alive a customer buys at Poisson rate λ ~ Gamma(r, α); after each purchase they drop
//! out with probability p ~ Beta(a, b). A customer is summarized by `x` (repeat purchases,
//! i.e. purchases after the first), `t_x` (time of the last purchase, from the first) and `T`
//! (time from the first purchase to the end of calibration), all in one time unit.
//!
//! Formulas (FHL 2005, eq. 6, 10, 11 and the note "Computing P(alive)"):
//! - `L = Γ(r+x) α^r / Γ(r) · [B(a, b+x)/B(a, b) · (α+T)^-(r+x)
//!        + δ(x>0) B(a+1, b+x−1)/B(a, b) · (α+t_x)^-(r+x)]`;
//! - `P(alive) = 1 / (1 + δ(x>0) · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))`;
//! - `E[Y(t) | x, t_x, T] = P(alive) · (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x)
//!        · ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]` (purchases in `(T, T+t]`);
//! - `E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))]` (from time 0),
//!   which is the conditional formula with x = t_x = T = 0.
//!
//! The bracket is evaluated without the 0/0 at a = 1 and without cancellation between the
//! power and ₂F₁: by Euler's transformation `(1−z)^(r+x) ₂F₁(r+x, b+x; c; z) =
//! (1−z)^(a−1) ₂F₁(c−r−x, a−1; c; z)` with `c = a+b+x−1`, and `₂F₁(α', a−1; c; z) =
//! 1 + (a−1)·S` where `S = Σ_{k≥1} (α')_k (a)_{k−1} / ((c)_k k!) z^k`, so
//! `E[Y(t) | alive] = c · [−expm1((a−1)·ln(1−z))/(a−1) − (1−z)^(a−1) · S]`. With
//! `0 ≤ z < 1` the series converges for all parameters; its terms are rescaled to stay in
//! range for large a, b and x. Near z = 1 (a horizon far longer than α + T) it needs about
//! `40 / (1−z)` terms.

use std::collections::HashMap;

use rayon::prelude::*;

use super::optim::{Minimum, NelderMead, nelder_mead, newton_polish, standard_errors};
use super::special::{ln_gamma, log_add_exp};

/// One customer's purchase summary in the model's time unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Customer {
    /// Repeat purchases (purchases after the first).
    pub x: u32,
    /// Time from the first to the last purchase (0 when x = 0).
    pub t_x: f64,
    /// Time from the first purchase to the end of the calibration period.
    pub t: f64,
}

/// BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Fewest repeat customers (x > 0) a fit is attempted on: one per parameter.
pub const MIN_REPEAT_CUSTOMERS: usize = 4;

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("{got} customers qualify for the fit, at least {needed} are needed")]
    TooFewCustomers { needed: usize, got: usize },
    #[error("the optimizer did not converge in {evals} evaluations")]
    NoConvergence { evals: usize },
    #[error("parameter {param} ran off to {value:e}: the data do not identify the model")]
    Diverged { param: &'static str, value: f64 },
    #[error("the log-likelihood is not finite at the optimum")]
    NotFinite,
}

/// A maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<P> {
    pub params: P,
    /// Parameter names, in the order of `estimates` and `std_err`.
    pub names: &'static [&'static str],
    pub estimates: Vec<f64>,
    /// From the observed information (finite-difference Hessian of log L at the estimate);
    /// `None` when it is not positive definite.
    pub std_err: Vec<Option<f64>>,
    pub log_likelihood: f64,
    pub n_customers: usize,
    /// Log-likelihood evaluations the search took.
    pub evals: usize,
}

/// Estimates outside `[1/LIMIT, LIMIT]` mean the likelihood kept improving towards a boundary.
pub(crate) const DIVERGENCE_LIMIT: f64 = 1e8;

/// The searches treat log-parameters beyond ±WALL (e^20 ≈ 5e8, past the divergence limit) as
/// infeasible, so a likelihood that improves without bound stays in range and is reported as
/// diverged.
pub(crate) const WALL: f64 = 20.0;

impl BgNbd {
    pub const NAMES: &'static [&'static str] = &["r", "alpha", "a", "b"];

    pub fn from_slice(p: &[f64]) -> BgNbd {
        BgNbd {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        }
    }

    pub fn to_vec(self) -> Vec<f64> {
        vec![self.r, self.alpha, self.a, self.b]
    }

    fn valid(&self) -> bool {
        [self.r, self.alpha, self.a, self.b]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    }

    /// The log-likelihood of one customer.
    pub fn ln_likelihood(&self, c: &Customer) -> f64 {
        Terms::new(self, c.x).ln_likelihood(self, c.t_x, c.t)
    }

    /// The log-likelihood of a sample (a sum over customers).
    pub fn log_likelihood(&self, data: &[Customer]) -> f64 {
        Compressed::new(data).log_likelihood(self)
    }

    /// The probability that a customer with this history is still alive at `t`.
    pub fn p_alive(&self, x: u32, t_x: f64, t: f64) -> f64 {
        if x == 0 {
            return 1.0;
        }
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let xf = x as f64;
        let ln_odds = a.ln() - (b + xf - 1.0).ln() + (r + xf) * ((alpha + t).ln() - (alpha + t_x).ln());
        // 1 / (1 + e^ln_odds), safe for large ln_odds.
        if ln_odds > 0.0 {
            let e = (-ln_odds).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + ln_odds.exp())
        }
    }

    /// Expected purchases in `(t, t + horizon]` of a customer with history `(x, t_x, t)`.
    /// NaN if the series does not converge (a horizon astronomically longer than α + t).
    pub fn conditional_expected_purchases(&self, x: u32, t_x: f64, t: f64, horizon: f64) -> f64 {
        self.p_alive(x, t_x, t) * self.expected_purchases_if_alive(x, t, horizon)
    }

    /// Expected purchases in `(t, t + horizon]` of a customer alive at `t` with `x` repeat
    /// purchases (the conditional expectation without the P(alive) factor).
    pub fn expected_purchases_if_alive(&self, x: u32, t: f64, horizon: f64) -> f64 {
        expected_if_alive(self, x as f64, t, horizon)
    }

    /// Expected repeat purchases in `(0, t]` of a new customer (unconditional).
    pub fn expected_purchases(&self, t: f64) -> f64 {
        expected_if_alive(self, 0.0, 0.0, t)
    }

    /// Fits the model by maximum likelihood: Nelder–Mead on the log-parameters from two
    /// starting points, keeping the better optimum (on an evenly spaced subsample of
    /// [`SUBSAMPLE`] customers when there are more), then Newton steps on all customers (see
    /// [`polish`]). Standard errors from the finite-difference Hessian.
    pub fn fit(data: &[Customer]) -> Result<Fit<BgNbd>, FitError> {
        let repeaters = data.iter().filter(|c| c.x > 0).count();
        if repeaters < MIN_REPEAT_CUSTOMERS {
            return Err(FitError::TooFewCustomers {
                needed: MIN_REPEAT_CUSTOMERS,
                got: repeaters,
            });
        }
        fn objective(d: &Compressed) -> impl Fn(&[f64]) -> f64 + '_ {
            move |phi: &[f64]| {
                if phi.iter().any(|v| v.abs() > WALL) {
                    return f64::INFINITY;
                }
                let p = BgNbd::from_slice(&phi.iter().map(|v| v.exp()).collect::<Vec<_>>());
                -d.log_likelihood(&p) / d.weight
            }
        }
        let full = Compressed::new(data);
        let sample: Vec<Customer> = if data.len() > SUBSAMPLE {
            let step = data.len() as f64 / SUBSAMPLE as f64;
            (0..SUBSAMPLE).map(|k| data[(k as f64 * step) as usize]).collect()
        } else {
            Vec::new()
        };
        let sub = (!sample.is_empty()).then(|| Compressed::new(&sample));
        let first = sub.as_ref().unwrap_or(&full);
        // Starts: the mean purchase rate Σx/ΣT gives α = r / rate at r = 1.
        let (sx, st) = data.iter().fold((0.0, 0.0), |(sx, st), c| (sx + c.x as f64, st + c.t));
        let alpha0 = if sx > 0.0 && st > 0.0 { st / sx } else { 1.0 };
        let starts = [[1.0, alpha0, 1.0, 1.0], [0.1, alpha0 * 0.1, 0.5, 5.0]];
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
            BgNbd::from_slice,
            |p| full.log_likelihood(&BgNbd::from_slice(p)),
            data.len(),
        )
    }
}

/// Above this many customers the fit's starting searches run on a subsample this size.
pub const SUBSAMPLE: usize = 10_000;

/// Takes the Nelder–Mead optimum `best` (of the subsample when `subsampled`) to the full-data
/// optimum of `objective`: Newton polishing from it, or, if that fails, a Nelder–Mead search on
/// the full data from it (when it came from a subsample).
pub(crate) fn polish(best: Minimum, objective: impl Fn(&[f64]) -> f64, subsampled: bool) -> Minimum {
    if !best.converged {
        return best;
    }
    let polished = newton_polish(&objective, &best.x, 1e-4, 1e-9, 50);
    let evals = best.evals + polished.evals;
    if polished.converged && polished.value <= best.value.max(objective(&best.x)) {
        return Minimum { evals, ..polished };
    }
    if !subsampled {
        return Minimum { evals, ..best };
    }
    let refine = NelderMead {
        initial_step: 0.1,
        ..NelderMead::default()
    };
    let again = nelder_mead(&objective, &best.x, &refine);
    Minimum {
        evals: evals + again.evals,
        ..again
    }
}

/// Turns an optimum on log-parameters into a [`Fit`], checking convergence and divergence.
pub(crate) fn finish<P>(
    best: Minimum,
    names: &'static [&'static str],
    make: impl Fn(&[f64]) -> P,
    mut log_likelihood: impl FnMut(&[f64]) -> f64,
    n_customers: usize,
) -> Result<Fit<P>, FitError> {
    // A search that ran off towards a boundary is reported as such, converged or not.
    let estimates: Vec<f64> = best.x.iter().map(|v| v.exp()).collect();
    for (name, v) in names.iter().zip(&estimates) {
        if !(1.0 / DIVERGENCE_LIMIT..=DIVERGENCE_LIMIT).contains(v) {
            return Err(FitError::Diverged { param: name, value: *v });
        }
    }
    if !best.converged {
        return Err(FitError::NoConvergence { evals: best.evals });
    }
    let ll = log_likelihood(&estimates);
    if !ll.is_finite() {
        return Err(FitError::NotFinite);
    }
    let std_err = standard_errors(&mut log_likelihood, &estimates);
    Ok(Fit {
        params: make(&estimates),
        names,
        estimates,
        std_err,
        log_likelihood: ll,
        n_customers,
        evals: best.evals,
    })
}

/// The parts of a customer's log-likelihood that depend on x only.
struct Terms {
    /// ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    common: f64,
    /// ln(a / (b+x−1)) for x > 0
    alive_ratio: Option<f64>,
    rx: f64,
}

impl Terms {
    fn new(p: &BgNbd, x: u32) -> Terms {
        let xf = x as f64;
        let (r, a, b) = (p.r, p.a, p.b);
        let common = ln_gamma(r + xf) - ln_gamma(r) + r * p.alpha.ln() + ln_gamma(b + xf) - ln_gamma(b)
            + ln_gamma(a + b)
            - ln_gamma(a + b + xf);
        Terms {
            common,
            alive_ratio: (x > 0).then(|| a.ln() - (b + xf - 1.0).ln()),
            rx: r + xf,
        }
    }

    fn ln_likelihood(&self, p: &BgNbd, t_x: f64, t: f64) -> f64 {
        let still = -self.rx * (p.alpha + t).ln();
        let dropped = match self.alive_ratio {
            Some(ratio) => ratio - self.rx * (p.alpha + t_x).ln(),
            None => f64::NEG_INFINITY,
        };
        self.common + log_add_exp(still, dropped)
    }
}

/// Customers with identical histories merged with a weight, and the distinct values of T and
/// t_x indexed, so an evaluation takes one logarithm per distinct value: the likelihood is a
/// weighted sum over distinct `(x, t_x, T)`.
pub(crate) struct Compressed {
    /// Distinct T and t_x values.
    ts: Vec<f64>,
    txs: Vec<f64>,
    /// x = 0: (T index, weight).
    zero: Vec<(u32, f64)>,
    /// Distinct x > 0, ascending.
    xs: Vec<u32>,
    /// x > 0: (x index, t_x index, T index, weight), sorted.
    rows: Vec<(u32, u32, u32, f64)>,
    /// Total weight (customers).
    pub(crate) weight: f64,
}

/// Rows per parallel chunk of a likelihood evaluation (fixed, so the sum is reproducible).
const CHUNK: usize = 4096;

impl Compressed {
    pub(crate) fn new(data: &[Customer]) -> Compressed {
        fn index(values: impl Iterator<Item = f64>) -> (Vec<f64>, HashMap<u64, u32>) {
            let mut v: Vec<f64> = values.collect();
            v.sort_by(f64::total_cmp);
            v.dedup_by(|a, b| a.to_bits() == b.to_bits());
            let map = v.iter().enumerate().map(|(i, x)| (x.to_bits(), i as u32)).collect();
            (v, map)
        }
        let (ts, t_index) = index(data.iter().map(|c| c.t));
        let (txs, tx_index) = index(data.iter().filter(|c| c.x > 0).map(|c| c.t_x));
        let mut zero: HashMap<u32, f64> = HashMap::new();
        let mut by_x: HashMap<u32, HashMap<(u32, u32), f64>> = HashMap::new();
        for c in data {
            let ti = t_index[&c.t.to_bits()];
            if c.x == 0 {
                *zero.entry(ti).or_default() += 1.0;
            } else {
                *by_x
                    .entry(c.x)
                    .or_default()
                    .entry((tx_index[&c.t_x.to_bits()], ti))
                    .or_default() += 1.0;
            }
        }
        let mut zero: Vec<(u32, f64)> = zero.into_iter().collect();
        zero.sort_by_key(|z| z.0);
        let mut xs: Vec<u32> = by_x.keys().copied().collect();
        xs.sort_unstable();
        let mut rows: Vec<(u32, u32, u32, f64)> = Vec::new();
        for (xi, x) in xs.iter().enumerate() {
            let mut g: Vec<(u32, u32, u32, f64)> =
                by_x[x].iter().map(|(&(txi, ti), &w)| (xi as u32, txi, ti, w)).collect();
            // A fixed order makes the floating-point sum reproducible.
            g.sort_by_key(|r| (r.1, r.2));
            rows.extend(g);
        }
        Compressed {
            ts,
            txs,
            zero,
            xs,
            rows,
            weight: data.len() as f64,
        }
    }

    pub(crate) fn log_likelihood(&self, p: &BgNbd) -> f64 {
        if !p.valid() {
            return f64::NAN;
        }
        let ln_t: Vec<f64> = self.ts.iter().map(|t| (p.alpha + t).ln()).collect();
        let ln_tx: Vec<f64> = self.txs.iter().map(|t| (p.alpha + t).ln()).collect();
        let zero = Terms::new(p, 0);
        let mut total: f64 = self
            .zero
            .iter()
            .map(|&(ti, w)| w * (zero.common - zero.rx * ln_t[ti as usize]))
            .sum();
        // x > 0: one exp and one ln_1p per distinct history; in parallel over fixed chunks.
        let terms: Vec<Terms> = self.xs.iter().map(|x| Terms::new(p, *x)).collect();
        let chunk_sums: Vec<f64> = self
            .rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|&(xi, txi, ti, w)| {
                        let t = &terms[xi as usize];
                        let still = -t.rx * ln_t[ti as usize];
                        let dropped = t.alive_ratio.unwrap_or(f64::NEG_INFINITY) - t.rx * ln_tx[txi as usize];
                        w * (t.common + log_add_exp(still, dropped))
                    })
                    .sum::<f64>()
            })
            .collect();
        total += chunk_sums.iter().sum::<f64>();
        total
    }
}

/// Most series terms summed before giving up (NaN).
const MAX_TERMS: usize = 5_000_000;

/// `E[Y(h) | alive at t, x]`: see the module documentation for the formula.
fn expected_if_alive(p: &BgNbd, x: f64, t: f64, h: f64) -> f64 {
    if h <= 0.0 {
        return 0.0;
    }
    let (r, alpha, a, b) = (p.r, p.alpha, p.a, p.b);
    let c = a + b + x - 1.0; // the ₂F₁ lower parameter
    let ap = a + b - 1.0 - r; // c − (r + x)
    let d = a - 1.0;
    let ln_w = -(h / (alpha + t)).ln_1p(); // ln(1 − z) = ln((α+t)/(α+t+h))
    let z = h / (alpha + t + h);
    // S = Σ_{k≥1} s_k, s_1 = α' z / c, s_{k+1} = s_k (α'+k)(a+k−1) z / ((c+k)(k+1)).
    // Terms are rescaled by 2^-600 when the sum grows past 2^600 (ln_scale keeps track).
    let big = 2f64.powi(600);
    let mut sum = 0.0_f64;
    let mut term = ap * z / c;
    let mut ln_scale = 0.0;
    let mut k = 1.0_f64;
    let mut n = 0;
    loop {
        sum += term;
        let ratio = (ap + k) * (a + k - 1.0) * z / ((c + k) * (k + 1.0));
        term *= ratio;
        k += 1.0;
        n += 1;
        if sum.abs() > big {
            sum /= big;
            term /= big;
            ln_scale += big.ln();
        }
        // Past the sign changes (α' + k > 0) the terms keep one sign; once their ratio is below
        // 1 the tail is at most term · ρ/(1−ρ), ρ = max(ratio, z) (the ratios tend to z).
        if k > -ap + 1.0 && ratio < 1.0 {
            let rho = ratio.max(z);
            if term.abs() * rho / (1.0 - rho) <= 1e-17 * sum.abs() || term == 0.0 {
                break;
            }
        }
        if n >= MAX_TERMS || !sum.is_finite() {
            return f64::NAN;
        }
    }
    let first = if d == 0.0 { -ln_w } else { -(d * ln_w).exp_m1() / d };
    let second = if sum == 0.0 {
        0.0
    } else {
        sum.signum() * (d * ln_w + sum.abs().ln() + ln_scale).exp()
    };
    c * (first - second)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published CDNOW estimates (FHL 2005).
    const CDNOW: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn rel(got: f64, want: f64) -> f64 {
        (got - want).abs() / want.abs()
    }

    // Reference values below are from mpmath (40-120 digits) on the closed forms of the module
    // documentation, evaluated independently of this code (hyp2f1, beta, gamma).

    #[test]
    fn log_likelihood_at_known_parameters() {
        let cases = [
            (0, 0.0, 38.86, -0.554_713_276_438_158_5),
            (2, 30.43, 38.86, -9.458_606_307_066_27),
            (1, 1.71, 38.86, -4.469_093_275_032_589),
            (7, 29.43, 35.14, -21.400_277_658_129_33),
            (30, 38.0, 38.5, -44.616_730_406_087_81),
        ];
        let mut data = Vec::new();
        let mut sum = 0.0;
        for (x, t_x, t, want) in cases {
            let c = Customer { x, t_x, t };
            let got = CDNOW.ln_likelihood(&c);
            assert!(rel(got, want) < 1e-13, "{c:?}: {got} vs {want}");
            data.push(c);
            data.push(c);
            sum += 2.0 * want;
        }
        // Duplicates are merged with a weight; the sum is unchanged.
        assert!(rel(CDNOW.log_likelihood(&data), sum) < 1e-13);
        let bad = BgNbd { a: -1.0, ..CDNOW };
        assert!(bad.log_likelihood(&data).is_nan());
    }

    #[test]
    fn p_alive_and_expected_purchases_of_the_published_example() {
        // FHL 2005 §5: x = 2, t_x = 30.43, T = 38.86; 39 weeks ahead: 1.226 purchases.
        let p = CDNOW.p_alive(2, 30.43, 38.86);
        assert!(rel(p, 0.726_578_570_080_673) < 1e-13, "{p}");
        let e = CDNOW.conditional_expected_purchases(2, 30.43, 38.86, 39.0);
        assert!(rel(e, 1.226_028_174_767_144_5) < 1e-12, "{e}");
        assert_eq!(format!("{e:.3}"), "1.226");
        // A long-gone frequent buyer and a single-purchase customer.
        assert!(rel(CDNOW.p_alive(7, 10.0, 35.0), 0.007_227_326_646_563_013) < 1e-12);
        assert_eq!(CDNOW.p_alive(0, 0.0, 38.86), 1.0);
        let e0 = CDNOW.conditional_expected_purchases(0, 0.0, 38.86, 39.0);
        assert!(rel(e0, 0.195_098_052_011_262_64) < 1e-12, "{e0}");
        // Ten years ahead of a brand-new customer (z close to 1).
        let e = CDNOW.conditional_expected_purchases(0, 0.0, 0.0, 520.0);
        assert!(rel(e, 4.974_617_861_849_659_7) < 1e-11, "{e}");
    }

    #[test]
    fn unconditional_expected_purchases_from_time_zero() {
        assert!(rel(CDNOW.expected_purchases(39.0), 1.196_723_193_320_817) < 1e-12);
        assert!(rel(CDNOW.expected_purchases(78.0), 1.860_519_057_942_768_6) < 1e-12);
        assert_eq!(CDNOW.expected_purchases(0.0), 0.0);
        // a + b − 1 < 0: the ₂F₁ lower parameter is negative.
        let p = BgNbd {
            r: 0.3,
            alpha: 10.0,
            a: 0.2,
            b: 0.5,
        };
        assert!(rel(p.expected_purchases(52.0), 1.085_677_869_336_717_6) < 1e-11);
    }

    #[test]
    fn expected_purchases_are_safe_for_large_parameters_and_at_a_equal_1() {
        // Large a, b and T.
        let p = BgNbd {
            r: 2.5,
            alpha: 30.0,
            a: 150.0,
            b: 4000.0,
        };
        let e = p.conditional_expected_purchases(40, 900.0, 1000.0, 52.0);
        assert!(rel(e, 0.535_951_311_612_937_6) < 1e-10, "{e}");
        // A frequent buyer: x = 1500 over two years.
        let p = BgNbd {
            r: 0.8,
            alpha: 12.0,
            a: 0.6,
            b: 3000.0,
        };
        assert!(rel(p.p_alive(1500, 729.5, 730.0), 0.999_633_364_028_867_6) < 1e-12);
        let e = p.conditional_expected_purchases(1500, 729.5, 730.0, 365.0);
        assert!(rel(e, 704.530_608_458_398_3) < 1e-10, "{e}");
        // a = 1 exactly (the closed form's 0/0) and next to it.
        let at = |a: f64| {
            BgNbd {
                r: 0.5,
                alpha: 3.0,
                a,
                b: 2.0,
            }
            .expected_purchases_if_alive(3, 20.0, 52.0)
                * BgNbd {
                    r: 0.5,
                    alpha: 3.0,
                    a,
                    b: 2.0,
                }
                .p_alive(3, 10.0, 20.0)
        };
        assert!(rel(at(1.0), 1.643_180_583_654_778) < 1e-12, "{}", at(1.0));
        assert!(rel(at(1.000_001), 1.643_178_828_619_376_7) < 1e-11);
        // A horizon far past α + T: α = 0.05, 365 units ahead (z = 0.99986).
        let p = BgNbd {
            r: 0.3,
            alpha: 0.05,
            a: 0.8,
            b: 2.5,
        };
        let e = p.expected_purchases(365.0);
        assert!(rel(e, 24.493_242_723_062_52) < 1e-10, "{e}");
    }

    #[test]
    fn expected_purchases_grow_with_the_horizon_and_p_alive_falls_with_silence() {
        let mut prev = 0.0;
        for i in 1..=24 {
            let e = CDNOW.conditional_expected_purchases(3, 20.0, 38.0, i as f64 * 4.0);
            assert!(e > prev, "horizon {i}");
            prev = e;
        }
        let mut prev = 1.0;
        for t_x in [37.0, 30.0, 20.0, 10.0, 1.0] {
            let p = CDNOW.p_alive(3, t_x, 38.0);
            assert!(p < prev && p > 0.0);
            prev = p;
        }
    }

    /// Draws BG/NBD customers (inverse-CDF sampling with a small LCG, no dependency).
    fn simulate(p: BgNbd, n: usize, t_end: f64, seed: u64) -> Vec<Customer> {
        let mut s = seed;
        let mut u = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        // Gamma(k, 1) by Marsaglia–Tsang (k < 1 via the k + 1 boost).
        fn gamma(k: f64, u: &mut impl FnMut() -> f64) -> f64 {
            if k < 1.0 {
                return gamma(k + 1.0, u) * u().powf(1.0 / k);
            }
            let d = k - 1.0 / 3.0;
            let c = 1.0 / (9.0 * d).sqrt();
            loop {
                // Box–Muller normal.
                let z = (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
                let v = (1.0 + c * z).powi(3);
                if v > 0.0 && u().ln() < 0.5 * z * z + d - d * v + d * v.ln() {
                    return d * v;
                }
            }
        }
        (0..n)
            .map(|_| {
                let lambda = gamma(p.r, &mut u) / p.alpha;
                let ga = gamma(p.a, &mut u);
                let drop = ga / (ga + gamma(p.b, &mut u));
                let (mut x, mut t_x, mut now) = (0, 0.0, 0.0);
                loop {
                    now += -u().ln() / lambda;
                    if now > t_end {
                        break;
                    }
                    x += 1;
                    t_x = now;
                    if u() < drop {
                        break;
                    }
                }
                Customer { x, t_x, t: t_end }
            })
            .collect()
    }

    #[test]
    fn fit_recovers_simulated_parameters_within_their_standard_errors() {
        let truth = BgNbd {
            r: 0.5,
            alpha: 4.0,
            a: 0.8,
            b: 2.5,
        };
        let data = simulate(truth, 6000, 52.0, 7);
        let fit = BgNbd::fit(&data).unwrap();
        assert_eq!(fit.n_customers, 6000);
        for (i, (est, se)) in fit.estimates.iter().zip(&fit.std_err).enumerate() {
            let se = se.expect("positive-definite information");
            let t = truth.to_vec()[i];
            assert!((est - t).abs() < 4.0 * se, "{}: {est} ± {se} vs {t}", BgNbd::NAMES[i]);
        }
        // The optimum: every axis-aligned nudge lowers the likelihood.
        let ll = fit.log_likelihood;
        for i in 0..4 {
            for f in [0.999, 1.001] {
                let mut v = fit.estimates.clone();
                v[i] *= f;
                assert!(BgNbd::from_slice(&v).log_likelihood(&data) < ll);
            }
        }
    }

    #[test]
    fn data_without_any_dropout_evidence_diverge_instead_of_giving_numbers() {
        // Everyone bought on their last day of observation: nothing suggests anyone dropped out,
        // the likelihood keeps growing as p → 0 (b → ∞).
        let data: Vec<Customer> = (0..200)
            .map(|i| Customer {
                x: 1 + i % 5,
                t_x: 20.0 + (i % 7) as f64,
                t: 20.0 + (i % 7) as f64,
            })
            .collect();
        let fit = BgNbd::fit(&data);
        assert!(matches!(fit, Err(FitError::Diverged { .. })), "{fit:?}");
    }

    #[test]
    fn too_few_repeat_customers_is_an_error_not_a_panic() {
        let data = vec![
            Customer {
                x: 0,
                t_x: 0.0,
                t: 10.0,
            },
            Customer {
                x: 1,
                t_x: 2.0,
                t: 10.0,
            },
            Customer {
                x: 2,
                t_x: 5.0,
                t: 10.0,
            },
        ];
        assert_eq!(BgNbd::fit(&data), Err(FitError::TooFewCustomers { needed: 4, got: 2 }));
        assert!(BgNbd::fit(&[]).is_err());
    }
}
