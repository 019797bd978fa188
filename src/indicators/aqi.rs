//! The US EPA Air Quality Index (technical assistance document of May 2024, in force 6 May 2024),
//! with the pre-2024 PM2.5 table selectable, and the NowCast for hourly PM. Pure: concentrations
//! in, indices out; each table is data with its source (DOMAIN.md §3).
//!
//! `I = (I_hi − I_lo) / (C_hi − C_lo) × (C − C_lo) + I_lo`, after truncating C to the pollutant's
//! resolution; the index is rounded to an integer. The overall AQI is the largest sub-index.

/// What an AQI sub-index is computed from: a pollutant at an averaging time, in the units of the
/// EPA tables (µg/m³ for PM, ppm for O3 and CO, ppb for SO2 and NO2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pollutant {
    /// PM2.5, 24-hour mean (or NowCast), µg/m³.
    Pm25,
    /// PM10, 24-hour mean (or NowCast), µg/m³.
    Pm10,
    /// Ozone, 8-hour mean, ppm (the table stops at 0.200 ppm: above it the 1-hour value rules).
    O3_8h,
    /// Ozone, 1-hour mean, ppm (defined from AQI 101 up).
    O3_1h,
    /// Carbon monoxide, 8-hour mean, ppm.
    Co8h,
    /// Sulphur dioxide, 1-hour mean, ppb (up to AQI 200; above it the 24-hour mean rules).
    So2_1h,
    /// Sulphur dioxide, 24-hour mean, ppb (AQI 201 and up).
    So2_24h,
    /// Nitrogen dioxide, 1-hour mean, ppb.
    No2_1h,
}

impl Pollutant {
    /// Stable key for tags and JSON: `pm2_5`, `o3_8h`, ...
    pub fn key(self) -> &'static str {
        match self {
            Pollutant::Pm25 => "pm2_5",
            Pollutant::Pm10 => "pm10",
            Pollutant::O3_8h => "o3_8h",
            Pollutant::O3_1h => "o3_1h",
            Pollutant::Co8h => "co_8h",
            Pollutant::So2_1h => "so2_1h",
            Pollutant::So2_24h => "so2_24h",
            Pollutant::No2_1h => "no2_1h",
        }
    }

    /// The resolution the concentration is truncated to before the equation.
    pub fn resolution(self) -> f64 {
        match self {
            Pollutant::Pm25 => 0.1,
            Pollutant::Pm10 => 1.0,
            Pollutant::O3_8h | Pollutant::O3_1h => 0.001,
            Pollutant::Co8h => 0.1,
            Pollutant::So2_1h | Pollutant::So2_24h | Pollutant::No2_1h => 1.0,
        }
    }
}

/// Which PM2.5 breakpoints to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pm25Table {
    /// EPA 2024 (in force 6 May 2024): Good ends at 9.0 µg/m³.
    #[default]
    Epa2024,
    /// The table before 2024 (Good ends at 12.0), for comparison with older reports.
    Pre2024,
}

/// One row of a table: concentrations C_lo..=C_hi map to indices I_lo..=I_hi.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakpoint {
    pub c_lo: f64,
    pub c_hi: f64,
    pub i_lo: u16,
    pub i_hi: u16,
}

const fn bp(c_lo: f64, c_hi: f64, i_lo: u16, i_hi: u16) -> Breakpoint {
    Breakpoint {
        c_lo,
        c_hi,
        i_lo,
        i_hi,
    }
}

/// Source: EPA, Technical Assistance Document for the Reporting of Daily Air Quality — the AQI,
/// EPA-454/B-24-002, May 2024, table 6 (DOMAIN.md §3).
pub const PM25_2024: &[Breakpoint] = &[
    bp(0.0, 9.0, 0, 50),
    bp(9.1, 35.4, 51, 100),
    bp(35.5, 55.4, 101, 150),
    bp(55.5, 125.4, 151, 200),
    bp(125.5, 225.4, 201, 300),
    bp(225.5, 325.4, 301, 500),
];
/// Source: EPA-454/B-18-007 (2018) table 5, the PM2.5 rows in force until 5 May 2024.
pub const PM25_PRE2024: &[Breakpoint] = &[
    bp(0.0, 12.0, 0, 50),
    bp(12.1, 35.4, 51, 100),
    bp(35.5, 55.4, 101, 150),
    bp(55.5, 150.4, 151, 200),
    bp(150.5, 250.4, 201, 300),
    bp(250.5, 350.4, 301, 400),
    bp(350.5, 500.4, 401, 500),
];
/// EPA-454/B-24-002 table 6.
pub const PM10: &[Breakpoint] = &[
    bp(0.0, 54.0, 0, 50),
    bp(55.0, 154.0, 51, 100),
    bp(155.0, 254.0, 101, 150),
    bp(255.0, 354.0, 151, 200),
    bp(355.0, 424.0, 201, 300),
    bp(425.0, 604.0, 301, 500),
];
pub const O3_8H: &[Breakpoint] = &[
    bp(0.000, 0.054, 0, 50),
    bp(0.055, 0.070, 51, 100),
    bp(0.071, 0.085, 101, 150),
    bp(0.086, 0.105, 151, 200),
    bp(0.106, 0.200, 201, 300),
];
pub const O3_1H: &[Breakpoint] = &[
    bp(0.125, 0.164, 101, 150),
    bp(0.165, 0.204, 151, 200),
    bp(0.205, 0.404, 201, 300),
    bp(0.405, 0.604, 301, 500),
];
pub const CO_8H: &[Breakpoint] = &[
    bp(0.0, 4.4, 0, 50),
    bp(4.5, 9.4, 51, 100),
    bp(9.5, 12.4, 101, 150),
    bp(12.5, 15.4, 151, 200),
    bp(15.5, 30.4, 201, 300),
    bp(30.5, 50.4, 301, 500),
];
pub const SO2_1H: &[Breakpoint] = &[
    bp(0.0, 35.0, 0, 50),
    bp(36.0, 75.0, 51, 100),
    bp(76.0, 185.0, 101, 150),
    bp(186.0, 304.0, 151, 200),
];
pub const SO2_24H: &[Breakpoint] = &[bp(305.0, 604.0, 201, 300), bp(605.0, 1004.0, 301, 500)];
pub const NO2_1H: &[Breakpoint] = &[
    bp(0.0, 53.0, 0, 50),
    bp(54.0, 100.0, 51, 100),
    bp(101.0, 360.0, 101, 150),
    bp(361.0, 649.0, 151, 200),
    bp(650.0, 1249.0, 201, 300),
    bp(1250.0, 2049.0, 301, 500),
];

/// The table of a pollutant.
pub fn table(p: Pollutant, pm25: Pm25Table) -> &'static [Breakpoint] {
    match p {
        Pollutant::Pm25 => match pm25 {
            Pm25Table::Epa2024 => PM25_2024,
            Pm25Table::Pre2024 => PM25_PRE2024,
        },
        Pollutant::Pm10 => PM10,
        Pollutant::O3_8h => O3_8H,
        Pollutant::O3_1h => O3_1H,
        Pollutant::Co8h => CO_8H,
        Pollutant::So2_1h => SO2_1H,
        Pollutant::So2_24h => SO2_24H,
        Pollutant::No2_1h => NO2_1H,
    }
}

/// A sub-index, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubIndex {
    /// 0..=500.
    Index(u16),
    /// Above the table's top (AQI > 500): "beyond the AQI".
    Beyond,
    /// The concentration lies outside what this averaging time defines (O3 8 h above 0.200 ppm or
    /// 1 h below 0.125 ppm, SO2 1 h above 304 ppb or 24 h below 305 ppb): use the other one.
    Undefined,
    /// Negative or not a number.
    Invalid,
}

/// Truncates `c` to `step` (0.1, 1, 0.001), robust to binary fractions (9.1 stays 9.1).
pub fn truncate(c: f64, step: f64) -> f64 {
    let n = (c / step * (1.0 + 1e-12)).floor();
    // Back to the decimal grid: divide by the inverse step where it is a whole number.
    let inv = (1.0 / step).round();
    if (inv * step - 1.0).abs() < 1e-12 && inv >= 1.0 {
        n / inv
    } else {
        n * step
    }
}

/// The sub-index of concentration `c` (in the table's units).
pub fn sub_index(p: Pollutant, c: f64, pm25: Pm25Table) -> SubIndex {
    if !c.is_finite() || c < 0.0 {
        return SubIndex::Invalid;
    }
    let t = table(p, pm25);
    let c = truncate(c, p.resolution());
    let eps = p.resolution() * 1e-6;
    for b in t {
        if c >= b.c_lo - eps && c <= b.c_hi + eps {
            let i =
                f64::from(b.i_hi - b.i_lo) / (b.c_hi - b.c_lo) * (c - b.c_lo) + f64::from(b.i_lo);
            return SubIndex::Index(i.round().clamp(f64::from(b.i_lo), f64::from(b.i_hi)) as u16);
        }
    }
    let top = t.last().map_or(0.0, |b| b.c_hi);
    let bottom = t.first().map_or(0.0, |b| b.c_lo);
    match p {
        Pollutant::O3_8h if c > top => SubIndex::Undefined,
        Pollutant::O3_1h if c < bottom => SubIndex::Undefined,
        Pollutant::So2_1h if c > top => SubIndex::Undefined,
        Pollutant::So2_24h if c < bottom => SubIndex::Undefined,
        _ if c > top => SubIndex::Beyond,
        // Between two rows cannot happen after truncation; be explicit anyway.
        _ => SubIndex::Undefined,
    }
}

/// The AQI categories and their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Good,
    Moderate,
    UnhealthyForSensitiveGroups,
    Unhealthy,
    VeryUnhealthy,
    Hazardous,
    BeyondAqi,
}

impl Category {
    pub fn of(s: SubIndex) -> Option<Category> {
        Some(match s {
            SubIndex::Index(i) => match i {
                0..=50 => Category::Good,
                51..=100 => Category::Moderate,
                101..=150 => Category::UnhealthyForSensitiveGroups,
                151..=200 => Category::Unhealthy,
                201..=300 => Category::VeryUnhealthy,
                _ => Category::Hazardous,
            },
            SubIndex::Beyond => Category::BeyondAqi,
            SubIndex::Undefined | SubIndex::Invalid => return None,
        })
    }

    pub fn key(self) -> &'static str {
        match self {
            Category::Good => "good",
            Category::Moderate => "moderate",
            Category::UnhealthyForSensitiveGroups => "unhealthy_for_sensitive_groups",
            Category::Unhealthy => "unhealthy",
            Category::VeryUnhealthy => "very_unhealthy",
            Category::Hazardous => "hazardous",
            Category::BeyondAqi => "beyond_aqi",
        }
    }
}

/// The overall AQI: the largest sub-index and its (dominant) pollutant. "Beyond" outranks every
/// index; undefined and invalid sub-indices are left out. None when nothing is defined.
pub fn overall(subs: &[(Pollutant, SubIndex)]) -> Option<(Pollutant, SubIndex)> {
    let rank = |s: SubIndex| match s {
        SubIndex::Index(i) => Some(u32::from(i)),
        SubIndex::Beyond => Some(u32::MAX),
        SubIndex::Undefined | SubIndex::Invalid => None,
    };
    subs.iter()
        .filter_map(|&(p, s)| rank(s).map(|r| (r, p, s)))
        .max_by_key(|&(r, p, _)| (r, std::cmp::Reverse(p)))
        .map(|(_, p, s)| (p, s))
}

/// NowCast of the 12 most recent hourly means, newest first (`None`: hour missing), for PM2.5 or
/// PM10: `w* = 1 − (max − min)/max`, `w = max(w*, 0.5)`, `Σ w^(i−1)·c_i / Σ w^(i−1)` over the
/// valid hours, truncated to the pollutant's resolution. None unless 2 of the 3 newest hours exist.
pub fn nowcast(hours: &[Option<f64>; 12], p: Pollutant) -> Option<f64> {
    if hours[..3].iter().filter(|h| h.is_some()).count() < 2 {
        return None;
    }
    let valid: Vec<(usize, f64)> = hours
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.filter(|c| c.is_finite() && *c >= 0.0).map(|c| (i, c)))
        .collect();
    let max = valid.iter().map(|v| v.1).fold(f64::MIN, f64::max);
    let min = valid.iter().map(|v| v.1).fold(f64::MAX, f64::min);
    if max <= 0.0 {
        return Some(0.0);
    }
    let w = (1.0 - (max - min) / max).max(0.5);
    let (mut num, mut den) = (0.0, 0.0);
    for (i, c) in valid {
        let wi = w.powi(i as i32);
        num += wi * c;
        den += wi;
    }
    Some(truncate(num / den, p.resolution()))
}

/// µg/m³ → ppb for a gas at 25 °C and 1 atm (the EPA's reference): ppb = µg/m³ × 24.45 / M.
pub fn ugm3_to_ppb(c: f64, molar_mass: f64) -> f64 {
    c * 24.45 / molar_mass
}

#[cfg(test)]
mod tests {
    use super::*;
    use Pollutant::*;

    fn aqi(p: Pollutant, c: f64) -> SubIndex {
        sub_index(p, c, Pm25Table::Epa2024)
    }

    #[test]
    fn the_published_checks_of_domain_md_section_3() {
        assert_eq!(aqi(Pm25, 9.0), SubIndex::Index(50));
        assert_eq!(aqi(Pm25, 9.1), SubIndex::Index(51));
        // (100 − 51) / (35.4 − 9.1) × (20.0 − 9.1) + 51 = 49 / 26.3 × 10.9 + 51 = 71.31 → 71
        assert_eq!(aqi(Pm25, 20.0), SubIndex::Index(71));
        // 54.9 truncates to 54 (1 µg/m³ resolution): the top of Good.
        assert_eq!(aqi(Pm10, 54.9), SubIndex::Index(50));
        assert_eq!(aqi(Pm10, 55.0), SubIndex::Index(51));
        assert_eq!(aqi(Co8h, 9.4), SubIndex::Index(100));
        assert_eq!(aqi(O3_8h, 0.054), SubIndex::Index(50));
        assert_eq!(aqi(O3_8h, 0.055), SubIndex::Index(51));
    }

    #[test]
    fn every_row_maps_its_ends_to_its_ends() {
        for p in [Pm25, Pm10, O3_8h, O3_1h, Co8h, So2_1h, So2_24h, No2_1h] {
            for t in [Pm25Table::Epa2024, Pm25Table::Pre2024] {
                for b in table(p, t) {
                    assert_eq!(
                        sub_index(p, b.c_lo, t),
                        SubIndex::Index(b.i_lo),
                        "{p:?} {b:?}"
                    );
                    assert_eq!(
                        sub_index(p, b.c_hi, t),
                        SubIndex::Index(b.i_hi),
                        "{p:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn hand_checked_values_in_each_table() {
        // PM2.5 2024, Unhealthy: (200 − 151)/(125.4 − 55.5) × (100.0 − 55.5) + 151
        //   = 49 / 69.9 × 44.5 + 151 = 31.19 + 151 = 182.19 → 182
        assert_eq!(aqi(Pm25, 100.04), SubIndex::Index(182));
        // The same 100 µg/m³ with the pre-2024 table: (200 − 151)/(150.4 − 55.5) × 44.5 + 151
        //   = 49 / 94.9 × 44.5 + 151 = 22.98 + 151 = 173.98 → 174
        assert_eq!(
            sub_index(Pm25, 100.0, Pm25Table::Pre2024),
            SubIndex::Index(174)
        );
        // Pre-2024 Good ends at 12.0: 12.0 → 50 there, but Moderate in 2024:
        //   (100 − 51)/(35.4 − 9.1) × (12.0 − 9.1) + 51 = 1.8631 × 2.9 + 51 = 56.40 → 56
        assert_eq!(
            sub_index(Pm25, 12.0, Pm25Table::Pre2024),
            SubIndex::Index(50)
        );
        assert_eq!(aqi(Pm25, 12.0), SubIndex::Index(56));
        // NO2 1 h 200 ppb: (150 − 101)/(360 − 101) × (200 − 101) + 101 = 0.18919 × 99 + 101 = 119.73 → 120
        assert_eq!(aqi(No2_1h, 200.0), SubIndex::Index(120));
        // O3 1 h 0.300 ppm: (300 − 201)/(0.404 − 0.205) × (0.300 − 0.205) + 201 = 497.49 × 0.095 + 201
        //   = 47.26 + 201 = 248.26 → 248
        assert_eq!(aqi(O3_1h, 0.3), SubIndex::Index(248));
        // SO2 24 h 500 ppb: (300 − 201)/(604 − 305) × (500 − 305) + 201 = 0.33110 × 195 + 201 = 265.57 → 266
        assert_eq!(aqi(So2_24h, 500.0), SubIndex::Index(266));
    }

    #[test]
    fn outside_the_tables() {
        assert_eq!(aqi(Pm25, 325.5), SubIndex::Beyond);
        assert_eq!(aqi(Pm25, -1.0), SubIndex::Invalid);
        assert_eq!(aqi(Pm25, f64::NAN), SubIndex::Invalid);
        assert_eq!(aqi(O3_8h, 0.201), SubIndex::Undefined);
        assert_eq!(aqi(O3_1h, 0.1), SubIndex::Undefined);
        assert_eq!(aqi(So2_1h, 305.0), SubIndex::Undefined);
        assert_eq!(aqi(So2_24h, 300.0), SubIndex::Undefined);
        assert_eq!(sub_index(Pm25, 500.5, Pm25Table::Pre2024), SubIndex::Beyond);
        assert_eq!(Category::of(SubIndex::Beyond), Some(Category::BeyondAqi));
        assert_eq!(
            Category::of(SubIndex::Index(151)),
            Some(Category::Unhealthy)
        );
    }

    #[test]
    fn the_overall_aqi_is_the_largest_sub_index_with_its_pollutant() {
        let subs = [
            (Pm25, aqi(Pm25, 20.0)),  // 71
            (Pm10, aqi(Pm10, 160.0)), // 101 + 49/99 × 5 = 103.47 → 103
            (O3_8h, aqi(O3_8h, 0.3)), // undefined: left out
            (No2_1h, SubIndex::Invalid),
        ];
        assert_eq!(overall(&subs), Some((Pm10, SubIndex::Index(103))));
        assert_eq!(
            overall(&[(Pm25, SubIndex::Beyond), (Pm10, SubIndex::Index(500))]),
            Some((Pm25, SubIndex::Beyond))
        );
        assert_eq!(overall(&[(O3_8h, SubIndex::Undefined)]), None);
    }

    #[test]
    fn nowcast_by_hand() {
        // c1 = 20, c2 = 10, c3 = 10, the rest missing: max 20, min 10, w* = 1 − 10/20 = 0.5, w = 0.5;
        // (20 + 0.5 × 10 + 0.25 × 10) / (1 + 0.5 + 0.25) = 27.5 / 1.75 = 15.714 → 15.7
        let mut h = [None; 12];
        h[0] = Some(20.0);
        h[1] = Some(10.0);
        h[2] = Some(10.0);
        assert_eq!(nowcast(&h, Pm25), Some(15.7));
        // A steady 8.0 for 12 hours: w = 1, the plain mean.
        assert_eq!(nowcast(&[Some(8.0); 12], Pm25), Some(8.0));
        // Fast rise: c1 = 100, c2..c12 = 10: w* = 1 − 90/100 = 0.1 → w = 0.5;
        // Σ w^(i−1) c_i = 100 + 10 × (0.5 + … + 0.5^11) = 100 + 10 × 0.99951 = 109.995;
        // Σ w^(i−1) = 1.99951; 109.995 / 1.99951 = 55.01 → 55.0 (PM2.5), 55 (PM10)
        let mut h = [Some(10.0); 12];
        h[0] = Some(100.0);
        assert_eq!(nowcast(&h, Pm25), Some(55.0));
        assert_eq!(nowcast(&h, Pm10), Some(55.0));
        // Only one of the three newest hours: no NowCast.
        let mut h = [Some(10.0); 12];
        h[0] = None;
        h[1] = None;
        assert_eq!(nowcast(&h, Pm25), None);
        assert_eq!(nowcast(&[Some(0.0); 12], Pm25), Some(0.0));
    }

    #[test]
    fn truncation_keeps_decimal_values_whole() {
        assert_eq!(truncate(9.1, 0.1), 9.1);
        assert_eq!(truncate(9.19, 0.1), 9.1);
        assert_eq!(truncate(0.055, 0.001), 0.055);
        assert_eq!(truncate(54.9, 1.0), 54.0);
        // 100 µg/m³ of NO2 = 100 × 24.45 / 46.01 = 53.14 ppb.
        assert!((ugm3_to_ppb(100.0, 46.01) - 53.140621).abs() < 1e-6);
    }

    proptest::proptest! {
        #[test]
        fn the_aqi_never_falls_as_the_concentration_rises(a in 0.0f64..1200.0, b in 0.0f64..1200.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            for p in [Pm25, Pm10, No2_1h] {
                for t in [Pm25Table::Epa2024, Pm25Table::Pre2024] {
                    let rank = |s: SubIndex| match s {
                        SubIndex::Index(i) => i32::from(i),
                        SubIndex::Beyond => 10_000,
                        _ => -1,
                    };
                    proptest::prop_assert!(rank(sub_index(p, lo, t)) <= rank(sub_index(p, hi, t)), "{:?} {} {}", p, lo, hi);
                }
            }
        }
    }
}
