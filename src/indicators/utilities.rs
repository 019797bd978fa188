//! Housing and utilities indicators (DOMAIN.md §5): interval consumption from cumulative registers
//! (resets and rollovers flagged, never negative), minimum night flow, district losses. Pure.

/// What happened to a register between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// It grew (or stayed): consumption = the difference.
    Normal,
    /// It passed its top (10^digits) and started again from zero.
    Rollover,
    /// It went down for another reason (replacement, reset): consumption is what it shows now,
    /// a lower bound; flagged.
    Reset,
}

/// Consumption between two register readings. `register_top`: the register's size (e.g.
/// 100,000 m³ for five digits) when known. A drop counts as a rollover when the previous reading
/// was in the top tenth of the register and the new one in the bottom tenth.
pub fn consumption(prev: f64, cur: f64, register_top: Option<f64>) -> (f64, Register) {
    if cur >= prev {
        return (cur - prev, Register::Normal);
    }
    match register_top {
        Some(top) if top > 0.0 && prev <= top && prev >= 0.9 * top && cur <= 0.1 * top => {
            ((top - prev) + cur, Register::Rollover)
        }
        _ => (cur.max(0.0), Register::Reset),
    }
}

/// Minimum night flow of a day of 96 fifteen-minute flows (00:00 … 23:45): the smallest rolling
/// mean of 4 consecutive points; needs ≥ 92 of 96 points (windows with a gap are skipped).
pub fn minimum_night_flow(points: &[Option<f64>; 96]) -> Option<f64> {
    if points.iter().filter(|p| p.is_some()).count() < 92 {
        return None;
    }
    points
        .windows(4)
        .filter_map(|w| {
            let vals: Option<Vec<f64>> = w.iter().copied().collect();
            vals.map(|v| v.iter().sum::<f64>() / 4.0)
        })
        .min_by(f64::total_cmp)
}

/// District losses: input minus the consumers' sum, as a volume and a share (%) of the input.
pub fn district_losses(input: f64, consumers: &[f64]) -> Option<(f64, f64)> {
    if input <= 0.0 {
        return None;
    }
    let lost = input - consumers.iter().sum::<f64>();
    Some((lost, 100.0 * lost / input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_by_hand() {
        assert_eq!(consumption(100.0, 102.5, None), (2.5, Register::Normal));
        // Five digits: 99,998.0 → 1.5 is a rollover: (100,000 − 99,998) + 1.5 = 3.5.
        assert_eq!(
            consumption(99_998.0, 1.5, Some(100_000.0)),
            (3.5, Register::Rollover)
        );
        // 5,000 → 3 is a reset (not near the top): 3, flagged.
        assert_eq!(
            consumption(5_000.0, 3.0, Some(100_000.0)),
            (3.0, Register::Reset)
        );
        assert_eq!(consumption(5_000.0, 3.0, None), (3.0, Register::Reset));
        // A register top below the previous reading is a wrong size, not a rollover.
        assert_eq!(consumption(150.0, 0.5, Some(10.0)), (0.5, Register::Reset));
    }

    #[test]
    fn night_flow_by_hand() {
        // A day at 1.0 m³/h with 02:00–03:00 (points 8..12) at 0.2: the smallest 4-point mean is 0.2.
        let mut day = [Some(1.0); 96];
        for p in &mut day[8..12] {
            *p = Some(0.2);
        }
        assert_eq!(minimum_night_flow(&day), Some(0.2));
        // Five points missing: fewer than 92 of 96, no value.
        for p in &mut day[40..45] {
            *p = None;
        }
        assert_eq!(minimum_night_flow(&day), None);
    }

    #[test]
    fn losses_by_hand() {
        // Input 1,150 m³, consumers 1,000 m³: 150 m³ lost, 13.04 % of the input.
        let (v, pct) = district_losses(1_150.0, &[600.0, 400.0]).expect("losses");
        assert_eq!(v, 150.0);
        assert!((pct - 13.043478).abs() < 1e-6);
        assert_eq!(district_losses(0.0, &[1.0]), None);
    }

    proptest::proptest! {
        #[test]
        fn consumption_is_never_negative(prev in 0.0f64..200_000.0, cur in proptest::prop_oneof![0.0f64..10.0, 0.0f64..200_000.0], top in proptest::option::of(proptest::prop_oneof![1.0f64..100.0, 1.0f64..1.0e6])) {
            let (c, _) = consumption(prev, cur, top);
            proptest::prop_assert!(c >= 0.0, "{prev} → {cur} (top {top:?}) gave {c}");
        }
    }
}
