//! The canonical metrics of each sensor kind (DOMAIN.md §2): name, quantity, canonical unit and
//! the physical range outside which a value is refused. Data, not logic: extend the tables.

use crate::model::Kind;
use crate::normalize::units::Quantity;

/// A canonical metric of one kind of sensor.
#[derive(Debug, PartialEq)]
pub struct MetricDef {
    /// Field name in the store (`pm2_5`, `volume`, ...).
    pub name: &'static str,
    pub quantity: Quantity,
    /// The canonical unit's symbol, as stored and shown.
    pub unit: &'static str,
    /// Inclusive physical range in the canonical unit; values outside are refused.
    pub min: f64,
    pub max: f64,
    /// Molar mass in g/mol, for gases given as ppb/ppm (DOMAIN.md §2, 25 °C and 1 atm).
    pub molar_mass: Option<f64>,
}

const fn m(
    name: &'static str,
    quantity: Quantity,
    unit: &'static str,
    min: f64,
    max: f64,
) -> MetricDef {
    MetricDef {
        name,
        quantity,
        unit,
        min,
        max,
        molar_mass: None,
    }
}

const fn gas(name: &'static str, molar_mass: f64) -> MetricDef {
    MetricDef {
        name,
        quantity: Quantity::MassConcentration,
        unit: "µg/m³",
        min: 0.0,
        max: 100_000.0,
        molar_mass: Some(molar_mass),
    }
}

use Quantity::*;

/// Air-quality stations (ecology). Concentration ranges are generous: the aim is to refuse
/// physics errors (negative, absurd), not pollution episodes.
pub static AIR: &[MetricDef] = &[
    m("pm2_5", MassConcentration, "µg/m³", 0.0, 10_000.0),
    m("pm10", MassConcentration, "µg/m³", 0.0, 20_000.0),
    gas("no2", 46.01),
    gas("so2", 64.07),
    gas("o3", 48.00),
    gas("co", 28.01),
    gas("h2s", 34.08),
    m("temperature", Temperature, "°C", -80.0, 70.0),
    m("humidity", RelativeHumidity, "%RH", 0.0, 100.0),
    m("pressure", Pressure, "hPa", 300.0, 1_100.0),
];

/// Traffic detectors (transport): per lane and interval.
pub static TRAFFIC: &[MetricDef] = &[
    m("volume", Count, "veh", 0.0, 100_000.0),
    m("interval", Duration, "s", 1.0, 86_400.0),
    m("speed", Speed, "km/h", 0.0, 300.0),
    m("occupancy", Percent, "%", 0.0, 100.0),
    // FIWARE TrafficFlowObserved `congested`.
    m("congested", Flag, "bool", 0.0, 1.0),
];

/// Water meters (housing and utilities): cumulative register and flow.
pub static WATER: &[MetricDef] = &[
    m("volume", Volume, "m³", 0.0, 1.0e12),
    m("flow", VolumeFlow, "m³/h", 0.0, 1.0e6),
    // FIWARE WaterConsumptionObserved leak and tamper alarms.
    m("leak_alarm", Flag, "bool", 0.0, 1.0),
    m("tamper_alarm", Flag, "bool", 0.0, 1.0),
];

/// Heat meters: cumulative energy, with the heat carrier's flow and temperatures.
pub static HEAT: &[MetricDef] = &[
    m("energy", Energy, "kWh", 0.0, 1.0e13),
    m("power", Power, "kW", 0.0, 1.0e7),
    m("volume", Volume, "m³", 0.0, 1.0e12),
    m("flow", VolumeFlow, "m³/h", 0.0, 1.0e6),
    m("supply_temperature", Temperature, "°C", -50.0, 200.0),
    m("return_temperature", Temperature, "°C", -50.0, 200.0),
];

/// Electricity meters: cumulative energy and instantaneous power.
pub static POWER: &[MetricDef] = &[
    m("energy", Energy, "kWh", 0.0, 1.0e13),
    m("power", Power, "kW", -1.0e7, 1.0e7),
    m("voltage", Voltage, "V", 0.0, 1.0e6),
    m("current", Current, "A", -1.0e5, 1.0e5),
];

/// Gas meters: cumulative volume and flow.
pub static GAS: &[MetricDef] = &[
    m("volume", Volume, "m³", 0.0, 1.0e12),
    m("flow", VolumeFlow, "m³/h", 0.0, 1.0e6),
];

/// Devices that report only their health (cameras, street lights, school sensors, panic
/// buttons): what coverage needs to know they are alive, in any sphere.
pub static STATUS: &[MetricDef] = &[
    m("battery", Percent, "%", 0.0, 100.0),
    // Received signal strength; -150 dBm is below any receiver's floor, +30 dBm a 1 W radio.
    m("rssi", SignalLevel, "dBm", -150.0, 30.0),
    // Seconds since the device started; up to about 136 years (u32 seconds on the device).
    m("uptime", Duration, "s", 0.0, 4.3e9),
    m("online", Flag, "bool", 0.0, 1.0),
];

/// The metrics a kind of sensor may report.
pub fn metrics_of(kind: Kind) -> &'static [MetricDef] {
    match kind {
        Kind::Air => AIR,
        Kind::Traffic => TRAFFIC,
        Kind::Water => WATER,
        Kind::Heat => HEAT,
        Kind::Power => POWER,
        Kind::Gas => GAS,
        Kind::Status => STATUS,
    }
}

/// The canonical metric `name` of `kind`, if there is one.
pub fn lookup(kind: Kind, name: &str) -> Option<&'static MetricDef> {
    metrics_of(kind).iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_unique_metric_names_and_sane_ranges() {
        for kind in Kind::ALL {
            let defs = metrics_of(kind);
            assert!(!defs.is_empty(), "{kind} has no metrics");
            for (i, d) in defs.iter().enumerate() {
                assert!(d.min < d.max, "{kind}.{}: empty range", d.name);
                assert!(
                    defs[i + 1..].iter().all(|o| o.name != d.name),
                    "{kind}.{} is listed twice",
                    d.name
                );
                assert_eq!(d.unit, d.quantity.canonical_symbol(), "{kind}.{}", d.name);
            }
        }
    }

    #[test]
    fn gases_carry_the_molar_masses_of_domain_md() {
        assert_eq!(
            lookup(Kind::Air, "no2").and_then(|d| d.molar_mass),
            Some(46.01)
        );
        assert_eq!(
            lookup(Kind::Air, "co").and_then(|d| d.molar_mass),
            Some(28.01)
        );
        assert_eq!(lookup(Kind::Air, "pm2_5").and_then(|d| d.molar_mass), None);
        assert!(lookup(Kind::Water, "pm2_5").is_none());
    }
}
