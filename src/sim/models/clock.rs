//! Local civil time for the models: Kazakhstan keeps one zone, UTC+5, since 1 March 2024
//! (DOMAIN.md §2a); days, weekdays, public holidays and seasons are local. Pure arithmetic on the
//! Unix time (Howard Hinnant's civil-from-days), no time-zone database, no clock.

/// Kazakhstan's single time zone since 1 March 2024 (DOMAIN.md §2a).
pub const UTC_OFFSET_S: i64 = 5 * 3600;
pub const NS_PER_S: i64 = 1_000_000_000;
pub const NS_PER_HOUR: i64 = 3600 * NS_PER_S;
pub const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;

/// A local (UTC+5) calendar position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Local {
    /// Local days since 1970-01-01.
    pub day: i64,
    /// Fractional local hour, 0 ≤ hour < 24.
    pub hour: f64,
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub mday: u8,
}

impl Local {
    pub fn at(t_ns: i64) -> Local {
        let local_ns = t_ns + UTC_OFFSET_S * NS_PER_S;
        let day = local_ns.div_euclid(NS_PER_DAY);
        let hour = local_ns.rem_euclid(NS_PER_DAY) as f64 / NS_PER_HOUR as f64;
        let (year, month, mday) = civil_from_days(day);
        Local {
            day,
            hour,
            // 1970-01-01 was a Thursday.
            weekday: (day + 3).rem_euclid(7) as u8,
            year,
            month,
            mday,
        }
    }

    /// Local days since the epoch, fractional.
    pub fn days(&self) -> f64 {
        self.day as f64 + self.hour / 24.0
    }

    /// Saturday, Sunday, or a fixed-date public holiday of Kazakhstan (Law "On holidays in the
    /// Republic of Kazakhstan", as amended 2022): 1–2 Jan, 7 Jan, 8 Mar, 21–23 Mar (Nauryz),
    /// 1 May, 7 May, 9 May, 6 Jul, 30 Aug, 25 Oct, 16 Dec. Kurban Ait (lunar) and the government's
    /// yearly day transfers are not modelled.
    pub fn day_off(&self) -> bool {
        self.weekday >= 5
            || matches!(
                (self.month, self.mday),
                (1, 1 | 2 | 7)
                    | (3, 8 | 21 | 22 | 23)
                    | (5, 1 | 7 | 9)
                    | (7, 6)
                    | (8, 30)
                    | (10, 25)
                    | (12, 16)
            )
    }

    /// The central heating season, 15 October – 15 April inclusive (the usual dates of the Almaty
    /// akimat's decree; the building code's rule, mean daily temperature ≤ +8 °C for five days,
    /// lands near them).
    pub fn heating_season(&self) -> bool {
        let md = (self.month, self.mday);
        md >= (10, 15) || md <= (4, 15)
    }

    /// Position in a monthly table: 0.0 at mid-January, 1.0 at mid-February, …, 11.0 at
    /// mid-December, wrapping.
    pub fn month_pos(&self) -> f64 {
        let len = days_in_month(self.year, self.month) as f64;
        (self.month - 1) as f64 + (self.mday as f64 - 1.0 + self.hour / 24.0) / len - 0.5
    }
}

/// A value from a table of monthly (mid-month) values, linearly interpolated and wrapping.
#[inline]
pub fn monthly(table: &[f64; 12], month_pos: f64) -> f64 {
    let x = month_pos.rem_euclid(12.0);
    let i = x.floor();
    let f = x - i;
    let i = i as usize % 12;
    table[i] + (table[(i + 1) % 12] - table[i]) * f
}

/// A value from a table of hourly values (`table[h]` at h:00 local), linearly interpolated and
/// wrapping at midnight.
#[inline]
pub fn hourly<const N: usize>(table: &[f64; N], hour: f64) -> f64 {
    let x = (hour * N as f64 / 24.0).rem_euclid(N as f64);
    let i = x.floor();
    let f = x - i;
    let i = i as usize % N;
    table[i] + (table[(i + 1) % N] - table[i]) * f
}

/// The mean of a table (for normalising daily profiles to a mean of one).
pub const fn mean<const N: usize>(table: &[f64; N]) -> f64 {
    let mut s = 0.0;
    let mut i = 0;
    while i < N {
        s += table[i];
        i += 1;
    }
    s / N as f64
}

/// A Gaussian bump of the local hour around `centre`, distance taken around the clock.
#[inline]
pub fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    let d = (hour - centre + 12.0).rem_euclid(24.0) - 12.0;
    (-d * d / (2.0 * width * width)).exp()
}

pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i32, month: u8, mday: u8) -> i64 {
    let y = year as i64 - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + mday as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// The UTC nanoseconds of a local civil date and hour (for tests and scenario authors).
pub fn local_ns(year: i32, month: u8, mday: u8, hour: f64) -> i64 {
    days_from_civil(year, month, mday) * NS_PER_DAY + (hour * NS_PER_HOUR as f64) as i64
        - UTC_OFFSET_S * NS_PER_S
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_is_utc_plus_five() {
        // 2026-01-15 00:00:00 UTC is 05:00 local, a Thursday.
        let t = days_from_civil(2026, 1, 15) * NS_PER_DAY;
        let l = Local::at(t);
        assert_eq!((l.year, l.month, l.mday, l.weekday), (2026, 1, 15, 3));
        assert!((l.hour - 5.0).abs() < 1e-12);
        // 19:30 UTC is already the next local day.
        let l = Local::at(t + 19 * NS_PER_HOUR + NS_PER_HOUR / 2);
        assert_eq!((l.mday, l.weekday), (16, 4));
        assert!((l.hour - 0.5).abs() < 1e-12);
        assert_eq!(Local::at(local_ns(2026, 3, 1, 8.25)).hour, 8.25);
    }

    #[test]
    fn civil_dates_round_trip() {
        for d in -800_000..800_000i64 {
            if d % 97 != 0 {
                continue;
            }
            let (y, m, md) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, md), d);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn weekends_holidays_and_the_heating_season() {
        let at = |m, d| Local::at(local_ns(2026, m, d, 12.0));
        assert!(at(1, 3).day_off()); // Saturday
        assert!(at(3, 23).day_off()); // Nauryz, a Monday
        assert!(!at(3, 24).day_off());
        assert!(at(10, 15).heating_season() && at(4, 15).heating_season());
        assert!(!at(10, 14).heating_season() && !at(4, 16).heating_season());
        assert!(at(1, 15).month_pos().abs() < 0.05);
    }

    #[test]
    fn tables_interpolate_and_wrap() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0];
        assert_eq!(monthly(&t, 2.5), 2.5);
        assert_eq!(monthly(&t, 11.5), 5.5);
        assert_eq!(hourly(&t, 23.0), 5.5);
        assert!((bump(23.5, 0.5, 1.0) - (-0.5f64).exp()).abs() < 1e-12);
    }
}
