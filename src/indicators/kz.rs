//! Kazakhstan's air-quality practice (Kazhydromet bulletins, Roshydromet lineage, DOMAIN.md §3):
//! multiples of the ПДК (maximum permissible concentrations), exceedance counts, СИ (standard
//! index), НП (largest repeatability), ИЗА₅ (air pollution index) and the level of pollution.
//! Pure functions over concentrations in µg/m³ (the gateway's canonical unit).

/// One substance's norms: ПДК м.р. (one-off, 20–30 min) and с.с. (daily mean) in mg/m³, and its
/// hazard class (1–4), which sets ИЗА's exponent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pdk {
    /// The catalog metric: `pm2_5`, `no2`, ...
    pub metric: &'static str,
    pub one_off_mg: f64,
    /// None where no daily norm exists (H2S).
    pub daily_mg: Option<f64>,
    pub hazard_class: u8,
}

/// The default norms, mg/m³ (DOMAIN.md §3: to verify against order ҚР ДСМ-70 of 2 Aug 2022 and keep
/// in config; Kazhydromet's own calculation confirms CO м.р. = 5 mg/m³). PM has no hazard class in
/// the table; it is taken as class 3 (exponent 1.0), as suspended particles are in the Roshydromet
/// method (РД 52.04.186-89).
pub const DEFAULT_PDK: &[Pdk] = &[
    Pdk {
        metric: "pm2_5",
        one_off_mg: 0.16,
        daily_mg: Some(0.035),
        hazard_class: 3,
    },
    Pdk {
        metric: "pm10",
        one_off_mg: 0.3,
        daily_mg: Some(0.06),
        hazard_class: 3,
    },
    Pdk {
        metric: "no2",
        one_off_mg: 0.2,
        daily_mg: Some(0.1),
        hazard_class: 3,
    },
    Pdk {
        metric: "so2",
        one_off_mg: 0.5,
        daily_mg: Some(0.05),
        hazard_class: 3,
    },
    Pdk {
        metric: "co",
        one_off_mg: 5.0,
        daily_mg: Some(3.0),
        hazard_class: 4,
    },
    Pdk {
        metric: "o3",
        one_off_mg: 0.16,
        daily_mg: Some(0.1),
        hazard_class: 1,
    },
    Pdk {
        metric: "h2s",
        one_off_mg: 0.008,
        daily_mg: None,
        hazard_class: 2,
    },
];

/// The norms of a metric, from `table`.
pub fn pdk<'a>(table: &'a [Pdk], metric: &str) -> Option<&'a Pdk> {
    table.iter().find(|p| p.metric == metric)
}

/// Multiple of the ПДК: `c` in µg/m³ over a norm in mg/m³.
pub fn multiple(c_ugm3: f64, norm_mg: f64) -> f64 {
    c_ugm3 / 1000.0 / norm_mg
}

/// How many one-off values exceed 1, 5, 10 and 20 ПДК м.р. (bulletins count the first three and
/// call above 20 "high and extremely high").
pub fn exceedances(values_ugm3: &[f64], one_off_mg: f64) -> [u32; 4] {
    let mut out = [0u32; 4];
    for &c in values_ugm3 {
        let m = multiple(c, one_off_mg);
        for (slot, limit) in out.iter_mut().zip([1.0, 5.0, 10.0, 20.0]) {
            if m > limit {
                *slot += 1;
            }
        }
    }
    out
}

/// СИ: the largest one-off concentration over ПДК м.р. None without values.
pub fn si(values_ugm3: &[f64], one_off_mg: f64) -> Option<f64> {
    values_ugm3
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))))
        .map(|c| multiple(c, one_off_mg))
}

/// НП: the share, in %, of one-off samples above ПДК м.р. (for one substance; the period's НП is
/// the largest over substances and posts). None without values.
pub fn np(values_ugm3: &[f64], one_off_mg: f64) -> Option<f64> {
    if values_ugm3.is_empty() {
        return None;
    }
    let above = values_ugm3
        .iter()
        .filter(|&&c| multiple(c, one_off_mg) > 1.0)
        .count();
    Some(100.0 * above as f64 / values_ugm3.len() as f64)
}

/// ИЗА's exponent by hazard class: 1.7, 1.3, 1.0, 0.9 for classes 1–4.
pub fn iza_exponent(hazard_class: u8) -> f64 {
    match hazard_class {
        1 => 1.7,
        2 => 1.3,
        4 => 0.9,
        _ => 1.0,
    }
}

/// ИЗА₅: the sum of the five largest `I_i = (mean_i / ПДК с.с._i)^C_i` over substances given as
/// (mean µg/m³, ПДК с.с. mg/m³, hazard class).
pub fn iza5(substances: &[(f64, f64, u8)]) -> f64 {
    let mut terms: Vec<f64> = substances
        .iter()
        .map(|&(mean, daily_mg, class)| multiple(mean, daily_mg).powf(iza_exponent(class)))
        .collect();
    terms.sort_by(|a, b| b.total_cmp(a));
    terms.iter().take(5).sum()
}

/// The level of pollution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Low,
    Elevated,
    High,
    VeryHigh,
}

impl Level {
    pub fn key(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Elevated => "elevated",
            Level::High => "high",
            Level::VeryHigh => "very_high",
        }
    }

    /// By СИ: ≤ 1 low, < 5 elevated, ≤ 10 high, > 10 very high (the table's gap between 1 and 2
    /// closed as DOMAIN.md says).
    pub fn by_si(si: f64) -> Level {
        if si <= 1.0 {
            Level::Low
        } else if si < 5.0 {
            Level::Elevated
        } else if si <= 10.0 {
            Level::High
        } else {
            Level::VeryHigh
        }
    }

    /// By НП, %: 0 low, below 20 elevated, below 50 high, 50 and more very high.
    pub fn by_np(np: f64) -> Level {
        if np <= 0.0 {
            Level::Low
        } else if np < 20.0 {
            Level::Elevated
        } else if np < 50.0 {
            Level::High
        } else {
            Level::VeryHigh
        }
    }

    /// By ИЗА₅: below 5 low, below 7 elevated, below 14 high, 14 and more very high.
    pub fn by_iza(iza: f64) -> Level {
        if iza < 5.0 {
            Level::Low
        } else if iza < 7.0 {
            Level::Elevated
        } else if iza < 14.0 {
            Level::High
        } else {
            Level::VeryHigh
        }
    }

    /// Where СИ and НП disagree, the higher grade.
    pub fn by_si_np(si: f64, np: f64) -> Level {
        Level::by_si(si).max(Level::by_np(np))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiples_and_exceedances() {
        // 87.5 µg/m³ PM2.5 daily mean = 0.0875 mg/m³ / 0.035 = 2.5 ПДК с.с.
        assert!((multiple(87.5, 0.035) - 2.5).abs() < 1e-12);
        // One-off PM2.5 against 0.16 mg/m³: 100 → 0.625, 200 → 1.25, 900 → 5.625, 1700 → 10.625,
        // 3300 → 20.625 ПДК: above 1: 4, above 5: 3, above 10: 2, above 20: 1.
        let v = [100.0, 200.0, 900.0, 1700.0, 3300.0];
        assert_eq!(exceedances(&v, 0.16), [4, 3, 2, 1]);
        // Exactly 1 ПДК is not above it.
        assert_eq!(exceedances(&[160.0], 0.16), [0, 0, 0, 0]);
    }

    #[test]
    fn si_and_np_by_hand() {
        // NO2 one-off samples, ПДК м.р. 0.2 mg/m³ = 200 µg/m³: max 700 → СИ 3.5; 2 of 8 above 200
        // → НП 25 %.
        let v = [50.0, 120.0, 180.0, 200.0, 250.0, 700.0, 90.0, 10.0];
        assert!((si(&v, 0.2).expect("si") - 3.5).abs() < 1e-12);
        assert_eq!(np(&v, 0.2), Some(25.0));
        assert_eq!(si(&[], 0.2), None);
        assert_eq!(np(&[], 0.2), None);
        // СИ 3.5 is elevated, НП 25 % high: the higher grade, high.
        assert_eq!(Level::by_si_np(3.5, 25.0), Level::High);
    }

    #[test]
    fn iza5_by_hand() {
        // Means (µg/m³) over ПДК с.с. (mg/m³), exponent by class:
        //   PM2.5 70 / 0.035 = 2.0, class 3 → 2.0^1.0 = 2.0
        //   NO2 150 / 0.1 = 1.5, class 3 → 1.5
        //   O3 50 / 0.1 = 0.5, class 1 → 0.5^1.7 = 0.30779 (the smallest of six: left out)
        //   CO 1500 / 3.0 = 0.5, class 4 → 0.5^0.9 = 0.53589
        //   SO2 100 / 0.05 = 2.0, class 3 → 2.0
        //   PM10 30 / 0.06 = 0.5, class 3 → 0.5
        // ИЗА₅ = 2.0 + 2.0 + 1.5 + 0.53589 + 0.5 = 6.53589 → elevated (5 ≤ ИЗА < 7)
        let s = [
            (70.0, 0.035, 3),
            (150.0, 0.1, 3),
            (50.0, 0.1, 1),
            (1500.0, 3.0, 4),
            (100.0, 0.05, 3),
            (30.0, 0.06, 3),
        ];
        let iza = iza5(&s);
        assert!(
            (iza - (2.0 + 2.0 + 1.5 + 0.5f64.powf(0.9) + 0.5)).abs() < 1e-12,
            "{iza}"
        );
        assert!((iza - 6.53589).abs() < 1e-4);
        assert_eq!(Level::by_iza(iza), Level::Elevated);
    }

    #[test]
    fn levels_at_their_edges() {
        assert_eq!(Level::by_si(1.0), Level::Low);
        assert_eq!(Level::by_si(1.5), Level::Elevated);
        assert_eq!(Level::by_si(5.0), Level::High);
        assert_eq!(Level::by_si(10.0), Level::High);
        assert_eq!(Level::by_si(10.01), Level::VeryHigh);
        assert_eq!(Level::by_np(0.0), Level::Low);
        assert_eq!(Level::by_np(19.9), Level::Elevated);
        assert_eq!(Level::by_np(20.0), Level::High);
        assert_eq!(Level::by_np(50.0), Level::VeryHigh);
        assert_eq!(Level::by_iza(4.99), Level::Low);
        assert_eq!(Level::by_iza(7.0), Level::High);
        assert_eq!(Level::by_iza(14.0), Level::VeryHigh);
        assert_eq!(pdk(DEFAULT_PDK, "co").map(|p| p.one_off_mg), Some(5.0));
    }
}
