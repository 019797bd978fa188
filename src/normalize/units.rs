//! Units: a table of accepted spellings, each with its quantity, the affine map to the quantity's
//! canonical unit and the source it comes from, and the conversion of a value to a metric's
//! canonical unit. An unknown or incompatible unit is an error; the caller dead-letters the
//! message with reason `bad_unit`.
//!
//! Sources, named on every row of [`UNITS`]:
//! - RFC 8428 §12.1, the SenML units registry as first published (`Cel`, `K`, `%RH`, `Pa`, `m3`,
//!   `m3/s`, `l`, `l/s`, `W`, `J`, `A`, `V`, `m/s`, `s`, `count`, `/`, `1/s`, `1/min`, `dBW`).
//! - RFC 8798 §2, primary units it added (`kg/m3`), and §3, the SenML secondary units, each a scaled
//!   primary unit (`ms`, `min`, `h`, `kW`, `Wh`, `kWh`, `mV`, `mA`, `ug/m3`, `ppm`, `/100`, `/1000`,
//!   `hPa`, `km/h`).
//! - The IANA SenML secondary-units registry, entries added by expert review after RFC 8798
//!   (`ppb`, `ppt`).
//! - UN/CEFACT Recommendation 20 common codes, as FIWARE's `unitCode` carries them (`GQ`, `GP`,
//!   `MTQ`, `LTR`, `KWH`, `CEL`, `A97` hPa, ...).
//! - DOMAIN.md §2, §4, §5 for the canonical units and the heat units (1 Gcal = 1163 kWh), and
//!   spellings seen in vendor JSON ("common spelling": `µg/m³` with the micro sign U+00B5 or the
//!   Greek mu U+03BC, `m3/h`, `mg/m3`, `Gcal`, `°F`, ...).
//!
//! Rules the table encodes:
//! - `%` here is a percentage, 0–100, as JSON vendors mean it. SenML's `%` is a ratio 0–1
//!   (RFC 8428 §12.1): the SenML decoder turns it into `/` before it gets here.
//!   `/` and `ratio` are ratios 0–1, × 100. A relative humidity accepts any percentage or ratio
//!   (FIWARE's `relativeHumidity` is 0–1).
//! - Gases given as a mixing ratio (ppb, ppm) become µg/m³ at 25 °C and 1 atm:
//!   µg/m³ = ppb × M / 24.45, with the gas's molar mass M from the catalog (DOMAIN.md §2).
//! - Counts given per hour become counts per interval through the reading's interval.
//!
//! Left out on purpose (they stay unknown, hence `bad_unit`):
//! - `C` and `F`: in SenML the coulomb and the farad, not degrees; a charge must not pass for a
//!   temperature.
//! - `VA`, `var`, `VAs`, `vars`, `kVAh`, `kvarh`, `Ah`: apparent or reactive power and energy, or
//!   charge. A reactive-energy register must not pass for active energy.
//! - `mm/h`, `m/h` (SenML secondary speeds): in a city they are rain intensity, not traffic.
//! - Normal and standard cubic metres (Rec 20 `NM3`, `SM3`): a gas volume corrected to reference
//!   conditions is not a unit conversion.
//! - Rec 20 `GJ` is the gram per millilitre; here `GJ` is the gigajoule, as heat meters write it,
//!   and Rec 20's gigajoule is `GV`.
//!
//! To extend: add a row to [`UNITS`] with its source, and its expected conversion to the table in
//! the tests (a test fails for a row without an expectation).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

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
    /// A yes/no state (an alarm, a congestion flag): stored as 1 or 0, sent as a boolean.
    Flag,
    /// A power level in decibels (a radio's received signal strength), in dBm.
    SignalLevel,
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
            Quantity::Flag => "bool",
            Quantity::SignalLevel => "dBm",
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
            Quantity::Flag => "a true/false flag",
            Quantity::SignalLevel => "a signal level",
        }
    }
}

/// One accepted spelling: `canonical = value × scale + offset`, in the canonical unit of
/// `quantity`; `source` names where the spelling and its factor come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitDef {
    pub symbol: &'static str,
    pub quantity: Quantity,
    pub scale: f64,
    pub offset: f64,
    pub source: &'static str,
}

const fn u(symbol: &'static str, quantity: Quantity, scale: f64, source: &'static str) -> UnitDef {
    UnitDef {
        symbol,
        quantity,
        scale,
        offset: 0.0,
        source,
    }
}

const fn affine(
    symbol: &'static str,
    quantity: Quantity,
    scale: f64,
    offset: f64,
    source: &'static str,
) -> UnitDef {
    UnitDef {
        symbol,
        quantity,
        scale,
        offset,
        source,
    }
}

use Quantity::*;

// Sources.
/// The SenML units registry as published with RFC 8428 (§12.1, "Units Registry").
const SENML: &str = "RFC 8428 §12.1";
/// Primary SenML units added by RFC 8798 §2.
const SENML_8798: &str = "RFC 8798 §2";
/// SenML secondary units registered by RFC 8798 §3 (a primary unit times a scale).
const SENML_SECONDARY: &str = "RFC 8798 §3";
/// SenML secondary units added to the IANA registry by expert review after RFC 8798.
const SENML_SECONDARY_IANA: &str = "IANA SenML secondary units";
/// UN/CEFACT Recommendation 20, common codes (Annex III), as in FIWARE `unitCode`.
const REC20: &str = "UN/CEFACT Rec 20";
/// A canonical unit or factor DOMAIN.md states.
const DOMAIN_2: &str = "DOMAIN.md §2";
const DOMAIN_4: &str = "DOMAIN.md §4";
/// A spelling vendors use that no registry defines.
const COMMON: &str = "common spelling";

// Factors.
/// Molar volume of an ideal gas at 25 °C and 1 atm, l/mol (DOMAIN.md §2).
pub const MOLAR_VOLUME_25C: f64 = 24.45;
/// 1 Gcal = 1163 kWh = 1.163 MWh (DOMAIN.md §2, §5; the international-table calorie, 4.1868 J).
pub const KWH_PER_GCAL: f64 = 1163.0;
/// 1 GJ = 10⁹ J / 3.6·10⁶ J/kWh = 277.78 kWh (DOMAIN.md rounds to 277.78).
pub const KWH_PER_GJ: f64 = 1.0e9 / 3.6e6;
/// 1 kWh = 3.6·10⁶ J.
const KWH_PER_J: f64 = 1.0 / 3.6e6;
/// Conventional millimetre of mercury: 13.5951 g/cm³ × 9.80665 m/s² × 1 mm = 133.322387415 Pa.
const HPA_PER_MMHG: f64 = 1.333_223_874_15;
/// 1 inch = 25.4 mm exactly.
const HPA_PER_INHG: f64 = 25.4 * HPA_PER_MMHG;
/// International mile: 1609.344 m exactly.
const KMH_PER_MPH: f64 = 1.609_344;
/// °F → °C: (t − 32) × 5/9.
const C_PER_F: f64 = 5.0 / 9.0;
const C_AT_0F: f64 = -32.0 * 5.0 / 9.0;
/// K → °C: t − 273.15.
const C_AT_0K: f64 = -273.15;

/// Every accepted spelling. Case matters (`K` is kelvin; `k` is nothing). Spellings are unique.
pub static UNITS: &[UnitDef] = &[
    // Mass concentration → µg/m³. The micro sign (U+00B5) and the Greek mu (U+03BC) both occur.
    u("µg/m³", MassConcentration, 1.0, DOMAIN_2),
    u("μg/m³", MassConcentration, 1.0, COMMON),
    u("µg/m3", MassConcentration, 1.0, COMMON),
    u("μg/m3", MassConcentration, 1.0, COMMON),
    u("ug/m3", MassConcentration, 1.0, SENML_SECONDARY),
    u("ug/m³", MassConcentration, 1.0, COMMON),
    u("GQ", MassConcentration, 1.0, REC20),
    u("ng/m3", MassConcentration, 1.0e-3, COMMON),
    u("ng/m³", MassConcentration, 1.0e-3, COMMON),
    u("mg/m3", MassConcentration, 1.0e3, COMMON),
    u("mg/m³", MassConcentration, 1.0e3, DOMAIN_2),
    u("GP", MassConcentration, 1.0e3, REC20),
    u("g/m3", MassConcentration, 1.0e6, COMMON),
    u("g/m³", MassConcentration, 1.0e6, COMMON),
    u("A93", MassConcentration, 1.0e6, REC20),
    u("kg/m3", MassConcentration, 1.0e9, SENML_8798),
    u("kg/m³", MassConcentration, 1.0e9, COMMON),
    u("KMQ", MassConcentration, 1.0e9, REC20),
    // Mixing ratio (by volume) → ppb; then → µg/m³ by the gas's molar mass.
    u("ppb", MixingRatio, 1.0, SENML_SECONDARY_IANA),
    u("ppbv", MixingRatio, 1.0, COMMON),
    u("61", MixingRatio, 1.0, REC20),
    u("ppm", MixingRatio, 1.0e3, SENML_SECONDARY),
    u("ppmv", MixingRatio, 1.0e3, COMMON),
    u("59", MixingRatio, 1.0e3, REC20),
    u("ppt", MixingRatio, 1.0e-3, SENML_SECONDARY_IANA),
    // Temperature → °C. Not "C": in SenML that is the coulomb. "ºC" has the masculine ordinal
    // (U+00BA) some keyboards give for the degree sign; "℃" and "℉" are the Unicode compatibility
    // characters.
    u("°C", Temperature, 1.0, DOMAIN_2),
    u("Cel", Temperature, 1.0, SENML),
    u("CEL", Temperature, 1.0, REC20),
    u("degC", Temperature, 1.0, COMMON),
    u("ºC", Temperature, 1.0, COMMON),
    u("℃", Temperature, 1.0, COMMON),
    affine("K", Temperature, 1.0, C_AT_0K, SENML),
    affine("KEL", Temperature, 1.0, C_AT_0K, REC20),
    affine("°F", Temperature, C_PER_F, C_AT_0F, DOMAIN_2),
    affine("FAH", Temperature, C_PER_F, C_AT_0F, REC20),
    affine("degF", Temperature, C_PER_F, C_AT_0F, COMMON),
    affine("ºF", Temperature, C_PER_F, C_AT_0F, COMMON),
    affine("℉", Temperature, C_PER_F, C_AT_0F, COMMON),
    // Relative humidity → %RH. A percentage or a ratio is accepted too (see `to_canonical`).
    u("%RH", RelativeHumidity, 1.0, SENML),
    u("% RH", RelativeHumidity, 1.0, DOMAIN_2),
    // Percent → %, 0–100. SenML `%` is a ratio and arrives here as `/` (see the module docs).
    u("%", Percent, 1.0, COMMON),
    u("P1", Percent, 1.0, REC20),
    u("/100", Percent, 1.0, SENML_SECONDARY),
    u("/", Percent, 100.0, SENML),
    u("ratio", Percent, 100.0, COMMON),
    u("/1000", Percent, 0.1, SENML_SECONDARY),
    u("‰", Percent, 0.1, COMMON),
    u("NX", Percent, 0.1, REC20),
    // Count → vehicles (per the reading's interval).
    u("veh", Count, 1.0, DOMAIN_4),
    u("count", Count, 1.0, SENML),
    u("1", Count, 1.0, COMMON),
    u("C62", Count, 1.0, REC20),
    // Count rate → veh/h; becomes a count per interval through the reading's interval.
    u("veh/h", CountRate, 1.0, DOMAIN_4),
    u("1/h", CountRate, 1.0, COMMON),
    u("1/min", CountRate, 60.0, SENML),
    u("1/s", CountRate, 3600.0, SENML),
    // Duration → s.
    u("s", Duration, 1.0, SENML),
    u("SEC", Duration, 1.0, REC20),
    u("ms", Duration, 1.0e-3, SENML_SECONDARY),
    u("C26", Duration, 1.0e-3, REC20),
    u("min", Duration, 60.0, SENML_SECONDARY),
    u("MIN", Duration, 60.0, REC20),
    u("h", Duration, 3600.0, SENML_SECONDARY),
    u("HUR", Duration, 3600.0, REC20),
    // Speed → km/h.
    u("km/h", Speed, 1.0, SENML_SECONDARY),
    u("KMH", Speed, 1.0, REC20),
    u("kmh", Speed, 1.0, COMMON),
    u("kph", Speed, 1.0, COMMON),
    u("m/s", Speed, 3.6, SENML),
    u("MTS", Speed, 3.6, REC20),
    u("mph", Speed, KMH_PER_MPH, COMMON),
    u("HM", Speed, KMH_PER_MPH, REC20),
    // Volume → m³.
    u("m³", Volume, 1.0, DOMAIN_2),
    u("m3", Volume, 1.0, SENML),
    u("MTQ", Volume, 1.0, REC20),
    u("m^3", Volume, 1.0, COMMON),
    u("l", Volume, 1.0e-3, SENML),
    u("L", Volume, 1.0e-3, COMMON),
    u("LTR", Volume, 1.0e-3, REC20),
    u("litre", Volume, 1.0e-3, COMMON),
    u("liter", Volume, 1.0e-3, COMMON),
    u("dm3", Volume, 1.0e-3, COMMON),
    u("dm³", Volume, 1.0e-3, COMMON),
    u("DMQ", Volume, 1.0e-3, REC20),
    // Volume flow → m³/h. (`m3/h` is not a SenML unit, only a common one.)
    u("m³/h", VolumeFlow, 1.0, DOMAIN_2),
    u("m3/h", VolumeFlow, 1.0, COMMON),
    u("MQH", VolumeFlow, 1.0, REC20),
    u("m3/s", VolumeFlow, 3600.0, SENML),
    u("m³/s", VolumeFlow, 3600.0, COMMON),
    u("MQS", VolumeFlow, 3600.0, REC20),
    u("l/s", VolumeFlow, 3.6, SENML),
    u("L/s", VolumeFlow, 3.6, COMMON),
    u("G51", VolumeFlow, 3.6, REC20),
    u("l/min", VolumeFlow, 0.06, COMMON),
    u("L/min", VolumeFlow, 0.06, COMMON),
    u("L2", VolumeFlow, 0.06, REC20),
    u("l/h", VolumeFlow, 1.0e-3, COMMON),
    u("L/h", VolumeFlow, 1.0e-3, COMMON),
    u("E32", VolumeFlow, 1.0e-3, REC20),
    // Energy → kWh.
    u("kWh", Energy, 1.0, SENML_SECONDARY),
    u("KWH", Energy, 1.0, REC20),
    u("kW·h", Energy, 1.0, COMMON),
    u("Wh", Energy, 1.0e-3, SENML_SECONDARY),
    u("WHR", Energy, 1.0e-3, REC20),
    u("MWh", Energy, 1.0e3, DOMAIN_2),
    u("MWH", Energy, 1.0e3, REC20),
    u("GWh", Energy, 1.0e6, COMMON),
    u("GWH", Energy, 1.0e6, REC20),
    u("J", Energy, KWH_PER_J, SENML),
    u("JOU", Energy, KWH_PER_J, REC20),
    u("kJ", Energy, 1.0 / 3.6e3, COMMON),
    u("KJO", Energy, 1.0 / 3.6e3, REC20),
    u("MJ", Energy, 1.0 / 3.6, COMMON),
    u("3B", Energy, 1.0 / 3.6, REC20),
    // The gigajoule as heat meters write it; Rec 20's "GJ" is the gram per millilitre.
    u("GJ", Energy, KWH_PER_GJ, DOMAIN_2),
    u("GV", Energy, KWH_PER_GJ, REC20),
    u("Gcal", Energy, KWH_PER_GCAL, DOMAIN_2),
    // Rec 20 marks E11 deprecated; it is still the gigacalorie where it occurs.
    u("E11", Energy, KWH_PER_GCAL, REC20),
    u("Mcal", Energy, KWH_PER_GCAL / 1.0e3, COMMON),
    // Power → kW. Heat meters give the heat output in Gcal/h or GJ/h.
    u("kW", Power, 1.0, SENML_SECONDARY),
    u("KWT", Power, 1.0, REC20),
    u("W", Power, 1.0e-3, SENML),
    u("WTT", Power, 1.0e-3, REC20),
    u("MW", Power, 1.0e3, COMMON),
    u("MAW", Power, 1.0e3, REC20),
    u("Gcal/h", Power, KWH_PER_GCAL, COMMON),
    u("GJ/h", Power, KWH_PER_GJ, COMMON),
    // Voltage → V.
    u("V", Voltage, 1.0, SENML),
    u("VLT", Voltage, 1.0, REC20),
    u("mV", Voltage, 1.0e-3, SENML_SECONDARY),
    u("2Z", Voltage, 1.0e-3, REC20),
    u("kV", Voltage, 1.0e3, COMMON),
    u("KVT", Voltage, 1.0e3, REC20),
    // Current → A.
    u("A", Current, 1.0, SENML),
    u("AMP", Current, 1.0, REC20),
    u("mA", Current, 1.0e-3, SENML_SECONDARY),
    u("4K", Current, 1.0e-3, REC20),
    // Pressure → hPa.
    u("hPa", Pressure, 1.0, SENML_SECONDARY),
    u("A97", Pressure, 1.0, REC20),
    u("mbar", Pressure, 1.0, COMMON),
    u("MBR", Pressure, 1.0, REC20),
    u("Pa", Pressure, 1.0e-2, SENML),
    u("PAL", Pressure, 1.0e-2, REC20),
    u("kPa", Pressure, 10.0, COMMON),
    u("KPA", Pressure, 10.0, REC20),
    u("bar", Pressure, 1.0e3, COMMON),
    u("BAR", Pressure, 1.0e3, REC20),
    u("mmHg", Pressure, HPA_PER_MMHG, COMMON),
    // Rec 20 marks HN (conventional millimetre of mercury) deprecated.
    u("HN", Pressure, HPA_PER_MMHG, REC20),
    u("inHg", Pressure, HPA_PER_INHG, COMMON),
    u("F79", Pressure, HPA_PER_INHG, REC20),
    // Signal level → dBm. 0 dBW = 1 W = 1000 mW = +30 dBm.
    u("dBm", SignalLevel, 1.0, COMMON),
    affine("dBW", SignalLevel, 1.0, 30.0, SENML),
];

/// The definition of a spelling, if it is in the table: a hash lookup, the index built on first use.
pub fn find(symbol: &str) -> Option<&'static UnitDef> {
    static INDEX: OnceLock<HashMap<&'static str, &'static UnitDef, BuildHasherDefault<Fnv1a>>> =
        OnceLock::new();
    INDEX
        .get_or_init(|| UNITS.iter().map(|d| (d.symbol, d)).collect())
        .get(symbol)
        .copied()
}

/// FNV-1a, 64-bit. The keys are the table's own short spellings, fixed at build time, so a
/// keyed hash (std's SipHash) buys no protection here and costs twice the time; a crafted
/// spelling can at worst probe the whole table once, as a linear scan would.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
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
    use proptest::prelude::*;

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

    /// A five-minute detector interval, for counts given per hour.
    const FIVE_MINUTES: Context = Context {
        interval_s: Some(300.0),
    };

    const ALL_QUANTITIES: [Quantity; 18] = [
        MassConcentration,
        MixingRatio,
        Temperature,
        RelativeHumidity,
        Percent,
        Count,
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
        Flag,
        SignalLevel,
    ];

    /// A catalog metric a unit of `q` converts into. The match is exhaustive: a new quantity
    /// must name its metric here, and be added to `ALL_QUANTITIES`.
    fn target(q: Quantity) -> &'static MetricDef {
        match q {
            MassConcentration => metric(Kind::Air, "pm2_5"),
            MixingRatio => metric(Kind::Air, "no2"),
            Temperature => metric(Kind::Air, "temperature"),
            RelativeHumidity => metric(Kind::Air, "humidity"),
            Percent => metric(Kind::Traffic, "occupancy"),
            Count | CountRate => metric(Kind::Traffic, "volume"),
            Duration => metric(Kind::Traffic, "interval"),
            Speed => metric(Kind::Traffic, "speed"),
            Volume => metric(Kind::Water, "volume"),
            VolumeFlow => metric(Kind::Water, "flow"),
            Energy => metric(Kind::Heat, "energy"),
            Power => metric(Kind::Power, "power"),
            Voltage => metric(Kind::Power, "voltage"),
            Current => metric(Kind::Power, "current"),
            Pressure => metric(Kind::Air, "pressure"),
            Flag => metric(Kind::Water, "leak_alarm"),
            SignalLevel => metric(Kind::Status, "rssi"),
        }
    }

    /// Whether converting a unit of `q` needs more than the table: a molar mass or an interval.
    fn contextual(q: Quantity) -> bool {
        matches!(q, MixingRatio | CountRate)
    }

    /// One expected conversion: `value` in `unit`, into `kind.metric`, gives `expect`
    /// (with a five-minute interval). Written from the definitions, not from `UNITS`.
    struct Case {
        unit: &'static str,
        kind: Kind,
        metric: &'static str,
        value: f64,
        expect: f64,
    }

    const fn case(
        unit: &'static str,
        kind: Kind,
        metric: &'static str,
        value: f64,
        expect: f64,
    ) -> Case {
        Case {
            unit,
            kind,
            metric,
            value,
            expect,
        }
    }

    use Kind::{Air, Gas, Heat, Power as Elec, Status, Traffic, Water};

    #[rustfmt::skip]
    static EXPECTED: &[Case] = &[
        // µg/m³
        case("µg/m³", Air, "pm2_5", 12.5, 12.5),
        case("μg/m³", Air, "pm2_5", 12.5, 12.5),
        case("µg/m3", Air, "pm2_5", 12.5, 12.5),
        case("μg/m3", Air, "pm2_5", 12.5, 12.5),
        case("ug/m3", Air, "pm10", 12.5, 12.5),
        case("ug/m³", Air, "pm10", 12.5, 12.5),
        case("GQ", Air, "so2", 12.5, 12.5),
        case("ng/m3", Air, "pm2_5", 500.0, 0.5),
        case("ng/m³", Air, "pm2_5", 500.0, 0.5),
        case("mg/m3", Air, "pm2_5", 0.035, 35.0),
        case("mg/m³", Air, "co", 0.035, 35.0),
        case("GP", Air, "co", 0.035, 35.0),
        case("g/m3", Air, "pm10", 0.002, 2000.0),
        case("g/m³", Air, "pm10", 0.002, 2000.0),
        case("A93", Air, "pm10", 0.002, 2000.0),
        case("kg/m3", Air, "pm2_5", 1.0e-8, 10.0),
        case("kg/m³", Air, "pm2_5", 1.0e-8, 10.0),
        case("KMQ", Air, "pm2_5", 1.0e-8, 10.0),
        // ppb × M / 24.45: NO2 46.01, CO 28.01, O3 48.00, SO2 64.07, H2S 34.08
        case("ppb", Air, "no2", 100.0, 188.179_959_100_204_5),
        case("ppbv", Air, "no2", 100.0, 188.179_959_100_204_5),
        case("61", Air, "h2s", 5.0, 6.969_325_153_374_233),
        case("ppm", Air, "co", 9.4, 10_768.670_756_646_217),
        case("ppmv", Air, "co", 9.4, 10_768.670_756_646_217),
        case("59", Air, "so2", 0.2, 524.089_979_550_102_3),
        case("ppt", Air, "o3", 1000.0, 1.963_190_184_049_079_7),
        // °C
        case("°C", Air, "temperature", 21.5, 21.5),
        case("Cel", Air, "temperature", 21.5, 21.5),
        case("CEL", Heat, "supply_temperature", 95.0, 95.0),
        case("degC", Air, "temperature", -21.5, -21.5),
        case("ºC", Air, "temperature", 21.5, 21.5),
        case("℃", Air, "temperature", 21.5, 21.5),
        case("K", Air, "temperature", 293.15, 20.0),
        case("KEL", Air, "temperature", 253.15, -20.0),
        case("°F", Air, "temperature", 212.0, 100.0),
        case("FAH", Air, "temperature", 68.0, 20.0),
        case("degF", Air, "temperature", -40.0, -40.0),
        case("ºF", Air, "temperature", 0.0, -17.777_777_777_777_78),
        case("℉", Air, "temperature", 98.6, 37.0),
        // %RH
        case("%RH", Air, "humidity", 45.0, 45.0),
        case("% RH", Air, "humidity", 45.0, 45.0),
        // % (0–100); ratios 0–1
        case("%", Traffic, "occupancy", 37.5, 37.5),
        case("P1", Traffic, "occupancy", 37.5, 37.5),
        case("/100", Traffic, "occupancy", 37.5, 37.5),
        case("/", Traffic, "occupancy", 0.375, 37.5),
        case("ratio", Traffic, "occupancy", 0.375, 37.5),
        case("/1000", Traffic, "occupancy", 375.0, 37.5),
        case("‰", Traffic, "occupancy", 375.0, 37.5),
        case("NX", Traffic, "occupancy", 375.0, 37.5),
        // vehicles per interval
        case("veh", Traffic, "volume", 42.0, 42.0),
        case("count", Traffic, "volume", 42.0, 42.0),
        case("1", Traffic, "volume", 42.0, 42.0),
        case("C62", Traffic, "volume", 42.0, 42.0),
        // per hour, over a 300 s interval
        case("veh/h", Traffic, "volume", 1200.0, 100.0),
        case("1/h", Traffic, "volume", 1200.0, 100.0),
        case("1/min", Traffic, "volume", 20.0, 100.0),
        case("1/s", Traffic, "volume", 0.5, 150.0),
        // s
        case("s", Traffic, "interval", 300.0, 300.0),
        case("SEC", Traffic, "interval", 300.0, 300.0),
        case("ms", Traffic, "interval", 300_000.0, 300.0),
        case("C26", Traffic, "interval", 300_000.0, 300.0),
        case("min", Traffic, "interval", 5.0, 300.0),
        case("MIN", Traffic, "interval", 5.0, 300.0),
        case("h", Traffic, "interval", 0.25, 900.0),
        case("HUR", Traffic, "interval", 0.25, 900.0),
        // km/h
        case("km/h", Traffic, "speed", 54.0, 54.0),
        case("KMH", Traffic, "speed", 54.0, 54.0),
        case("kmh", Traffic, "speed", 54.0, 54.0),
        case("kph", Traffic, "speed", 54.0, 54.0),
        case("m/s", Traffic, "speed", 15.0, 54.0),
        case("MTS", Traffic, "speed", 15.0, 54.0),
        case("mph", Traffic, "speed", 60.0, 96.560_64),
        case("HM", Traffic, "speed", 60.0, 96.560_64),
        // m³
        case("m³", Water, "volume", 1.5, 1.5),
        case("m3", Water, "volume", 1.5, 1.5),
        case("MTQ", Gas, "volume", 1.5, 1.5),
        case("m^3", Gas, "volume", 1.5, 1.5),
        case("l", Water, "volume", 1500.0, 1.5),
        case("L", Water, "volume", 1500.0, 1.5),
        case("LTR", Water, "volume", 1500.0, 1.5),
        case("litre", Water, "volume", 1500.0, 1.5),
        case("liter", Water, "volume", 1500.0, 1.5),
        case("dm3", Gas, "volume", 1500.0, 1.5),
        case("dm³", Gas, "volume", 1500.0, 1.5),
        case("DMQ", Gas, "volume", 1500.0, 1.5),
        // m³/h
        case("m³/h", Water, "flow", 7.2, 7.2),
        case("m3/h", Water, "flow", 7.2, 7.2),
        case("MQH", Heat, "flow", 7.2, 7.2),
        case("m3/s", Water, "flow", 0.002, 7.2),
        case("m³/s", Water, "flow", 0.002, 7.2),
        case("MQS", Water, "flow", 0.002, 7.2),
        case("l/s", Water, "flow", 2.0, 7.2),
        case("L/s", Water, "flow", 2.0, 7.2),
        case("G51", Water, "flow", 2.0, 7.2),
        case("l/min", Water, "flow", 120.0, 7.2),
        case("L/min", Water, "flow", 120.0, 7.2),
        case("L2", Water, "flow", 120.0, 7.2),
        case("l/h", Gas, "flow", 7200.0, 7.2),
        case("L/h", Gas, "flow", 7200.0, 7.2),
        case("E32", Gas, "flow", 7200.0, 7.2),
        // kWh: 1 Gcal = 1163 kWh, 1 GJ = 10⁹ J / 3.6·10⁶ J
        case("kWh", Elec, "energy", 1163.0, 1163.0),
        case("KWH", Elec, "energy", 1163.0, 1163.0),
        case("kW·h", Elec, "energy", 1163.0, 1163.0),
        case("Wh", Elec, "energy", 1_163_000.0, 1163.0),
        case("WHR", Elec, "energy", 1_163_000.0, 1163.0),
        case("MWh", Heat, "energy", 1.163, 1163.0),
        case("MWH", Heat, "energy", 1.163, 1163.0),
        case("GWh", Elec, "energy", 0.001_163, 1163.0),
        case("GWH", Elec, "energy", 0.001_163, 1163.0),
        case("J", Elec, "energy", 3.6e6, 1.0),
        case("JOU", Elec, "energy", 3.6e6, 1.0),
        case("kJ", Heat, "energy", 3600.0, 1.0),
        case("KJO", Heat, "energy", 3600.0, 1.0),
        case("MJ", Heat, "energy", 3.6, 1.0),
        case("3B", Heat, "energy", 3.6, 1.0),
        case("GJ", Heat, "energy", 1.0, 277.777_777_777_777_77),
        case("GV", Heat, "energy", 0.5, 138.888_888_888_888_89),
        case("Gcal", Heat, "energy", 1.0, 1163.0),
        case("E11", Heat, "energy", 2.0, 2326.0),
        case("Mcal", Heat, "energy", 1000.0, 1163.0),
        // kW
        case("kW", Elec, "power", 1.5, 1.5),
        case("KWT", Elec, "power", 1.5, 1.5),
        case("W", Elec, "power", 1500.0, 1.5),
        case("WTT", Elec, "power", -1500.0, -1.5),
        case("MW", Elec, "power", 0.0015, 1.5),
        case("MAW", Elec, "power", 0.0015, 1.5),
        case("Gcal/h", Heat, "power", 2.0, 2326.0),
        case("GJ/h", Heat, "power", 3.6, 1000.0),
        // V, A
        case("V", Elec, "voltage", 230.0, 230.0),
        case("VLT", Elec, "voltage", 230.0, 230.0),
        case("mV", Elec, "voltage", 230_000.0, 230.0),
        case("2Z", Elec, "voltage", 230_000.0, 230.0),
        case("kV", Elec, "voltage", 0.23, 230.0),
        case("KVT", Elec, "voltage", 0.23, 230.0),
        case("A", Elec, "current", 1.2, 1.2),
        case("AMP", Elec, "current", 1.2, 1.2),
        case("mA", Elec, "current", 1200.0, 1.2),
        case("4K", Elec, "current", 1200.0, 1.2),
        // hPa; 760 mmHg = 101325.0144354 Pa (not exactly 1 atm)
        case("hPa", Air, "pressure", 1013.25, 1013.25),
        case("A97", Air, "pressure", 1013.25, 1013.25),
        case("mbar", Air, "pressure", 1013.25, 1013.25),
        case("MBR", Air, "pressure", 1013.25, 1013.25),
        case("Pa", Air, "pressure", 101_325.0, 1013.25),
        case("PAL", Air, "pressure", 101_325.0, 1013.25),
        case("kPa", Air, "pressure", 101.325, 1013.25),
        case("KPA", Air, "pressure", 101.325, 1013.25),
        case("bar", Air, "pressure", 1.013_25, 1013.25),
        case("BAR", Air, "pressure", 1.013_25, 1013.25),
        case("mmHg", Air, "pressure", 760.0, 1013.250144354),
        case("HN", Air, "pressure", 760.0, 1013.250144354),
        case("inHg", Air, "pressure", 29.92, 1013.2074811900272),
        case("F79", Air, "pressure", 29.92, 1013.2074811900272),
        // dBm; 0 dBW = +30 dBm
        case("dBm", Status, "rssi", -71.0, -71.0),
        case("dBW", Status, "rssi", -101.0, -71.0),
    ];

    /// Every source a row may name.
    const SOURCES: &[&str] = &[
        SENML,
        SENML_8798,
        SENML_SECONDARY,
        SENML_SECONDARY_IANA,
        REC20,
        DOMAIN_2,
        DOMAIN_4,
        COMMON,
    ];

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
    fn find_returns_every_row_and_nothing_else() {
        for d in UNITS {
            assert_eq!(find(d.symbol), Some(d), "{}", d.symbol);
        }
        for s in [
            "", "C", "F", "k", "KM/H", "ppb ", " ppb", "µg/m^3", "VA", "mm/h",
        ] {
            assert_eq!(find(s), None, "{s:?}");
        }
    }

    #[test]
    fn every_row_names_a_known_source() {
        for d in UNITS {
            assert!(SOURCES.contains(&d.source), "{}: {:?}", d.symbol, d.source);
            assert!(d.scale.is_finite() && d.scale > 0.0, "{}", d.symbol);
            assert!(d.offset.is_finite(), "{}", d.symbol);
        }
    }

    #[test]
    fn every_unit_converts_as_expected() {
        for (i, c) in EXPECTED.iter().enumerate() {
            assert!(
                EXPECTED[i + 1..].iter().all(|o| o.unit != c.unit),
                "{} expected twice",
                c.unit
            );
            let def =
                find(c.unit).unwrap_or_else(|| panic!("{} is expected but not in UNITS", c.unit));
            let m = metric(c.kind, c.metric);
            let got = to_canonical(c.value, Some(c.unit), m, FIVE_MINUTES)
                .unwrap_or_else(|e| panic!("{} {}: {e}", c.value, c.unit));
            assert!(
                close(got, c.expect),
                "{} {} -> {} {}: got {got}",
                c.value,
                c.unit,
                c.expect,
                m.unit
            );
            assert!(
                def.quantity == m.quantity || contextual(def.quantity) || def.quantity == Percent,
                "{} is {:?}, {} is {:?}",
                c.unit,
                def.quantity,
                c.metric,
                m.quantity
            );
        }
        for d in UNITS {
            assert!(
                EXPECTED.iter().any(|c| c.unit == d.symbol),
                "{} ({}) has no expected conversion in the test",
                d.symbol,
                d.source
            );
        }
    }

    #[test]
    fn every_quantity_has_its_canonical_unit_with_factor_one() {
        // A flag has no unit: no spelling converts to it, and one given is refused.
        assert!(UNITS.iter().all(|d| d.quantity != Flag));
        let leak = target(Flag);
        assert!(to_canonical(1.0, Some("bool"), leak, Context::default()).is_err());
        assert_eq!(to_canonical(1.0, None, leak, Context::default()), Ok(1.0));
        for q in ALL_QUANTITIES.into_iter().filter(|q| *q != Flag) {
            let s = q.canonical_symbol();
            let d = find(s).unwrap_or_else(|| panic!("canonical {s} is not in UNITS"));
            assert_eq!((d.quantity, d.scale, d.offset), (q, 1.0, 0.0), "{s}");
            if !contextual(q) {
                let m = target(q);
                assert_eq!(m.quantity, q);
                assert_eq!(m.unit, s);
                for x in [-1.0e6, -1.5, 0.0, 1.0e-9, 0.5, 42.0, 1.0e6] {
                    assert_eq!(to_canonical(x, Some(s), m, FIVE_MINUTES), Ok(x), "{x} {s}");
                }
            }
        }
        for d in UNITS {
            assert!(ALL_QUANTITIES.contains(&d.quantity), "{}", d.symbol);
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
    fn heat_units_agree_with_each_other() {
        // 1 Gcal = 1.163 MWh = 1163 kWh; 1 Mcal = 1.163 kWh; 1 GJ = 1000 / 3.6 kWh.
        let e = |v, u| conv(v, u, Kind::Heat, "energy");
        assert!(close(e(1.0, "Gcal"), e(1.163, "MWh")));
        assert!(close(e(1.0, "Mcal"), 1.163));
        assert_eq!(e(1.0, "GJ"), 1000.0 / 3.6);
        assert!(close(e(1.0, "GJ"), e(1000.0, "MJ")));
        assert!(close(e(1.0, "GJ"), e(1.0e9, "J")));
    }

    #[test]
    fn percent_is_0_to_100_and_a_ratio_is_0_to_1() {
        for (v, unit) in [
            (45.0, "%"),
            (45.0, "%RH"),
            (0.45, "/"),
            (0.45, "ratio"),
            (45.0, "/100"),
        ] {
            assert!(
                close(conv(v, unit, Kind::Air, "humidity"), 45.0),
                "{v} {unit}"
            );
        }
        assert!(close(conv(0.2, "/", Kind::Traffic, "occupancy"), 20.0));
        assert!(close(conv(20.0, "%", Kind::Traffic, "occupancy"), 20.0));
        // A relative humidity is not an occupancy.
        let occ = metric(Kind::Traffic, "occupancy");
        let e = to_canonical(20.0, Some("%RH"), occ, Context::default()).unwrap_err();
        assert_eq!(
            e.0,
            "unit \"%RH\" is a relative humidity; occupancy needs a percentage (%)"
        );
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

    #[test]
    fn every_incompatible_pair_names_the_unit_and_the_metric() {
        for kind in Kind::ALL {
            for m in crate::normalize::catalog::metrics_of(kind) {
                for d in UNITS {
                    let Err(e) = to_canonical(1.0, Some(d.symbol), m, FIVE_MINUTES) else {
                        continue;
                    };
                    let quoted = format!("{:?}", d.symbol);
                    assert!(e.0.starts_with(&format!("unit {quoted} is ")), "{e}");
                    assert!(e.0.contains(m.name) && e.0.contains(m.unit), "{e}");
                    let compatible = d.quantity == m.quantity
                        || (d.quantity, m.quantity) == (Percent, RelativeHumidity)
                        || (d.quantity, m.quantity) == (MixingRatio, MassConcentration)
                        || (d.quantity, m.quantity) == (CountRate, Count);
                    // The one compatible pair that can fail: a mixing ratio for a metric
                    // without a molar mass.
                    assert!(
                        !compatible || (d.quantity == MixingRatio && m.molar_mass.is_none()),
                        "{e}"
                    );
                    if !compatible {
                        assert_eq!(
                            e.0,
                            format!(
                                "unit {quoted} is {}; {} needs {} ({})",
                                d.quantity.describe(),
                                m.name,
                                m.quantity.describe(),
                                m.unit
                            )
                        );
                    }
                }
            }
        }
    }

    /// The indices of rows whose conversion the table alone determines.
    fn plain_rows() -> Vec<usize> {
        (0..UNITS.len())
            .filter(|&i| !contextual(UNITS[i].quantity))
            .collect()
    }

    /// The inverse map, from the table: `value = (canonical − offset) / scale`.
    fn from_canonical(d: &UnitDef, c: f64) -> f64 {
        (c - d.offset) / d.scale
    }

    #[test]
    fn every_plain_unit_round_trips_at_fixed_points() {
        for i in plain_rows() {
            let d = &UNITS[i];
            for x in [
                -1.0e6, -273.15, -1.0, 0.0, 1.0e-9, 0.5, 1.0, 32.0, 1013.25, 1.0e6,
            ] {
                let c = to_canonical(x, Some(d.symbol), target(d.quantity), FIVE_MINUTES)
                    .unwrap_or_else(|e| panic!("{x} {}: {e}", d.symbol));
                let back = from_canonical(d, c);
                assert!(close(back, x), "{x} {} -> {c} -> {back}", d.symbol);
            }
        }
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![-1.0e6..1.0e6f64, -1.0..1.0f64, -1.0e-6..1.0e-6f64]
    }

    proptest! {
        #[test]
        fn plain_units_round_trip(i in prop::sample::select(plain_rows()), x in value()) {
            let d = &UNITS[i];
            let c = to_canonical(x, Some(d.symbol), target(d.quantity), FIVE_MINUTES).unwrap();
            let back = from_canonical(d, c);
            prop_assert!(close(back, x), "{} {} -> {} -> {}", x, d.symbol, c, back);
        }

        #[test]
        fn conversions_are_increasing(
            i in 0..UNITS.len(),
            x in value(),
            dx in 1.0e-3..1.0e6f64,
        ) {
            let d = &UNITS[i];
            let m = target(d.quantity);
            let fx = to_canonical(x, Some(d.symbol), m, FIVE_MINUTES).unwrap();
            let fy = to_canonical(x + dx, Some(d.symbol), m, FIVE_MINUTES).unwrap();
            prop_assert!(fx < fy, "{}: f({}) = {} !< f({}) = {}", d.symbol, x, fx, x + dx, fy);
        }
    }
}
