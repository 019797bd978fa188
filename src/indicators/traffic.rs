//! Traffic indicators from detector data (DOMAIN.md §4): flow, volume-weighted speed, free-flow
//! speed, congestion level, travel time index and level of service. Pure functions.

/// Flow, vehicles per hour: q = N · 3600 / T.
pub fn flow_veh_h(count: f64, interval_s: f64) -> Option<f64> {
    (interval_s > 0.0 && count >= 0.0).then(|| count * 3600.0 / interval_s)
}

/// Volume-weighted mean speed of (vehicles, mean speed km/h) intervals; intervals without
/// vehicles weigh nothing. None when no vehicle passed.
pub fn weighted_speed(intervals: &[(f64, f64)]) -> Option<f64> {
    let (n, nv) = intervals
        .iter()
        .filter(|(n, v)| *n > 0.0 && v.is_finite() && *v >= 0.0)
        .fold((0.0, 0.0), |(n, nv), (c, v)| (n + c, nv + c * v));
    (n > 0.0).then(|| nv / n)
}

/// The free-flow speed learned from night-time interval speeds: their 85th percentile (nearest
/// rank). None without speeds.
pub fn free_flow_speed(night_speeds: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = night_speeds
        .iter()
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (0.85 * v.len() as f64).ceil() as usize;
    v.get(rank.saturating_sub(1)).copied()
}

/// Congestion level, % (TomTom style): 100 × (v_free / v − 1), never below 0.
pub fn congestion_pct(speed: f64, free_flow: f64) -> Option<f64> {
    (speed > 0.0 && free_flow > 0.0).then(|| (100.0 * (free_flow / speed - 1.0)).max(0.0))
}

/// Travel time index: v_free / v, never below 1 (≤ 1.5 good, 1.5–2.5 acceptable, > 2.5 poor).
pub fn travel_time_index(speed: f64, free_flow: f64) -> Option<f64> {
    (speed > 0.0 && free_flow > 0.0).then(|| (free_flow / speed).max(1.0))
}

/// Level of service by density (HCM, basic freeway, veh/km/lane): A ≤ 6.8, B ≤ 11.2, C ≤ 16.2,
/// D ≤ 21.7, E ≤ 28.0, F above. Density k = q / v.
pub fn level_of_service(flow_veh_h_per_lane: f64, speed: f64) -> Option<char> {
    if speed <= 0.0 || flow_veh_h_per_lane < 0.0 {
        return None;
    }
    let k = flow_veh_h_per_lane / speed;
    Some(
        [
            (6.8, 'A'),
            (11.2, 'B'),
            (16.2, 'C'),
            (21.7, 'D'),
            (28.0, 'E'),
        ]
        .iter()
        .find(|(upper, _)| k <= *upper)
        .map_or('F', |(_, los)| *los),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // 30 vehicles in 60 s = 1800 veh/h.
        assert_eq!(flow_veh_h(30.0, 60.0), Some(1800.0));
        // (10 × 50 + 30 × 30 + 0 × 90) / 40 = (500 + 900) / 40 = 35 km/h.
        assert_eq!(
            weighted_speed(&[(10.0, 50.0), (30.0, 30.0), (0.0, 90.0)]),
            Some(35.0)
        );
        assert_eq!(weighted_speed(&[(0.0, 50.0)]), None);
        // 20 speeds 41..=60: the 85th percentile by nearest rank is the 17th, 57.
        let night: Vec<f64> = (41..=60).map(f64::from).collect();
        assert_eq!(free_flow_speed(&night), Some(57.0));
        // v_free 60, v 40: 100 × (1.5 − 1) = 50 %, TTI 1.5.
        assert_eq!(congestion_pct(40.0, 60.0), Some(50.0));
        assert_eq!(travel_time_index(40.0, 60.0), Some(1.5));
        assert_eq!(congestion_pct(70.0, 60.0), Some(0.0));
        assert_eq!(travel_time_index(70.0, 60.0), Some(1.0));
        // 1800 veh/h/lane at 100 km/h: k = 18 → D; at 60 km/h: k = 30 → F; 600 at 100: 6 → A.
        assert_eq!(level_of_service(1800.0, 100.0), Some('D'));
        assert_eq!(level_of_service(1800.0, 60.0), Some('F'));
        assert_eq!(level_of_service(600.0, 100.0), Some('A'));
        assert_eq!(level_of_service(1120.0, 100.0), Some('B'));
        assert_eq!(level_of_service(100.0, 0.0), None);
    }
}
