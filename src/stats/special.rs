//! Special functions for the customer-lifetime models: log-gamma, log-beta and a numerically
//! safe `log(exp(a) + exp(b))`.

use std::f64::consts::PI;

/// Lanczos approximation, g = 607/128, 15 terms (Godfrey's coefficients; relative error of
/// `Γ` below 1e-15 on the positive axis).
const LANCZOS_G: f64 = 607.0 / 128.0;
const LANCZOS: [f64; 15] = [
    0.999_999_999_999_997_1,
    57.156_235_665_862_92,
    -59.597_960_355_475_49,
    14.136_097_974_741_747,
    -0.491_913_816_097_620_2,
    0.339_946_499_848_118_9e-4,
    0.465_236_289_270_485_8e-4,
    -0.983_744_753_048_795_6e-4,
    0.158_088_703_224_912_5e-3,
    -0.210_264_441_724_104_9e-3,
    0.217_439_618_115_212_6e-3,
    -0.164_318_106_536_763_9e-3,
    0.844_182_239_838_527_4e-4,
    -0.261_908_384_015_814_1e-4,
    0.368_991_826_595_316_2e-5,
];

/// `ln Γ(x)` for `x > 0` (NaN otherwise). Absolute error about 1e-15 × max(1, |ln Γ(x)|).
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx); both sides positive on (0, 1/2).
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = LANCZOS[0];
    for (k, c) in LANCZOS.iter().enumerate().skip(1) {
        sum += c / (x + k as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)` for `a, b > 0`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// `ln(e^a + e^b)` without overflow; `-inf` terms are fine.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1.0)
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        // Γ(n) = (n - 1)!
        let mut fact = 1.0_f64;
        for n in 1..30 {
            assert!(close(ln_gamma(n as f64), fact.ln(), 1e-14), "n = {n}");
            fact *= n as f64;
        }
        // Γ(1/2) = √π, Γ(5/2) = 3√π / 4.
        assert!(close(ln_gamma(0.5), PI.sqrt().ln(), 1e-14));
        assert!(close(ln_gamma(2.5), (0.75 * PI.sqrt()).ln(), 1e-14));
        // Values from mpmath.loggamma (40 digits).
        assert!(close(ln_gamma(0.243), 1.3180435846996698, 1e-14));
        assert!(close(ln_gamma(1e-8), 18.420_680_738_180_21, 1e-14));
        assert!(close(ln_gamma(1000.5), 5_908.674_175_848_678, 1e-14));
        assert!(close(ln_gamma(1e6), 12815504.569147612, 1e-14));
        assert!(ln_gamma(0.0).is_nan() && ln_gamma(-1.5).is_nan());
    }

    #[test]
    fn ln_beta_and_log_add_exp() {
        // B(2, 3) = 1/12, B(0.5, 0.5) = π.
        assert!(close(ln_beta(2.0, 3.0), (1.0_f64 / 12.0).ln(), 1e-14));
        assert!(close(ln_beta(0.5, 0.5), PI.ln(), 1e-14));
        assert!(close(log_add_exp(0.0, 0.0), 2.0_f64.ln(), 1e-15));
        assert!(close(log_add_exp(1000.0, 1000.0), 1000.0 + 2.0_f64.ln(), 1e-15));
        assert_eq!(log_add_exp(-5.0, f64::NEG_INFINITY), -5.0);
        assert_eq!(log_add_exp(f64::NEG_INFINITY, f64::NEG_INFINITY), f64::NEG_INFINITY);
    }
}
