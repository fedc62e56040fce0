//! Kaplan-Meier product-limit estimator of a survival function with right censoring, its 95%
//! confidence band by the exponential Greenwood ("log-log") formula, and the median survival
//! time with its confidence interval.
//!
//! Conventions (those of lifelines' `KaplanMeierFitter`, which the tests check against):
//! - at a time `t` with both events and censorings, the events are processed first: a subject
//!   censored at `t` is still at risk at `t`;
//! - `S(t) = Π_{t_i <= t} (1 - d_i / n_i)`;
//! - Greenwood sum `g(t) = Σ_{t_i <= t} d_i / (n_i (n_i - d_i))` (a term with `n_i = d_i` counts 0);
//!   `v = g / (ln S)^2`; the bounds are `exp(-exp(ln(-ln S) ± z·sqrt(v)))`, the lower one with
//!   `+`; `(1, 1)` while `S = 1` and `(0, 0)` once `S = 0`;
//! - a quantile-`q` time is the first step time with a value `<= q` (`None` if never); the
//!   median's CI takes that time on the lower and on the upper curve.

/// The standard normal 97.5% quantile (lifelines' `inv_normal_cdf(0.975)`).
pub const Z_95: f64 = 1.959_963_984_540_054;

/// One step of the estimate: a distinct time at which something was observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub t: f64,
    /// Subjects whose time is `>= t`.
    pub at_risk: u32,
    pub events: u32,
    pub censored: u32,
    /// `S(t)` just after the step.
    pub survival: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// A fitted Kaplan-Meier estimate: one [`Step`] per distinct observed time, ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KaplanMeier {
    pub steps: Vec<Step>,
}

impl KaplanMeier {
    /// Fits the estimate on `(duration, event)` pairs: `event = false` means censored at
    /// `duration`. Pairs with a non-finite duration are ignored.
    pub fn fit(observations: impl IntoIterator<Item = (f64, bool)>) -> KaplanMeier {
        let mut obs: Vec<(f64, bool)> = observations.into_iter().filter(|(t, _)| t.is_finite()).collect();
        obs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut steps = Vec::new();
        let mut at_risk = obs.len();
        let (mut survival, mut greenwood) = (1.0_f64, 0.0_f64);
        let mut i = 0;
        while i < obs.len() {
            let t = obs[i].0;
            let (mut events, mut censored) = (0usize, 0usize);
            while i < obs.len() && obs[i].0 == t {
                if obs[i].1 {
                    events += 1;
                } else {
                    censored += 1;
                }
                i += 1;
            }
            let (n, d) = (at_risk as f64, events as f64);
            if events > 0 {
                survival *= 1.0 - d / n;
                if at_risk > events {
                    greenwood += d / (n * (n - d));
                }
            }
            let (ci_low, ci_high) = log_log_ci(survival, greenwood);
            steps.push(Step {
                t,
                at_risk: at_risk as u32,
                events: events as u32,
                censored: censored as u32,
                survival,
                ci_low,
                ci_high,
            });
            at_risk -= events + censored;
        }
        KaplanMeier { steps }
    }

    /// `S(t)`: 1 before the first step.
    pub fn survival_at(&self, t: f64) -> f64 {
        self.steps
            .iter()
            .take_while(|s| s.t <= t)
            .last()
            .map_or(1.0, |s| s.survival)
    }

    /// The first time at which `S(t) <= 0.5`; `None` if the estimate never gets there.
    pub fn median(&self) -> Option<f64> {
        self.first_at_or_below(0.5, |s| s.survival)
    }

    /// The 95% CI of the median: where the lower and the upper confidence curves first reach
    /// `<= 0.5` (`None` for a curve that never does).
    pub fn median_ci(&self) -> (Option<f64>, Option<f64>) {
        (
            self.first_at_or_below(0.5, |s| s.ci_low),
            self.first_at_or_below(0.5, |s| s.ci_high),
        )
    }

    fn first_at_or_below(&self, q: f64, value: impl Fn(&Step) -> f64) -> Option<f64> {
        self.steps.iter().find(|s| value(s) <= q).map(|s| s.t)
    }
}

/// Exponential Greenwood ("log-log") 95% bounds of `s` given the Greenwood sum `g`.
fn log_log_ci(s: f64, g: f64) -> (f64, f64) {
    if s >= 1.0 {
        return (1.0, 1.0);
    }
    if s <= 0.0 {
        return (0.0, 0.0);
    }
    let ln_s = s.ln();
    let half = Z_95 * g.sqrt() / ln_s.abs();
    let c = (-ln_s).ln();
    ((-(c + half).exp()).exp(), (-(c - half).exp()).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `waltons` data set shipped with lifelines (`lifelines.datasets.load_waltons()`,
    /// lifelines is MIT-licensed, © Cameron Davidson-Pilon): lifespans in days of 163 fruit
    /// flies, (T, E, group) with group 0 = control, 1 = miR-137.
    #[rustfmt::skip]
    const WALTONS: [(f64, u8, u8); 163] = [
        (6.,1,1),(13.,1,1),(13.,1,1),(13.,1,1),(19.,1,1),(19.,1,1),(19.,1,1),(26.,1,1),(26.,1,1),(26.,1,1),
        (26.,1,1),(26.,1,1),(33.,1,1),(33.,1,1),(47.,1,1),(62.,1,1),(62.,1,1),(9.,1,1),(9.,1,1),(9.,1,1),
        (15.,1,1),(15.,1,1),(22.,1,1),(22.,1,1),(22.,1,1),(22.,1,1),(29.,1,1),(29.,1,1),(29.,1,1),(29.,1,1),
        (29.,1,1),(36.,1,1),(36.,1,1),(43.,1,1),(33.,1,0),(54.,1,0),(54.,1,0),(61.,1,0),(61.,1,0),(61.,0,0),
        (61.,1,0),(61.,0,0),(61.,1,0),(61.,1,0),(61.,1,0),(61.,1,0),(61.,1,0),(61.,1,0),(69.,1,0),(69.,1,0),
        (69.,1,0),(69.,1,0),(69.,1,0),(69.,1,0),(69.,0,0),(69.,1,0),(69.,1,0),(69.,1,0),(69.,1,0),(32.,1,0),
        (53.,1,0),(53.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),(68.,1,0),(68.,1,0),(68.,1,0),
        (68.,1,0),(68.,0,0),(68.,1,0),(68.,1,0),(68.,1,0),(68.,1,0),(68.,1,0),(75.,1,0),(17.,1,0),(51.,1,0),
        (51.,1,0),(51.,1,0),(58.,1,0),(58.,1,0),(58.,1,0),(58.,1,0),(66.,1,0),(66.,1,0),(7.,1,0),(7.,0,0),
        (41.,1,0),(41.,1,0),(41.,1,0),(41.,1,0),(41.,1,0),(41.,1,0),(41.,1,0),(48.,1,0),(48.,1,0),(48.,1,0),
        (48.,1,0),(48.,1,0),(48.,1,0),(48.,1,0),(48.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),
        (56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),(56.,1,0),
        (56.,1,0),(56.,1,0),(56.,1,0),(63.,1,0),(63.,1,0),(63.,1,0),(63.,1,0),(63.,1,0),(63.,1,0),(63.,1,0),
        (63.,1,0),(63.,1,0),(69.,1,0),(69.,1,0),(38.,1,0),(38.,1,0),(45.,1,0),(45.,1,0),(45.,1,0),(45.,1,0),
        (45.,1,0),(45.,1,0),(45.,1,0),(45.,1,0),(45.,0,0),(45.,1,0),(53.,1,0),(53.,1,0),(53.,1,0),(53.,1,0),
        (53.,1,0),(60.,1,0),(60.,0,0),(60.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),(60.,1,0),
        (60.,1,0),(60.,1,0),(66.,1,0),
    ];

    /// lifelines 0.30.3, `KaplanMeierFitter().fit(T, E)` on all of waltons: the event table's
    /// (time, at_risk, observed, censored) and `survival_function_`, `confidence_interval_`
    /// (lower, upper) at that time.
    #[rustfmt::skip]
    const WALTONS_EXPECTED: [(f64, u32, u32, u32, f64, f64, f64); 32] = [
        (6.0, 163, 1, 0, 0.9938650306748462, 0.9572536591090658, 0.9991335232818397),
        (7.0, 162, 1, 1, 0.9877300613496934, 0.9518341271773085, 0.9969171244598185),
        (9.0, 160, 3, 0, 0.9692101226993866, 0.9276127862113859, 0.9870680842317412),
        (13.0, 157, 3, 0, 0.9506901840490806, 0.9038208573639959, 0.9750309911698033),
        (15.0, 154, 2, 0, 0.9383435582822091, 0.8884373147604712, 0.9663424251606045),
        (17.0, 152, 1, 0, 0.9321702453987734, 0.880865425857062, 0.961853331840505),
        (19.0, 151, 3, 0, 0.9136503067484664, 0.8585492594417107, 0.9479303549213415),
        (22.0, 148, 4, 0, 0.8889570552147245, 0.8295467319043238, 0.9285426285827516),
        (26.0, 144, 5, 0, 0.8580904907975462, 0.794213194951949, 0.9033358984288105),
        (29.0, 139, 5, 0, 0.8272239263803682, 0.7596693986837444, 0.8773128137072396),
        (32.0, 134, 1, 0, 0.8210506134969329, 0.7528405446867344, 0.8720265451781428),
        (33.0, 133, 3, 0, 0.802530674846626, 0.732496108893635, 0.8560234675720562),
        (36.0, 130, 2, 0, 0.7901840490797547, 0.7190437448285333, 0.8452428813253019),
        (38.0, 128, 2, 0, 0.7778374233128837, 0.7056735521659415, 0.8343794818554625),
        (41.0, 126, 7, 0, 0.7346242331288348, 0.6594637527831473, 0.7957699131274796),
        (43.0, 119, 1, 0, 0.7284509202453994, 0.6529309587834328, 0.7901857111612299),
        (45.0, 118, 9, 1, 0.6728911042944786, 0.5948249410378891, 0.7392432085214612),
        (47.0, 108, 1, 0, 0.6666606311065664, 0.5883709528834424, 0.733466285970835),
        (48.0, 107, 8, 0, 0.6168168456032719, 0.537239074124696, 0.6867652305478503),
        (51.0, 99, 3, 0, 0.5981254260395363, 0.5182839326751614, 0.6690395253022965),
        (53.0, 96, 7, 0, 0.5545121137241534, 0.4744977314228298, 0.6272510669615949),
        (54.0, 89, 2, 0, 0.5420511673483299, 0.46209859210863913, 0.6152039949608703),
        (56.0, 87, 18, 0, 0.4299026499659169, 0.35268900481936244, 0.5046796092328875),
        (58.0, 69, 4, 0, 0.40498075721426935, 0.32891602000689424, 0.4796010641541806),
        (60.0, 65, 15, 1, 0.31152365939559185, 0.24165949355139502, 0.38375862020448953),
        (61.0, 49, 9, 2, 0.2543050280780342, 0.18974727081981202, 0.32368786056366533),
        (62.0, 38, 2, 0, 0.2409205529160324, 0.1777155830422925, 0.30956115978785725),
        (63.0, 36, 9, 0, 0.18069041468702435, 0.12494275883343092, 0.24475909712755606),
        (66.0, 27, 3, 0, 0.16061370194402164, 0.10792857552264644, 0.22263862396419273),
        (68.0, 24, 9, 1, 0.10038356371501352, 0.05924079881407292, 0.15415682218854146),
        (69.0, 14, 12, 1, 0.014340509102144797, 0.0028540777041644733, 0.046183697525073696),
        (75.0, 1, 1, 0, 0.0, 0.0, 0.0),
    ];

    /// lifelines 0.30.3 on the miR-137 group only (no censoring; ends at S = 0): (time,
    /// survival, lower, upper).
    #[rustfmt::skip]
    const MIR137_EXPECTED: [(f64, f64, f64, f64); 13] = [
        (6.0, 0.9705882352941174, 0.8090102101527366, 0.9958039415054204),
        (9.0, 0.8823529411764705, 0.7162692431097136, 0.9541389989020609),
        (13.0, 0.7941176470588234, 0.6161023524633988, 0.8960866061759563),
        (15.0, 0.7352941176470585, 0.5529521886351187, 0.8525042315274494),
        (19.0, 0.6470588235294118, 0.46302827101715777, 0.7818309341328031),
        (22.0, 0.5294117647058821, 0.35106720917424805, 0.6794942260747558),
        (26.0, 0.3823529411764705, 0.22328268987780264, 0.5398367628481453),
        (29.0, 0.23529411764705874, 0.11085714965490273, 0.38603178801659643),
        (33.0, 0.17647058823529407, 0.07162319995288344, 0.3194047053947016),
        (36.0, 0.11764705882352941, 0.03724264898014479, 0.24859392443507625),
        (43.0, 0.08823529411764706, 0.02262430696392682, 0.21105087196798342),
        (47.0, 0.0588235294117647, 0.010526764426069285, 0.17157892776798933),
        (62.0, 0.0, 0.0, 0.0),
    ];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6
    }

    fn check_steps(km: &KaplanMeier, expected: &[(f64, f64, f64, f64)]) {
        assert_eq!(km.steps.len(), expected.len());
        for (s, &(t, sv, lo, hi)) in km.steps.iter().zip(expected) {
            assert_eq!(s.t, t);
            assert!(close(s.survival, sv), "S({t}) = {} vs lifelines {sv}", s.survival);
            assert!(close(s.ci_low, lo), "lower({t}) = {} vs lifelines {lo}", s.ci_low);
            assert!(close(s.ci_high, hi), "upper({t}) = {} vs lifelines {hi}", s.ci_high);
        }
    }

    #[test]
    fn agrees_with_lifelines_on_waltons() {
        let km = KaplanMeier::fit(WALTONS.iter().map(|&(t, e, _)| (t, e == 1)));
        let expected: Vec<_> = WALTONS_EXPECTED
            .iter()
            .map(|&(t, _, _, _, s, lo, hi)| (t, s, lo, hi))
            .collect();
        check_steps(&km, &expected);
        for (s, &(t, n, d, c, ..)) in km.steps.iter().zip(&WALTONS_EXPECTED) {
            assert_eq!((s.at_risk, s.events, s.censored), (n, d, c), "event table at {t}");
        }
        // lifelines: median_survival_time_ = 56.0; median_survival_times(confidence_interval_)
        // = (53.0, 58.0).
        assert_eq!(km.median(), Some(56.0));
        assert_eq!(km.median_ci(), (Some(53.0), Some(58.0)));
        assert_eq!(km.survival_at(0.0), 1.0);
        assert_eq!(km.survival_at(55.9), km.steps[21].survival);
        assert_eq!(km.survival_at(100.0), 0.0);
    }

    #[test]
    fn agrees_with_lifelines_on_the_mir137_group() {
        let km = KaplanMeier::fit(WALTONS.iter().filter(|r| r.2 == 1).map(|&(t, e, _)| (t, e == 1)));
        check_steps(&km, &MIR137_EXPECTED);
        // lifelines: median 26.0, CI (19.0, 29.0).
        assert_eq!(km.median(), Some(26.0));
        assert_eq!(km.median_ci(), (Some(19.0), Some(29.0)));
    }

    #[test]
    fn censoring_at_an_event_time_stays_at_risk_and_open_medians_are_none() {
        // lifelines 0.30.3: T = [1,2,2,3,3,4,5,5], E = [1,0,1,1,0,0,0,1]; median 5.0, median CI
        // (1.0, inf).
        let t = [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0];
        let e = [true, false, true, true, false, false, false, true];
        let km = KaplanMeier::fit(t.into_iter().zip(e));
        check_steps(
            &km,
            &[
                (1.0, 0.8750000000000001, 0.38700001403202483, 0.9813929658789661),
                (2.0, 0.7500000000000001, 0.314807113705519, 0.9308983170906276),
                (3.0, 0.6000000000000001, 0.19549586608499786, 0.8522543457622092),
                (4.0, 0.6000000000000001, 0.19549586608499786, 0.8522543457622092),
                (5.0, 0.30000000000000004, 0.014824295693216118, 0.7087944946479516),
            ],
        );
        let table: Vec<_> = km.steps.iter().map(|s| (s.at_risk, s.events, s.censored)).collect();
        assert_eq!(table, [(8, 1, 0), (7, 1, 1), (5, 1, 1), (3, 0, 1), (2, 1, 1)]);
        assert_eq!(km.median(), Some(5.0));
        assert_eq!(km.median_ci(), (Some(1.0), None));

        // By hand: S = 3/4 after t = 1, then only censorings: the median is never reached.
        let km = KaplanMeier::fit([(1.0, true), (2.0, false), (3.0, false), (4.0, false)]);
        assert_eq!(km.steps.iter().map(|s| s.survival).collect::<Vec<_>>(), [0.75; 4]);
        assert_eq!(km.median(), None);
        assert_eq!(km.median_ci().1, None);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(KaplanMeier::fit([]).steps.is_empty());
        assert_eq!(KaplanMeier::fit([]).median(), None);
        // Only censorings: S stays 1 with a (1, 1) band.
        let km = KaplanMeier::fit([(2.0, false), (f64::NAN, true)]);
        assert_eq!(
            km.steps,
            [Step {
                t: 2.0,
                at_risk: 1,
                events: 0,
                censored: 1,
                survival: 1.0,
                ci_low: 1.0,
                ci_high: 1.0
            }]
        );
        // Everyone fails at once: S = 0 with a (0, 0) band.
        let km = KaplanMeier::fit([(0.0, true), (0.0, true)]);
        assert_eq!(
            (km.steps[0].survival, km.steps[0].ci_low, km.steps[0].ci_high),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(km.median(), Some(0.0));
    }
}
