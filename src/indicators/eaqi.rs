//! The European Air Quality Index (EEA, 2024 revision): hourly concentrations in µg/m³ against
//! band upper bounds (inclusive); the index is the worst band over the pollutants available.

/// The six bands, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    Good,
    Fair,
    Moderate,
    Poor,
    VeryPoor,
    ExtremelyPoor,
}

impl Band {
    pub fn key(self) -> &'static str {
        match self {
            Band::Good => "good",
            Band::Fair => "fair",
            Band::Moderate => "moderate",
            Band::Poor => "poor",
            Band::VeryPoor => "very_poor",
            Band::ExtremelyPoor => "extremely_poor",
        }
    }
}

/// Upper bounds (inclusive) of good, fair, moderate, poor, very poor; above the last: extremely
/// poor. Source: EEA European Air Quality Index, 2024 revision (DOMAIN.md §3).
pub const BOUNDS: &[(&str, [f64; 5])] = &[
    ("pm2_5", [5.0, 15.0, 50.0, 90.0, 140.0]),
    ("pm10", [15.0, 45.0, 120.0, 195.0, 270.0]),
    ("no2", [10.0, 25.0, 60.0, 100.0, 150.0]),
    ("o3", [60.0, 100.0, 120.0, 160.0, 180.0]),
    ("so2", [20.0, 40.0, 125.0, 190.0, 275.0]),
];

/// The band of one pollutant's hourly concentration; None for a metric the index does not use,
/// or a value that is negative or not a number.
pub fn band(metric: &str, c_ugm3: f64) -> Option<Band> {
    if !c_ugm3.is_finite() || c_ugm3 < 0.0 {
        return None;
    }
    let (_, b) = BOUNDS.iter().find(|(m, _)| *m == metric)?;
    let bands = [
        Band::Good,
        Band::Fair,
        Band::Moderate,
        Band::Poor,
        Band::VeryPoor,
    ];
    Some(
        b.iter()
            .zip(bands)
            .find(|(upper, _)| c_ugm3 <= **upper)
            .map_or(Band::ExtremelyPoor, |(_, band)| band),
    )
}

/// The index: the worst band over the pollutants given, with the pollutant that set it.
pub fn index<'a>(values: &[(&'a str, f64)]) -> Option<(&'a str, Band)> {
    values
        .iter()
        .filter_map(|&(m, c)| band(m, c).map(|b| (m, b)))
        .max_by_key(|&(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(band("pm2_5", 5.0), Some(Band::Good));
        assert_eq!(band("pm2_5", 5.01), Some(Band::Fair));
        assert_eq!(band("pm2_5", 140.0), Some(Band::VeryPoor));
        assert_eq!(band("pm2_5", 140.1), Some(Band::ExtremelyPoor));
        assert_eq!(band("o3", 100.0), Some(Band::Fair));
        assert_eq!(band("so2", 190.0), Some(Band::Poor));
        assert_eq!(band("co", 1.0), None);
        assert_eq!(band("pm10", -1.0), None);
    }

    #[test]
    fn the_index_is_the_worst_band() {
        // PM2.5 12 → fair, NO2 70 → poor (60 < 70 ≤ 100), O3 50 → good: poor, set by NO2.
        let v = [
            ("pm2_5", 12.0),
            ("no2", 70.0),
            ("o3", 50.0),
            ("temperature", 3.0),
        ];
        assert_eq!(index(&v), Some(("no2", Band::Poor)));
        assert_eq!(index(&[("temperature", 3.0)]), None);
    }
}
