//! Units: a table of accepted spellings, each with its quantity and the affine map to the
//! quantity's canonical unit, and the conversion of a value to a metric's canonical unit.
//!
//! Sources: RFC 8428 §12.1 (SenML units: `Cel`, `K`, `%RH`, `m3`, `l`, `l/s`, `W`, `J`, `Wh`, `kWh`,
//! `m/s`, `/`, `%`, `kg/m3`, `Pa`, `A`, `V`) and its secondary units registry (`ug/m3`, `mg/m3`,
//! `ppm`, `ppb`, `hPa`, `kW`, `km/h`, `m3/h`); UN/CEFACT Rec. 20 codes (GQ µg/m³, GP mg/m³, MTQ m³,
//! LTR l); DOMAIN.md §2 for the heat units (1 Gcal = 1163 kWh) and the gas conversion at 25 °C and
//! 1 atm (µg/m³ = ppb × M / 24.45).

use crate::normalize::catalog::MetricDef;

/// A physical quantity. Each has one canonical unit; every metric is stored in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    MassConcentration,
    /// Volume mixing ratio (ppb, ppm): becomes a mass concentration through the gas's molar mass.
    MixingRatio,
    Temperature,
    RelativeHumidity,
    Percent,
    Count,
    /// A count per hour (veh/h): becomes a count per interval through the reading's interval.
    CountRate,
    Duration,
    Speed,
    Volume,
    VolumeFlow,
    Energy,
    Power,
    Voltage,
    Current,
    Pressure,
}

impl Quantity {
    pub fn canonical_symbol(self) -> &'static str {
        match self {
            Quantity::MassConcentration => "µg/m³",
            Quantity::MixingRatio => "ppb",
            Quantity::Temperature => "°C",
            Quantity::RelativeHumidity => "%RH",
            Quantity::Percent => "%",
            Quantity::Count => "veh",
            Quantity::CountRate => "veh/h",
            Quantity::Duration => "s",
            Quantity::Speed => "km/h",
            Quantity::Volume => "m³",
            Quantity::VolumeFlow => "m³/h",
            Quantity::Energy => "kWh",
            Quantity::Power => "kW",
            Quantity::Voltage => "V",
            Quantity::Current => "A",
            Quantity::Pressure => "hPa",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Quantity::MassConcentration => "a mass concentration",
            Quantity::MixingRatio => "a mixing ratio",
            Quantity::Temperature => "a temperature",
            Quantity::RelativeHumidity => "a relative humidity",
            Quantity::Percent => "a percentage",
            Quantity::Count => "a count",
            Quantity::CountRate => "a count per hour",
            Quantity::Duration => "a duration",
            Quantity::Speed => "a speed",
            Quantity::Volume => "a volume",
            Quantity::VolumeFlow => "a volume flow",
            Quantity::Energy => "an energy",
            Quantity::Power => "a power",
            Quantity::Voltage => "a voltage",
            Quantity::Current => "a current",
            Quantity::Pressure => "a pressure",
        }
    }
}

/// One accepted spelling: `canonical = value × scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitDef {
    pub symbol: &'static str,
    pub quantity: Quantity,
    pub scale: f64,
    pub offset: f64,
}

const fn u(symbol: &'static str, quantity: Quantity, scale: f64) -> UnitDef {
    UnitDef {
        symbol,
        quantity,
        scale,
        offset: 0.0,
    }
}

use Quantity::*;

/// Molar volume of an ideal gas at 25 °C and 1 atm, l/mol (DOMAIN.md §2).
pub const MOLAR_VOLUME_25C: f64 = 24.45;
/// 1 Gcal = 1163 kWh (DOMAIN.md §2, §5).
pub const KWH_PER_GCAL: f64 = 1163.0;
/// 1 GJ = 10⁹ J / 3.6·10⁶ J/kWh = 277.78 kWh.
pub const KWH_PER_GJ: f64 = 1.0e9 / 3.6e6;

/// Every accepted spelling. Case matters (`K` is kelvin; `k` is nothing).
pub static UNITS: &[UnitDef] = &[
    // Mass concentration → µg/m³. The micro sign (U+00B5) and the Greek mu (U+03BC) both occur.
    u("µg/m³", MassConcentration, 1.0),
    u("μg/m³", MassConcentration, 1.0),
    u("µg/m3", MassConcentration, 1.0),
    u("μg/m3", MassConcentration, 1.0),
    u("ug/m3", MassConcentration, 1.0),
    u("ug/m³", MassConcentration, 1.0),
    u("GQ", MassConcentration, 1.0),
    u("mg/m3", MassConcentration, 1.0e3),
    u("mg/m³", MassConcentration, 1.0e3),
    u("GP", MassConcentration, 1.0e3),
    u("g/m3", MassConcentration, 1.0e6),
    u("kg/m3", MassConcentration, 1.0e9),
    // Mixing ratio → ppb (then → µg/m³ by molar mass).
    u("ppb", MixingRatio, 1.0),
    u("ppm", MixingRatio, 1.0e3),
    // Temperature → °C.
    u("°C", Temperature, 1.0),
    u("Cel", Temperature, 1.0),
    u("degC", Temperature, 1.0),
    // Not "C": in SenML that is the coulomb, and a charge must not pass for a temperature.
    UnitDef {
        symbol: "K",
        quantity: Temperature,
        scale: 1.0,
        offset: -273.15,
    },
    UnitDef {
        symbol: "°F",
        quantity: Temperature,
        scale: 5.0 / 9.0,
        offset: -32.0 * 5.0 / 9.0,
    },
    UnitDef {
        symbol: "degF",
        quantity: Temperature,
        scale: 5.0 / 9.0,
        offset: -32.0 * 5.0 / 9.0,
    },
    // Relative humidity → %RH; a ratio 0–1 (SenML `/`, FIWARE relativeHumidity) × 100.
    u("%RH", RelativeHumidity, 1.0),
    // Percent → %; SenML `%` is 0–100 (RFC 8428 §12.1), `/` is a ratio 0–1.
    u("%", Percent, 1.0),
    u("/", Percent, 100.0),
    u("ratio", Percent, 100.0),
    // Counts → vehicles (per the reading's interval).
    u("veh", Count, 1.0),
    u("count", Count, 1.0),
    u("1", Count, 1.0),
    u("veh/h", CountRate, 1.0),
    // Duration → s.
    u("s", Duration, 1.0),
    u("ms", Duration, 1.0e-3),
    u("min", Duration, 60.0),
    u("h", Duration, 3600.0),
    // Speed → km/h.
    u("km/h", Speed, 1.0),
    u("m/s", Speed, 3.6),
    u("mph", Speed, 1.609_344),
    // Volume → m³.
    u("m³", Volume, 1.0),
    u("m3", Volume, 1.0),
    u("MTQ", Volume, 1.0),
    u("l", Volume, 1.0e-3),
    u("L", Volume, 1.0e-3),
    u("LTR", Volume, 1.0e-3),
    u("dm3", Volume, 1.0e-3),
    // Volume flow → m³/h.
    u("m³/h", VolumeFlow, 1.0),
    u("m3/h", VolumeFlow, 1.0),
    u("m3/s", VolumeFlow, 3600.0),
    u("l/s", VolumeFlow, 3.6),
    u("l/min", VolumeFlow, 0.06),
    u("l/h", VolumeFlow, 1.0e-3),
    // Energy → kWh.
    u("kWh", Energy, 1.0),
    u("Wh", Energy, 1.0e-3),
    u("MWh", Energy, 1.0e3),
    u("GWh", Energy, 1.0e6),
    u("J", Energy, 1.0 / 3.6e6),
    u("kJ", Energy, 1.0 / 3.6e3),
    u("MJ", Energy, 1.0 / 3.6),
    u("GJ", Energy, KWH_PER_GJ),
    u("Gcal", Energy, KWH_PER_GCAL),
    u("Mcal", Energy, KWH_PER_GCAL / 1.0e3),
    // Power → kW.
    u("kW", Power, 1.0),
    u("W", Power, 1.0e-3),
    u("MW", Power, 1.0e3),
    // Electrical.
    u("V", Voltage, 1.0),
    u("kV", Voltage, 1.0e3),
    u("mV", Voltage, 1.0e-3),
    u("A", Current, 1.0),
    u("mA", Current, 1.0e-3),
    // Pressure → hPa.
    u("hPa", Pressure, 1.0),
    u("Pa", Pressure, 1.0e-2),
    u("kPa", Pressure, 10.0),
    u("mbar", Pressure, 1.0),
    u("bar", Pressure, 1.0e3),
    u("mmHg", Pressure, 1.333_223_874),
];

/// The definition of a spelling, if it is in the table.
pub fn find(symbol: &str) -> Option<&'static UnitDef> {
    UNITS.iter().find(|d| d.symbol == symbol)
}

/// What went wrong converting a value; the message names the unit and the metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// Facts about the reading a conversion may need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// The reading's interval in seconds (traffic), for counts given per hour.
    pub interval_s: Option<f64>,
}

/// Converts `value` given in `unit` (None: already canonical) to `metric`'s canonical unit.
pub fn to_canonical(
    value: f64,
    unit: Option<&str>,
    metric: &MetricDef,
    ctx: Context,
) -> Result<f64, UnitError> {
    let Some(symbol) = unit else {
        return Ok(value);
    };
    let def = find(symbol).ok_or_else(|| {
        UnitError(format!(
            "unknown unit {symbol:?} for {} (expected {}, or a unit convertible to it)",
            metric.name, metric.unit
        ))
    })?;
    let base = value * def.scale + def.offset;
    match (def.quantity, metric.quantity) {
        (a, b) if a == b => Ok(base),
        (Percent, RelativeHumidity) => Ok(base),
        (MixingRatio, MassConcentration) => match metric.molar_mass {
            Some(m) => Ok(base * m / MOLAR_VOLUME_25C),
            None => Err(UnitError(format!(
                "unit {symbol:?} is a mixing ratio; {} has no molar mass to convert it to {}",
                metric.name, metric.unit
            ))),
        },
        (CountRate, Count) => match ctx.interval_s {
            Some(t) => Ok(base * t / 3600.0),
            None => Err(UnitError(format!(
                "unit {symbol:?} is per hour; {} is per interval and the reading has no interval",
                metric.name
            ))),
        },
        (from, _) => Err(UnitError(format!(
            "unit {symbol:?} is {}; {} needs {} ({})",
            from.describe(),
            metric.name,
            metric.quantity.describe(),
            metric.unit
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::normalize::catalog::lookup;

    fn metric(kind: Kind, name: &str) -> &'static MetricDef {
        lookup(kind, name).expect("metric in catalog")
    }

    fn conv(v: f64, unit: &str, kind: Kind, name: &str) -> f64 {
        to_canonical(v, Some(unit), metric(kind, name), Context::default())
            .unwrap_or_else(|e| panic!("{v} {unit} -> {name}: {e}"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn spellings_are_unique() {
        for (i, d) in UNITS.iter().enumerate() {
            assert!(
                UNITS[i + 1..].iter().all(|o| o.symbol != d.symbol),
                "{} twice",
                d.symbol
            );
        }
    }

    #[test]
    fn common_conversions_match_domain_md() {
        assert!(close(conv(0.035, "mg/m3", Kind::Air, "pm2_5"), 35.0));
        // NO2 100 ppb × 46.01 / 24.45 = 188.18 µg/m³
        assert!(close(
            conv(100.0, "ppb", Kind::Air, "no2"),
            100.0 * 46.01 / 24.45
        ));
        // CO 9.4 ppm = 9400 ppb × 28.01 / 24.45 = 10768.6 µg/m³
        assert!(close(
            conv(9.4, "ppm", Kind::Air, "co"),
            9400.0 * 28.01 / 24.45
        ));
        assert!(close(conv(293.15, "K", Kind::Air, "temperature"), 20.0));
        assert!(close(conv(212.0, "°F", Kind::Air, "temperature"), 100.0));
        assert!(close(conv(0.45, "/", Kind::Air, "humidity"), 45.0));
        assert!(close(conv(10.0, "m/s", Kind::Traffic, "speed"), 36.0));
        assert!(close(conv(1500.0, "l", Kind::Water, "volume"), 1.5));
        assert!(close(conv(2.0, "l/s", Kind::Water, "flow"), 7.2));
        assert!(close(conv(1.0, "Gcal", Kind::Heat, "energy"), 1163.0));
        assert!(close(
            conv(1.0, "GJ", Kind::Heat, "energy"),
            277.777_777_777_777_8
        ));
        assert!(close(conv(2.5, "MWh", Kind::Power, "energy"), 2500.0));
        assert!(close(conv(1500.0, "W", Kind::Power, "power"), 1.5));
        assert!(close(conv(3.6e6, "J", Kind::Power, "energy"), 1.0));
    }

    #[test]
    fn no_unit_means_canonical() {
        let v = to_canonical(12.5, None, metric(Kind::Air, "pm2_5"), Context::default());
        assert_eq!(v, Ok(12.5));
    }

    #[test]
    fn veh_per_hour_needs_the_interval() {
        let vol = metric(Kind::Traffic, "volume");
        let ctx = Context {
            interval_s: Some(60.0),
        };
        assert_eq!(to_canonical(1200.0, Some("veh/h"), vol, ctx), Ok(20.0));
        let err = to_canonical(1200.0, Some("veh/h"), vol, Context::default()).unwrap_err();
        assert!(err.0.contains("no interval"), "{err}");
    }

    #[test]
    fn incompatible_and_unknown_units_name_the_metric() {
        let pm = metric(Kind::Air, "pm2_5");
        let e = to_canonical(1.0, Some("km/h"), pm, Context::default()).unwrap_err();
        assert_eq!(
            e.0,
            "unit \"km/h\" is a speed; pm2_5 needs a mass concentration (µg/m³)"
        );
        let e = to_canonical(1.0, Some("furlong"), pm, Context::default()).unwrap_err();
        assert!(e.0.starts_with("unknown unit \"furlong\" for pm2_5"), "{e}");
        // ppb on PM has no molar mass
        let e = to_canonical(1.0, Some("ppb"), pm, Context::default()).unwrap_err();
        assert!(e.0.contains("no molar mass"), "{e}");
        // SenML "C" is the coulomb: not a temperature.
        let t = metric(Kind::Air, "temperature");
        let e = to_canonical(21.0, Some("C"), t, Context::default()).unwrap_err();
        assert!(e.0.starts_with("unknown unit \"C\""), "{e}");
        assert_eq!(
            to_canonical(21.0, Some("Cel"), t, Context::default()),
            Ok(21.0)
        );
    }
}
