//! A small derivative-free minimizer (Nelder–Mead with restarts), finite-difference Hessians
//! and the inverse of a small symmetric positive-definite matrix: enough to fit the customer
//! lifetime models by maximum likelihood and report standard errors.

/// Options of [`nelder_mead`].
#[derive(Debug, Clone, Copy)]
pub struct NelderMead {
    /// Size of the initial simplex's steps along each axis.
    pub initial_step: f64,
    /// Converged when every vertex is within `x_tol` of the best one (each coordinate) ...
    pub x_tol: f64,
    /// ... and every vertex's value is within `f_tol` of the best one.
    pub f_tol: f64,
    /// Total function evaluations allowed, restarts included.
    pub max_evals: usize,
    /// After convergence, restart from the best point with a fresh simplex, at most this many
    /// times, until a restart no longer improves the value by more than `f_tol` (guards against
    /// a simplex that collapsed before reaching the minimum).
    pub max_restarts: usize,
}

impl Default for NelderMead {
    fn default() -> Self {
        NelderMead {
            initial_step: 0.5,
            x_tol: 1e-9,
            f_tol: 1e-12,
            max_evals: 3_000,
            max_restarts: 5,
        }
    }
}

/// The result of a minimization.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub evals: usize,
    /// False when the evaluation budget ran out before the tolerances were met.
    pub converged: bool,
}

/// Minimizes `f` from `x0` by the Nelder–Mead simplex method with the dimension-adaptive
/// coefficients of Gao & Han (2012): reflection 1, expansion 1 + 2/n, contraction
/// 0.75 − 1/(2n), shrink 1 − 1/n. A NaN value counts as +∞, so `f` may refuse a point by
/// returning NaN or ∞.
pub fn nelder_mead(mut f: impl FnMut(&[f64]) -> f64, x0: &[f64], opts: &NelderMead) -> Minimum {
    let n = x0.len();
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let mut evals = 0;
    let mut best = x0.to_vec();
    let mut best_value = eval(&best, &mut evals);
    if n == 0 {
        return Minimum {
            x: best,
            value: best_value,
            evals,
            converged: true,
        };
    }
    let nf = n as f64;
    let (rho, chi, gamma, sigma) = (1.0, 1.0 + 2.0 / nf, 0.75 - 0.5 / nf, 1.0 - 1.0 / nf);
    let mut converged = false;
    for restart in 0..=opts.max_restarts {
        let start_value = best_value;
        // Simplex: the start point and one step along each axis.
        let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
        simplex.push((best.clone(), best_value));
        for i in 0..n {
            let mut x = best.clone();
            x[i] += opts.initial_step;
            let v = eval(&x, &mut evals);
            simplex.push((x, v));
        }
        converged = false;
        while evals < opts.max_evals {
            simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (b, w) = (&simplex[0], &simplex[n]);
            let x_spread = simplex[1..]
                .iter()
                .flat_map(|(x, _)| x.iter().zip(&b.0).map(|(u, v)| (u - v).abs()))
                .fold(0.0, f64::max);
            let f_spread = (w.1 - b.1).abs();
            if x_spread <= opts.x_tol && (f_spread <= opts.f_tol || !w.1.is_finite() && !b.1.is_finite()) {
                converged = true;
                break;
            }
            // Centroid of all vertices but the worst.
            let mut c = vec![0.0; n];
            for (x, _) in &simplex[..n] {
                for (ci, xi) in c.iter_mut().zip(x) {
                    *ci += xi / nf;
                }
            }
            let along =
                |t: f64| -> Vec<f64> { c.iter().zip(&simplex[n].0).map(|(ci, wi)| ci + t * (ci - wi)).collect() };
            let xr = along(rho);
            let fr = eval(&xr, &mut evals);
            if fr < simplex[0].1 {
                let xe = along(rho * chi);
                let fe = eval(&xe, &mut evals);
                simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
                continue;
            }
            if fr < simplex[n - 1].1 {
                simplex[n] = (xr, fr);
                continue;
            }
            // Contract outside (reflected point better than the worst) or inside.
            let (xc, fc) = if fr < simplex[n].1 {
                let xc = along(rho * gamma);
                let fc = eval(&xc, &mut evals);
                (xc, fc)
            } else {
                let xc = along(-gamma);
                let fc = eval(&xc, &mut evals);
                (xc, fc)
            };
            if fc < fr.min(simplex[n].1) {
                simplex[n] = (xc, fc);
                continue;
            }
            // Shrink towards the best vertex.
            let x0 = simplex[0].0.clone();
            for v in simplex.iter_mut().skip(1) {
                let x: Vec<f64> = x0.iter().zip(&v.0).map(|(b, x)| b + sigma * (x - b)).collect();
                let fx = eval(&x, &mut evals);
                *v = (x, fx);
            }
        }
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if simplex[0].1 <= best_value {
            best = simplex[0].0.clone();
            best_value = simplex[0].1;
        }
        let improved = start_value - best_value > opts.f_tol;
        if !converged || (restart > 0 && !improved) {
            break;
        }
    }
    Minimum {
        x: best,
        value: best_value,
        evals,
        converged,
    }
}

/// Polishes a minimum by Newton's method on finite-difference derivatives: at each step the
/// gradient by central differences with step `h / 100` and the Hessian with step `h`
/// (`1 + 4n + 2n(n−1)` evaluations), the
/// Newton step (damped by adding `λI` until the Hessian is positive definite), halved until the
/// value decreases. Converged when a full step moves every coordinate less than `x_tol`.
/// Cheaper than Nelder–Mead near a smooth minimum (quadratic convergence), and exact to the
/// finite-difference noise.
#[allow(clippy::needless_range_loop)] // matrix code reads best with indices
pub fn newton_polish(mut f: impl FnMut(&[f64]) -> f64, x0: &[f64], h: f64, x_tol: f64, max_iter: usize) -> Minimum {
    let n = x0.len();
    let mut evals = 0;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let mut x = x0.to_vec();
    let mut fx = eval(&x, &mut evals);
    let mut converged = false;
    for _ in 0..max_iter {
        if !fx.is_finite() {
            break;
        }
        // Gradient and Hessian by central differences.
        let mut g = vec![0.0; n];
        let mut hm = vec![vec![0.0; n]; n];
        let mut at = |moves: &[(usize, f64)], evals: &mut usize| {
            let mut y = x.clone();
            for &(i, d) in moves {
                y[i] += d;
            }
            eval(&y, evals)
        };
        let hg = h / 100.0;
        for i in 0..n {
            g[i] = (at(&[(i, hg)], &mut evals) - at(&[(i, -hg)], &mut evals)) / (2.0 * hg);
            let (p, m) = (at(&[(i, h)], &mut evals), at(&[(i, -h)], &mut evals));
            hm[i][i] = (p - 2.0 * fx + m) / (h * h);
            for j in 0..i {
                let pp = at(&[(i, h), (j, h)], &mut evals);
                let pm = at(&[(i, h), (j, -h)], &mut evals);
                let mp = at(&[(i, -h), (j, h)], &mut evals);
                let mm = at(&[(i, -h), (j, -h)], &mut evals);
                hm[i][j] = (pp - pm - mp + mm) / (4.0 * h * h);
                hm[j][i] = hm[i][j];
            }
        }
        if g.iter().chain(hm.iter().flatten()).any(|v| !v.is_finite()) {
            break;
        }
        // Newton step, damped until the Hessian is positive definite.
        let scale = (0..n).map(|i| hm[i][i].abs()).fold(0.0, f64::max).max(1e-12);
        let mut lambda = 0.0;
        let step = loop {
            let damped: Vec<Vec<f64>> = (0..n)
                .map(|i| (0..n).map(|j| hm[i][j] + if i == j { lambda } else { 0.0 }).collect())
                .collect();
            if let Some(inv) = inverse_spd(&damped) {
                break Some(
                    (0..n)
                        .map(|i| -(0..n).map(|j| inv[i][j] * g[j]).sum::<f64>())
                        .collect::<Vec<f64>>(),
                );
            }
            lambda = if lambda == 0.0 { 1e-6 * scale } else { lambda * 10.0 };
            if lambda > 1e12 * scale {
                break None;
            }
        };
        let Some(step) = step else { break };
        let full = step.iter().map(|v| v.abs()).fold(0.0, f64::max);
        if full < x_tol {
            converged = true;
            break;
        }
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..40 {
            let y: Vec<f64> = x.iter().zip(&step).map(|(a, d)| a + t * d).collect();
            let fy = eval(&y, &mut evals);
            if fy < fx {
                x = y;
                fx = fy;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        if !moved {
            // No decrease along the Newton direction: at the minimum within the noise of f.
            converged = full < 1e3 * x_tol.max(h * h);
            break;
        }
    }
    Minimum {
        x,
        value: fx,
        evals,
        converged,
    }
}

/// The Hessian of `f` at `x` by central differences, with step `h[i]` along axis `i`:
/// diagonal `(f(x+h) − 2f(x) + f(x−h)) / h²`, off-diagonal
/// `(f(++) − f(+−) − f(−+) + f(−−)) / (4 hᵢ hⱼ)`. Truncation error O(h²).
pub fn hessian(mut f: impl FnMut(&[f64]) -> f64, x: &[f64], h: &[f64]) -> Vec<Vec<f64>> {
    let n = x.len();
    let f0 = f(x);
    let mut at = |moves: &[(usize, f64)]| {
        let mut y = x.to_vec();
        for &(i, d) in moves {
            y[i] += d;
        }
        f(&y)
    };
    let mut out = vec![vec![0.0; n]; n];
    for i in 0..n {
        let (p, m) = (at(&[(i, h[i])]), at(&[(i, -h[i])]));
        out[i][i] = (p - 2.0 * f0 + m) / (h[i] * h[i]);
        for j in 0..i {
            let pp = at(&[(i, h[i]), (j, h[j])]);
            let pm = at(&[(i, h[i]), (j, -h[j])]);
            let mp = at(&[(i, -h[i]), (j, h[j])]);
            let mm = at(&[(i, -h[i]), (j, -h[j])]);
            let v = (pp - pm - mp + mm) / (4.0 * h[i] * h[j]);
            out[i][j] = v;
            out[j][i] = v;
        }
    }
    out
}

/// The inverse of a symmetric positive-definite matrix by its Cholesky factorization; `None`
/// when the matrix is not positive definite (or not finite).
#[allow(clippy::needless_range_loop)] // matrix code reads best with indices
pub fn inverse_spd(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    // m = L Lᵀ
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = m[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if !s.is_finite() || s <= 0.0 {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    // Solve L Lᵀ X = I column by column.
    let mut inv = vec![vec![0.0; n]; n];
    for c in 0..n {
        let mut y = vec![0.0; n];
        for i in 0..n {
            let e = if i == c { 1.0 } else { 0.0 };
            y[i] = (e - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
        }
        for i in (0..n).rev() {
            inv[i][c] = (y[i] - (i + 1..n).map(|k| l[k][i] * inv[k][c]).sum::<f64>()) / l[i][i];
        }
    }
    Some(inv)
}

/// Standard errors of a maximum-likelihood estimate `θ̂ > 0` fitted on log-parameters
/// `φ = ln θ`: the observed information `−∇²_φ log L` by central differences with step 1e-3 in
/// φ (a relative step in θ), inverted, and mapped back by the delta method,
/// `se(θᵢ) = θᵢ · sqrt([I_φ⁻¹]ᵢᵢ)` (valid at the optimum, where the gradient vanishes; it
/// equals the inverse information in θ). `None` for every parameter when the information is not
/// positive definite (a flat or saddle likelihood).
pub fn standard_errors(mut log_likelihood: impl FnMut(&[f64]) -> f64, theta: &[f64]) -> Vec<Option<f64>> {
    if theta.iter().any(|t| !t.is_finite() || *t <= 0.0) {
        return vec![None; theta.len()];
    }
    let phi: Vec<f64> = theta.iter().map(|t| t.ln()).collect();
    let h = vec![1e-3; theta.len()];
    let info = hessian(
        |p| {
            let t: Vec<f64> = p.iter().map(|v| v.exp()).collect();
            -log_likelihood(&t)
        },
        &phi,
        &h,
    );
    match inverse_spd(&info) {
        Some(cov) => (0..theta.len())
            .map(|i| {
                Some(cov[i][i])
                    .filter(|v| *v > 0.0 && v.is_finite())
                    .map(|v| theta[i] * v.sqrt())
            })
            .collect(),
        None => vec![None; theta.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64]) -> f64 {
        x.windows(2)
            .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
            .sum()
    }

    #[test]
    fn finds_the_rosenbrock_minimum_in_2_and_4_dimensions() {
        for x0 in [vec![-1.2, 1.0], vec![-1.2, 1.0, -1.2, 1.0], vec![3.0, -2.0, 0.5, 2.0]] {
            let m = nelder_mead(rosenbrock, &x0, &NelderMead::default());
            assert!(m.converged, "{x0:?}: {m:?}");
            for xi in &m.x {
                assert!((xi - 1.0).abs() < 1e-6, "{x0:?}: {m:?}");
            }
            assert!(m.value < 1e-12, "{m:?}");
        }
    }

    #[test]
    fn minimizes_a_shifted_ill_conditioned_quadratic_and_himmelblau() {
        // Minimum at (3, -1, 0.5) with curvatures 1, 100, 1e4.
        let q = |x: &[f64]| (x[0] - 3.0).powi(2) + 100.0 * (x[1] + 1.0).powi(2) + 1e4 * (x[2] - 0.5).powi(2);
        let m = nelder_mead(q, &[0.0, 0.0, 0.0], &NelderMead::default());
        assert!(m.converged);
        assert!((m.x[0] - 3.0).abs() < 1e-6 && (m.x[1] + 1.0).abs() < 1e-7 && (m.x[2] - 0.5).abs() < 1e-8);
        // Himmelblau has four minima of value 0; from (0, 0) the simplex reaches (3, 2).
        let h = |x: &[f64]| (x[0] * x[0] + x[1] - 11.0).powi(2) + (x[0] + x[1] * x[1] - 7.0).powi(2);
        let m = nelder_mead(h, &[0.0, 0.0], &NelderMead::default());
        assert!(m.value < 1e-14, "{m:?}");
        assert!((m.x[0] - 3.0).abs() < 1e-6 && (m.x[1] - 2.0).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn nan_regions_are_avoided_and_the_budget_is_reported() {
        // Undefined for x <= 0 (like a log-likelihood outside the parameter space).
        let f = |x: &[f64]| if x[0] <= 0.0 { f64::NAN } else { x[0] - x[0].ln() };
        let m = nelder_mead(f, &[0.3], &NelderMead::default());
        assert!(m.converged && (m.x[0] - 1.0).abs() < 1e-6, "{m:?}");
        let opts = NelderMead {
            max_evals: 30,
            ..NelderMead::default()
        };
        let m = nelder_mead(rosenbrock, &[-1.2, 1.0], &opts);
        assert!(!m.converged);
        assert!(m.evals <= 31, "{m:?}");
    }

    #[test]
    fn newton_polish_converges_quadratically_from_near_a_minimum() {
        // Rosenbrock from (0.9, 0.8): a handful of Newton steps reach (1, 1).
        let m = newton_polish(rosenbrock, &[0.9, 0.8], 1e-4, 1e-10, 50);
        assert!(m.converged, "{m:?}");
        assert!((m.x[0] - 1.0).abs() < 1e-7 && (m.x[1] - 1.0).abs() < 1e-7, "{m:?}");
        assert!(m.evals < 300, "{m:?}");
        // A negative-definite start (a saddle region) is damped, not followed uphill.
        let f = |x: &[f64]| x[0].powi(4) - x[0].powi(2) + (x[1] - 2.0).powi(2);
        let m = newton_polish(f, &[0.1, 0.0], 1e-4, 1e-10, 100);
        assert!(m.converged, "{m:?}");
        assert!(
            ((m.x[0].abs() - 0.5f64.sqrt()).abs()) < 1e-6 && (m.x[1] - 2.0).abs() < 1e-6,
            "{m:?}"
        );
    }

    #[test]
    fn hessian_of_a_known_function() {
        // f = x² y + 3 y³ + e^x at (1, 2): fxx = 2y + e = 6.71828.., fxy = 2x = 2, fyy = 18 y = 36.
        let f = |v: &[f64]| v[0] * v[0] * v[1] + 3.0 * v[1].powi(3) + v[0].exp();
        let h = hessian(f, &[1.0, 2.0], &[1e-4, 1e-4]);
        assert!((h[0][0] - (4.0 + 1f64.exp())).abs() < 1e-5, "{h:?}");
        assert!((h[0][1] - 2.0).abs() < 1e-5 && (h[1][0] - 2.0).abs() < 1e-5);
        assert!((h[1][1] - 36.0).abs() < 1e-5);
    }

    #[test]
    fn spd_inverse_and_standard_errors() {
        let m = vec![vec![4.0, 2.0], vec![2.0, 3.0]];
        let inv = inverse_spd(&m).unwrap();
        // det = 8: inverse = [[3, -2], [-2, 4]] / 8.
        let want = [[0.375, -0.25], [-0.25, 0.5]];
        for i in 0..2 {
            for j in 0..2 {
                assert!((inv[i][j] - want[i][j]).abs() < 1e-15);
            }
        }
        assert!(inverse_spd(&[vec![1.0, 2.0], vec![2.0, 1.0]]).is_none());
        // Normal sample of n = 50 with known variance 4: log L(μ) = -Σ(xᵢ-μ)²/8 + c has
        // information n/4, so se(μ̂) = 2/√50.
        let xs: Vec<f64> = (0..50).map(|i| 4.0 + (i as f64 * 0.37).sin() * 3.0).collect();
        let mean = xs.iter().sum::<f64>() / 50.0;
        let ll = |t: &[f64]| -xs.iter().map(|x| (x - t[0]).powi(2)).sum::<f64>() / 8.0;
        let se = standard_errors(ll, &[mean]);
        assert!((se[0].unwrap() - 2.0 / 50f64.sqrt()).abs() < 1e-6, "{se:?}");
        // Exponential rate λ̂ = 1/mean, information n/λ², se = λ̂/√n.
        let ts = [0.5, 1.5, 2.0, 0.25, 0.75];
        let lam = 5.0 / ts.iter().sum::<f64>();
        let ll = |t: &[f64]| ts.iter().map(|x| t[0].ln() - t[0] * x).sum::<f64>();
        let se = standard_errors(ll, &[lam]);
        assert!((se[0].unwrap() - lam / 5f64.sqrt()).abs() < 1e-6, "{se:?}");
        // A flat direction has no standard error.
        assert_eq!(
            standard_errors(|t: &[f64]| -(t[0] - 1.0).powi(2), &[1.0, 2.0]),
            [None, None]
        );
    }
}
