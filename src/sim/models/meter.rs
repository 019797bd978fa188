//! Utility meters: water, heat, power and gas, as an apartment or a building reports them —
//! cumulative registers, interval flows and powers, the heat carrier's temperatures, the mains
//! voltage — and the district input meters above them.
//!
//! Consumption per report step is drawn around an expected rate:
//! - a **daily profile** in local time (morning and evening peaks for water, power and gas
//!   cooking, other shapes on days off) × a month factor × a day factor (log-normal, per meter
//!   and day) × the meter's size (household size, log-normal per meter, mean-preserving);
//! - **space heating** (heat, gas) = UA × max(0, 20 °C − T_out), T_out the city's daily mean
//!   temperature from [`air::daily_mean_temperature`] (the same weather as the air stations),
//!   UA calibrated so that a climatological year uses `heating_share` of the annual consumption;
//!   district heat only in the season (15 Oct – 15 Apr), gas boilers whenever the day is below
//!   +10 °C;
//! - bursty uses (water taps, a shower) as a compound Poisson sum of events of mean
//!   `event_size`, continuous ones (power, heat) with a log-normal scatter per step.
//!
//! `flow` and `power` are the mean over the step since the previous report, so
//! register increment = rate × Δt exactly (before the register's resolution); on the first report
//! they are the expected rate. Faults: a **leak** starts with `leak_per_day` and stays (a constant
//! extra flow, or load); a **reset** (meter replaced, calculator reset) sets the registers to 0
//! with `reset_per_day`; a **rollover** wraps a register at 10^digits. Both are counted.

use std::sync::OnceLock;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::air::{daily_mean_temperature, TEMPERATURE_MONTHLY};
use super::clock::{hourly, mean, monthly, Local, NS_PER_HOUR};
use super::noise::{gauss, hash2, hash3, lognormal, poisson, tag, unit};
use super::Value;
use crate::model::Kind;

/// Indoor design temperature (°C) for heating degree-days (apartments: 20–22 °C by the building
/// code; 20 °C used as the base, DOMAIN.md §5 suggests a configurable base).
pub const INDOOR_C: f64 = 20.0;
/// Gas boilers of private houses run when the day's mean is below this (°C).
pub const GAS_HEATING_BELOW_C: f64 = 10.0;
/// Water's volumetric heat capacity (kWh per m³ and K): 4.19 kJ/(kg·K) × 1000 kg/m³ / 3600.
pub const WATER_KWH_PER_M3_K: f64 = 1.163;
/// Resolution of a heat meter's carrier volume register (m³).
pub const CARRIER_RESOLUTION: f64 = 0.01;
/// Power factor of household loads (0.9–0.98 with modern electronics).
pub const POWER_FACTOR: f64 = 0.95;
/// Nominal mains voltage in Kazakhstan (V), GOST 32144-2013 ±10 %: 207–253 V.
pub const NOMINAL_VOLTAGE: f64 = 230.0;

/// Household cold-water use by hour of a weekday (h:00 local, relative): the morning wash
/// 07:00–08:30, the evening 19:00–22:00, nights near zero.
#[rustfmt::skip]
const WATER_WEEKDAY: [f64; 24] = [
    0.15, 0.08, 0.05, 0.05, 0.06, 0.20, 0.90, 2.00, 2.10, 1.50, 1.00, 0.90,
    1.00, 1.00, 0.90, 0.85, 0.95, 1.20, 1.60, 1.90, 2.00, 1.80, 1.30, 0.60,
];
/// Days off: a late, long morning peak.
#[rustfmt::skip]
const WATER_DAY_OFF: [f64; 24] = [
    0.30, 0.15, 0.08, 0.05, 0.05, 0.08, 0.20, 0.50, 1.10, 1.70, 1.90, 1.70,
    1.40, 1.30, 1.20, 1.10, 1.10, 1.20, 1.40, 1.60, 1.70, 1.60, 1.20, 0.70,
];
/// Household electricity: a base load (fridge, standby ≈ 40 % of the mean) with a morning
/// peak and the evening peak 19:00–22:00 (cooking on electric stoves, lighting, TV).
#[rustfmt::skip]
const POWER_WEEKDAY: [f64; 24] = [
    0.55, 0.45, 0.42, 0.40, 0.40, 0.45, 0.70, 1.10, 1.15, 0.90, 0.80, 0.80,
    0.85, 0.85, 0.80, 0.80, 0.90, 1.10, 1.50, 1.90, 2.10, 2.00, 1.60, 0.90,
];
#[rustfmt::skip]
const POWER_DAY_OFF: [f64; 24] = [
    0.60, 0.50, 0.45, 0.42, 0.40, 0.42, 0.50, 0.70, 0.95, 1.15, 1.20, 1.20,
    1.25, 1.20, 1.10, 1.05, 1.10, 1.30, 1.60, 1.90, 2.00, 1.90, 1.50, 0.90,
];
/// Gas for cooking and hot water: breakfast, lunch, dinner.
#[rustfmt::skip]
const GAS_COOKING: [f64; 24] = [
    0.05, 0.03, 0.03, 0.03, 0.05, 0.20, 0.90, 1.90, 1.70, 0.90, 0.70, 1.00,
    1.60, 1.40, 0.80, 0.60, 0.80, 1.50, 2.40, 2.40, 1.60, 0.90, 0.40, 0.15,
];
/// Month factors of the non-heating use (mid-month, normalised to a mean of 1 where used):
/// water a little higher in summer (showers, gardens); power higher in winter (lighting, long
/// evenings) and in July (air conditioning); hot water's heat higher in winter (the cold water
/// arrives at ≈ 5 °C instead of ≈ 15 °C).
const WATER_MONTH: [f64; 12] = [
    0.95, 0.95, 0.97, 1.0, 1.03, 1.08, 1.1, 1.1, 1.03, 0.98, 0.95, 0.95,
];
const POWER_MONTH: [f64; 12] = [
    1.2, 1.12, 1.0, 0.92, 0.88, 0.9, 0.98, 0.97, 0.9, 0.98, 1.1, 1.22,
];
const HOT_WATER_MONTH: [f64; 12] = [
    1.15, 1.15, 1.1, 1.0, 0.92, 0.85, 0.82, 0.82, 0.87, 0.97, 1.07, 1.13,
];

/// What kind of household or building a meter serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterProfile {
    /// Mean consumption per day over a year (m³ or kWh), over the fleet.
    pub daily_mean: f64,
    /// Spread of the meters' own means (household size): log-normal σ, mean-preserving.
    pub size_sigma: f64,
    /// Day-to-day variation (log-normal σ of a day's factor).
    pub day_sigma: f64,
    /// Scatter of continuous consumption between report steps (log-normal σ).
    pub step_sigma: f64,
    /// Share of the annual consumption that is space heating (heat, gas), spread by heating
    /// degree-days; the rest follows the daily profile.
    pub heating_share: f64,
    /// Integer digits of the registers: they roll over to 0 at 10^digits.
    pub digits: u32,
    /// Resolution of the reported registers in decimals (truncated, as a counter shows it).
    pub decimals: u32,
    /// The meter's largest rate (m³/h or kW): its Qmax, or the supply's limit.
    pub max_rate: f64,
    /// Mean size of one use (m³) for bursty consumption, compound Poisson; 0 for continuous.
    pub event_size: f64,
}

impl MeterProfile {
    /// An apartment-block / household meter of `kind`:
    /// - **Water**: a household of about three at ≈ 130–150 l per person and day (0.4 m³/day);
    ///   a DN15 meter (Q3 2.5 m³/h), 5 digits and 3 decimals (litres); uses of 12 l on average
    ///   (a hand wash 2 l, a flush 6 l, a shower 40–60 l).
    /// - **Heat**: a building's meter (≈ 60 flats, 4,000 m², 1970s–80s stock at ≈ 180 kWh/m²
    ///   per year for heating) with hot water from the network: ≈ 920 MWh a year, 2,500 kWh/day
    ///   on average, 78 % of it heating; 8 digits of kWh.
    /// - **Power**: a flat at ≈ 180–200 kWh a month (6.5 kWh/day), 6 digits and 1 decimal, a 60 A
    ///   single-phase supply (13.8 kW).
    /// - **Gas**: a private house with a gas boiler and stove, ≈ 2,200 m³ a year (6 m³/day), 75 %
    ///   heating; a G4 diaphragm meter (Qmax 6 m³/h), 5 digits and 3 decimals.
    ///
    /// # Panics
    /// For `Kind::Air`, `Kind::Traffic` and `Kind::Status`, which are not meters.
    pub fn typical(kind: Kind) -> MeterProfile {
        match kind {
            Kind::Water => MeterProfile {
                daily_mean: 0.4,
                size_sigma: 0.45,
                day_sigma: 0.2,
                step_sigma: 0.0,
                heating_share: 0.0,
                digits: 5,
                decimals: 3,
                max_rate: 2.5,
                event_size: 0.012,
            },
            Kind::Heat => MeterProfile {
                daily_mean: 2_500.0,
                size_sigma: 0.35,
                day_sigma: 0.05,
                step_sigma: 0.05,
                heating_share: 0.78,
                digits: 8,
                decimals: 0,
                max_rate: 700.0,
                event_size: 0.0,
            },
            Kind::Power => MeterProfile {
                daily_mean: 6.5,
                size_sigma: 0.4,
                day_sigma: 0.15,
                step_sigma: 0.3,
                heating_share: 0.0,
                digits: 6,
                decimals: 1,
                max_rate: 13.8,
                event_size: 0.0,
            },
            Kind::Gas => MeterProfile {
                daily_mean: 6.0,
                size_sigma: 0.35,
                day_sigma: 0.12,
                step_sigma: 0.3,
                heating_share: 0.75,
                digits: 5,
                decimals: 3,
                max_rate: 6.0,
                event_size: 0.0,
            },
            Kind::Air | Kind::Traffic | Kind::Status => panic!("{kind} is not a meter"),
        }
    }
}

/// Fault probabilities per meter and day.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterFaults {
    /// A leak starts (and stays): water, gas and heat carrier a constant extra flow, power a
    /// constant extra load.
    pub leak_per_day: f64,
    /// The registers reset to 0 (meter replaced, calculator reset).
    pub reset_per_day: f64,
}

impl MeterFaults {
    pub const NONE: MeterFaults = MeterFaults {
        leak_per_day: 0.0,
        reset_per_day: 0.0,
    };
}

/// Heating degree-days (base [`INDOOR_C`]) of a climatological year, counting the days the
/// heating runs: the district-heating season for heat, days below [`GAS_HEATING_BELOW_C`] for gas.
fn reference_degree_days(kind: Kind) -> f64 {
    static HEAT: OnceLock<f64> = OnceLock::new();
    static GAS: OnceLock<f64> = OnceLock::new();
    let compute = |kind: Kind| {
        // A climatological (non-leap) year, at noon of each local day.
        let first = super::clock::days_from_civil(2025, 1, 1);
        (0..365)
            .map(|d| {
                let t = (first + d) * super::clock::NS_PER_DAY + 7 * NS_PER_HOUR;
                let local = Local::at(t);
                let temp = monthly(&TEMPERATURE_MONTHLY, local.month_pos());
                if heating_on(kind, &local, temp) {
                    (INDOOR_C - temp).max(0.0)
                } else {
                    0.0
                }
            })
            .sum()
    };
    match kind {
        Kind::Gas => *GAS.get_or_init(|| compute(Kind::Gas)),
        _ => *HEAT.get_or_init(|| compute(Kind::Heat)),
    }
}

fn heating_on(kind: Kind, local: &Local, daily_mean_temperature: f64) -> bool {
    match kind {
        Kind::Heat => local.heating_season(),
        Kind::Gas => daily_mean_temperature < GAS_HEATING_BELOW_C,
        _ => false,
    }
}

/// The heat network's temperature chart (°C): supply and return fall linearly from the design
/// 130/70 at −20 °C outdoors to 70/40 at +8 °C, and stay at 70/40 (the floor hot water needs)
/// above it and out of the heating season.
pub fn heat_network_temperatures(local: &Local, outdoor: f64) -> (f64, f64) {
    let frac = if local.heating_season() {
        ((8.0 - outdoor) / 28.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (70.0 + 60.0 * frac, 40.0 + 30.0 * frac)
}

const T_METER: u64 = tag("meter");
const T_DAY: u64 = tag("meter.day");

/// Expected rates at an instant (per hour, the register's unit).
struct Rates {
    base: f64,
    heating: f64,
    outdoor: f64,
}

/// A water, heat, power or gas meter.
#[derive(Debug, Clone)]
pub struct Meter {
    kind: Kind,
    seed: u64,
    key: u64,
    rng: SmallRng,
    // What the steps need of the profile and the faults (f32: 500,000 meters fit in ~100 MB).
    day_sigma: f32,
    step_sigma: f32,
    event_size: f32,
    max_rate: f32,
    leak_per_day: f32,
    reset_per_day: f32,
    /// Mean non-heating consumption per hour, this meter's size included.
    base_per_h: f64,
    /// Heating consumption per hour and K below [`INDOOR_C`].
    ua: f64,
    modulus: f64,
    resolution: f64,
    /// The main register (m³ for water and gas, kWh for heat and power).
    register: f64,
    /// Heat only: the carrier's volume register (m³).
    volume: f64,
    /// The previous report's time, [`NEVER`] before the first.
    last_ns: i64,
    increment: f64,
    /// Mean rate over the last step (m³/h or kW).
    rate: f64,
    /// Heat: mean carrier flow over the last step (m³/h), supply and return (°C).
    carrier_flow: f32,
    supply: f32,
    ret: f32,
    /// Power: this meter's voltage offset on its feeder (V), and the last voltage.
    feeder_offset: f32,
    voltage: f32,
    /// The leak's extra rate (m³/h, kW; heat: m³/h of carrier), 0 without one.
    leak: f64,
    /// When the leak started, [`NEVER`] without one.
    leak_since_ns: i64,
    resets: u32,
}

/// No time yet.
const NEVER: i64 = i64::MIN;

impl Meter {
    /// kind: Water | Heat | Power | Gas. The register starts where a meter of this size would be
    /// after 0–8 years of service (wrapped at 10^digits).
    ///
    /// # Panics
    /// For `Kind::Air`, `Kind::Traffic` and `Kind::Status`.
    pub fn new(
        seed: u64,
        id: u64,
        kind: Kind,
        profile: MeterProfile,
        faults: MeterFaults,
    ) -> Meter {
        assert!(
            matches!(kind, Kind::Water | Kind::Heat | Kind::Power | Kind::Gas),
            "{kind} is not a meter"
        );
        let key = hash3(seed, T_METER, id);
        let mut rng = SmallRng::seed_from_u64(key);
        let size = lognormal(profile.size_sigma, gauss(hash2(key, 1)));
        let daily = profile.daily_mean * size;
        let heating_share = profile.heating_share.clamp(0.0, 1.0);
        let ua = if heating_share > 0.0 {
            daily * 365.0 * heating_share / (24.0 * reference_degree_days(kind))
        } else {
            0.0
        };
        let modulus = 10f64.powi(profile.digits.clamp(1, 15) as i32);
        let register = (daily * 365.0 * 8.0 * rng.random::<f64>()) % modulus;
        Meter {
            kind,
            seed,
            key,
            rng,
            day_sigma: profile.day_sigma as f32,
            step_sigma: profile.step_sigma as f32,
            event_size: profile.event_size as f32,
            max_rate: profile.max_rate as f32,
            leak_per_day: faults.leak_per_day as f32,
            reset_per_day: faults.reset_per_day as f32,
            base_per_h: daily * (1.0 - heating_share) / 24.0,
            ua,
            modulus,
            resolution: 10f64.powi(-(profile.decimals.min(9) as i32)),
            register,
            volume: register / 40.0 % modulus,
            last_ns: NEVER,
            increment: 0.0,
            rate: 0.0,
            carrier_flow: 0.0,
            supply: 70.0,
            ret: 40.0,
            feeder_offset: (-6.0 + 8.0 * unit(hash2(key, 2))) as f32,
            voltage: NOMINAL_VOLTAGE as f32,
            leak: 0.0,
            leak_since_ns: NEVER,
            resets: 0,
        }
    }

    /// The same meter with its register set (wrapped at 10^digits): to start near a rollover.
    pub fn with_register(mut self, register: f64) -> Meter {
        self.register = register.max(0.0) % self.modulus;
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The register as the meter shows it (truncated to its resolution).
    pub fn register(&self) -> f64 {
        self.shown(self.register)
    }

    fn shown(&self, r: f64) -> f64 {
        (r / self.resolution).floor() * self.resolution
    }

    fn rates(&self, local: &Local) -> Rates {
        let hour = local.hour;
        let pos = local.month_pos();
        let day = lognormal(
            f64::from(self.day_sigma),
            gauss(hash3(self.key, T_DAY, local.day as u64)),
        );
        let off = local.day_off();
        let shape = match self.kind {
            Kind::Water | Kind::Heat => {
                let (table, m) = if off {
                    (&WATER_DAY_OFF, const { mean(&WATER_DAY_OFF) })
                } else {
                    (&WATER_WEEKDAY, const { mean(&WATER_WEEKDAY) })
                };
                let month = if self.kind == Kind::Heat {
                    monthly(&HOT_WATER_MONTH, pos) / const { mean(&HOT_WATER_MONTH) }
                } else {
                    monthly(&WATER_MONTH, pos) / const { mean(&WATER_MONTH) }
                };
                hourly(table, hour) / m * month
            }
            Kind::Power => {
                let (table, m) = if off {
                    (&POWER_DAY_OFF, const { mean(&POWER_DAY_OFF) })
                } else {
                    (&POWER_WEEKDAY, const { mean(&POWER_WEEKDAY) })
                };
                hourly(table, hour) / m * monthly(&POWER_MONTH, pos) / const { mean(&POWER_MONTH) }
            }
            _ => hourly(&GAS_COOKING, hour) / const { mean(&GAS_COOKING) },
        };
        let (heating, outdoor) = if self.ua > 0.0 || self.kind == Kind::Heat {
            let outdoor = daily_mean_temperature(self.seed, local);
            let on = heating_on(self.kind, local, outdoor);
            // Gas boilers set back at night (23:00–06:00) by about a tenth.
            let setback = if self.kind == Kind::Gas && !(6.0..23.0).contains(&hour) {
                0.9
            } else {
                1.0
            };
            let heating = if on {
                self.ua * (INDOOR_C - outdoor).max(0.0) * setback
            } else {
                0.0
            };
            (heating, outdoor)
        } else {
            (0.0, 0.0)
        };
        Rates {
            base: self.base_per_h * shape * day,
            heating: heating * day.sqrt(),
            outdoor,
        }
    }

    /// Draws the non-heating consumption of a step of expected `mu`.
    fn draw_base(&mut self, mu: f64) -> f64 {
        if mu <= 0.0 {
            return 0.0;
        }
        let size = f64::from(self.event_size);
        if size > 0.0 {
            let z = gauss(self.rng.random());
            let rng = &mut self.rng;
            let n = poisson(mu / size, 1.0, || rng.random::<f64>(), z);
            if n <= 12.0 {
                (0..n as u32)
                    .map(|_| -size * (1.0 - self.rng.random::<f64>()).ln())
                    .sum()
            } else {
                (n * size + n.sqrt() * size * gauss(self.rng.random())).max(0.0)
            }
        } else {
            mu * lognormal(f64::from(self.step_sigma), gauss(self.rng.random()))
        }
    }

    /// The size of a leak of this kind (log-uniform): water 5–50 l/h (a running cistern), gas
    /// 5–30 l/h, heat 0.05–0.5 m³/h of carrier (a leaking riser), power 0.03–0.3 kW (a faulty
    /// appliance, an earth leakage).
    fn draw_leak(&mut self) -> f64 {
        let (lo, hi): (f64, f64) = match self.kind {
            Kind::Water => (0.005, 0.05),
            Kind::Gas => (0.005, 0.03),
            Kind::Heat => (0.05, 0.5),
            _ => (0.03, 0.3),
        };
        lo * (hi / lo).powf(self.rng.random::<f64>())
    }

    /// Probability of an event of `per_day` happening within `dt_h` hours.
    fn chance(per_day: f64, dt_h: f64) -> f64 {
        if per_day <= 0.0 {
            0.0
        } else if per_day >= 1.0 {
            1.0
        } else {
            1.0 - (1.0 - per_day).powf(dt_h / 24.0)
        }
    }

    /// The register and instantaneous values at `t_ns` (reports every 15 min or hourly; `t_ns`
    /// increasing; a time not after the previous one reports the same registers with zero
    /// consumption): water/gas: `volume` (cumulative m³) and `flow` (m³/h); heat: `energy`
    /// (cumulative kWh), `power` (kW), `volume`, `flow`, `supply_temperature`,
    /// `return_temperature`; power: `energy` (cumulative kWh), `power` (kW), `voltage` (V),
    /// `current` (A).
    pub fn report(&mut self, t_ns: i64) -> Vec<Value> {
        match self.last_ns {
            NEVER => {
                let local = Local::at(t_ns);
                let r = self.rates(&local);
                self.increment = 0.0;
                self.settle(&local, r.base + r.heating, r.outdoor);
                self.last_ns = t_ns;
            }
            prev if t_ns <= prev => self.increment = 0.0,
            prev => {
                self.step(prev, t_ns);
                self.last_ns = t_ns;
            }
        }
        self.values()
    }

    fn step(&mut self, prev: i64, t_ns: i64) {
        let dt_h = (t_ns - prev) as f64 / NS_PER_HOUR as f64;
        let mid = prev + (t_ns - prev) / 2;
        let local = Local::at(mid);
        let r = self.rates(&local);
        let base = self.draw_base(r.base * dt_h);
        let heating = r.heating
            * dt_h
            * lognormal(
                f64::from(self.step_sigma).min(0.1),
                gauss(self.rng.random()),
            );
        let mut used = (base + heating).min(f64::from(self.max_rate) * dt_h);

        // A leak may start within the step; from then on it adds its constant rate.
        if self.leak == 0.0
            && self.rng.random::<f64>() < Self::chance(f64::from(self.leak_per_day), dt_h)
        {
            self.leak = self.draw_leak();
            let since = prev + ((t_ns - prev) as f64 * self.rng.random::<f64>()) as i64;
            self.leak_since_ns = since.max(prev + 1);
        }
        let leak_h = if self.leak_since_ns == NEVER {
            0.0
        } else {
            (t_ns - self.leak_since_ns.max(prev)) as f64 / NS_PER_HOUR as f64
        };
        let (supply, ret) = heat_network_temperatures(&local, r.outdoor);
        let mut carrier = 0.0;
        if self.kind == Kind::Heat {
            // The carrier that delivered `used`, and a leak's hot water lost downstream of the
            // meter (its heat counted from ≈ 10 °C make-up water).
            carrier = used / (WATER_KWH_PER_M3_K * (supply - ret)) + self.leak * leak_h;
            used += self.leak * leak_h * WATER_KWH_PER_M3_K * (supply - 10.0);
        } else {
            used += self.leak * leak_h;
        }

        // A reset at a random point of the step: what came after it is on the new register.
        if self.rng.random::<f64>() < Self::chance(f64::from(self.reset_per_day), dt_h) {
            let after = self.rng.random::<f64>();
            self.register = used * after;
            self.volume = carrier * after;
            self.resets += 1;
        } else {
            self.register += used;
            self.volume += carrier;
        }
        while self.register >= self.modulus {
            self.register -= self.modulus;
            self.resets += 1;
        }
        while self.volume >= self.modulus {
            self.volume -= self.modulus;
            self.resets += 1;
        }
        self.increment = used;
        self.carrier_flow = (carrier / dt_h) as f32;
        self.settle(&local, used / dt_h, r.outdoor);
    }

    /// Sets the step's mean rate and the derived instantaneous values.
    fn settle(&mut self, local: &Local, rate: f64, outdoor: f64) {
        self.rate = rate;
        match self.kind {
            Kind::Heat => {
                let (s, r) = heat_network_temperatures(local, outdoor);
                let z = gauss(self.rng.random());
                self.supply = (s + 0.5 * z) as f32;
                self.ret = (r + 0.5 * gauss(self.rng.random())) as f32;
                if self.last_ns == NEVER {
                    self.carrier_flow = (rate / (WATER_KWH_PER_M3_K * (s - r)) + self.leak) as f32;
                }
            }
            Kind::Power => {
                // The feeder sags in the evening peak: up to 10 V below its light-load level.
                let feeder = hourly(&POWER_WEEKDAY, local.hour) / 2.1;
                self.voltage = (NOMINAL_VOLTAGE + 4.0 + f64::from(self.feeder_offset)
                    - 10.0 * feeder
                    + 1.5 * gauss(self.rng.random()))
                .clamp(195.0, 253.0) as f32;
            }
            _ => {}
        }
    }

    fn values(&self) -> Vec<Value> {
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        let r1 = |v: f64| (v * 10.0).round() / 10.0;
        match self.kind {
            Kind::Heat => vec![
                ("energy", self.shown(self.register)),
                ("power", r1(self.rate)),
                (
                    "volume",
                    (self.volume / CARRIER_RESOLUTION).floor() * CARRIER_RESOLUTION,
                ),
                ("flow", r3(f64::from(self.carrier_flow))),
                ("supply_temperature", r1(f64::from(self.supply))),
                ("return_temperature", r1(f64::from(self.ret))),
            ],
            Kind::Power => vec![
                ("energy", self.shown(self.register)),
                ("power", r3(self.rate)),
                ("voltage", r1(f64::from(self.voltage))),
                (
                    "current",
                    ((self.rate * 1000.0 / (f64::from(self.voltage) * POWER_FACTOR)) * 100.0)
                        .round()
                        / 100.0,
                ),
            ],
            _ => vec![
                ("volume", self.shown(self.register)),
                ("flow", r3(self.rate)),
            ],
        }
    }

    /// Consumption (register increase, m³ or kWh) since the previous report, for district
    /// balances: the true consumption, unaffected by the register's resolution, a reset or a
    /// rollover in the step.
    pub fn last_increment(&self) -> f64 {
        self.increment
    }

    /// Whether a leak is active (for tests and the audit).
    pub fn leaking(&self) -> bool {
        self.leak > 0.0
    }

    /// The leak's extra rate (m³/h; kW for power; m³/h of carrier for heat), 0 without one.
    pub fn leak_rate(&self) -> f64 {
        self.leak
    }

    /// When the leak started, if one did.
    pub fn leak_since_ns(&self) -> Option<i64> {
        (self.leak_since_ns != NEVER).then_some(self.leak_since_ns)
    }

    /// How many resets and rollovers happened so far.
    pub fn resets(&self) -> u32 {
        self.resets
    }
}

/// A district input meter: its register grows by the sum of its consumers' increments × (1 + loss).
#[derive(Debug, Clone)]
pub struct DistrictInput {
    kind: Kind,
    loss_fraction: f64,
    register: f64,
    increment: f64,
}

impl DistrictInput {
    /// `loss_fraction`: the share lost between the input and the consumers (water: leakage in
    /// the mains, often 0.1–0.4 in Central Asian networks; heat: network losses ≈ 0.1–0.2;
    /// power: ≈ 0.05–0.1).
    pub fn new(kind: Kind, loss_fraction: f64, start_register: f64) -> DistrictInput {
        DistrictInput {
            kind,
            loss_fraction: loss_fraction.max(0.0),
            register: start_register.max(0.0),
            increment: 0.0,
        }
    }

    /// Adds the consumers' increments of one reporting step and returns the input meter's values
    /// at t_ns: water/gas `volume` and `flow`, heat and power `energy` and `power`.
    pub fn report(&mut self, t_ns: i64, consumers_increment: f64, dt_s: f64) -> Vec<Value> {
        let _ = t_ns;
        self.increment = consumers_increment.max(0.0) * (1.0 + self.loss_fraction);
        self.register += self.increment;
        let rate = if dt_s > 0.0 {
            self.increment * 3600.0 / dt_s
        } else {
            0.0
        };
        match self.kind {
            Kind::Heat | Kind::Power => vec![("energy", self.register), ("power", rate)],
            _ => vec![("volume", self.register), ("flow", rate)],
        }
    }

    /// The register (m³ or kWh).
    pub fn register(&self) -> f64 {
        self.register
    }

    /// The input of the last step (m³ or kWh).
    pub fn last_increment(&self) -> f64 {
        self.increment
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::{local_ns, NS_PER_DAY, NS_PER_S};
    use super::*;
    use crate::normalize::catalog;

    const SEED: u64 = 2026;
    const QUARTER_HOUR: i64 = 900 * NS_PER_S;
    const METERS: [Kind; 4] = [Kind::Water, Kind::Heat, Kind::Power, Kind::Gas];

    fn get(rec: &[Value], name: &str) -> f64 {
        rec.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap()
    }

    fn meter(id: u64, kind: Kind, faults: MeterFaults) -> Meter {
        Meter::new(SEED, id, kind, MeterProfile::typical(kind), faults)
    }

    #[test]
    fn the_same_seed_and_calls_give_the_same_values_and_another_id_others() {
        let faults = MeterFaults {
            leak_per_day: 0.05,
            reset_per_day: 0.01,
        };
        let t0 = local_ns(2026, 1, 10, 0.0);
        for kind in METERS {
            let run = |id| {
                let mut m = meter(id, kind, faults);
                (0..2000)
                    .map(|i| m.report(t0 + i * QUARTER_HOUR))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(1), run(1), "{kind}");
            assert_ne!(run(1), run(2), "{kind}");
        }
    }

    #[test]
    fn every_value_is_within_the_catalog_over_a_year() {
        let faults = MeterFaults {
            leak_per_day: 0.01,
            reset_per_day: 0.005,
        };
        let t0 = local_ns(2025, 7, 1, 0.0);
        for kind in METERS {
            for id in 0..3 {
                let mut m = meter(id, kind, faults);
                for i in 0..(365 * 96) {
                    let rec = m.report(t0 + i * QUARTER_HOUR);
                    for (name, v) in &rec {
                        let def = catalog::lookup(kind, name).expect("a catalog metric");
                        assert!(
                            v.is_finite() && *v >= def.min && *v <= def.max,
                            "{kind}.{name} = {v} outside {}..{}",
                            def.min,
                            def.max
                        );
                    }
                    if kind == Kind::Power {
                        let v = get(&rec, "voltage");
                        assert!((195.0..=253.0).contains(&v), "{v} V");
                    }
                }
            }
        }
    }

    #[test]
    fn registers_never_decrease_except_at_a_counted_reset_or_rollover() {
        for kind in METERS {
            let mut profile = MeterProfile::typical(kind);
            // Small registers, so that a year rolls them over.
            profile.digits = match kind {
                Kind::Heat => 5,
                _ => 2,
            };
            let faults = MeterFaults {
                leak_per_day: 0.0,
                reset_per_day: 0.01,
            };
            let mut m = Meter::new(SEED, 3, kind, profile, faults).with_register(90.0);
            let registers = |rec: &[Value]| -> Vec<f64> {
                rec.iter()
                    .filter(|(n, _)| matches!(*n, "energy" | "volume"))
                    .map(|(_, v)| *v)
                    .collect()
            };
            let t0 = local_ns(2025, 9, 1, 0.0);
            let mut last = registers(&m.report(t0));
            let mut resets = m.resets();
            let mut decreases = 0;
            for i in 1..(365 * 96) {
                let now = registers(&m.report(t0 + i * QUARTER_HOUR));
                let down = now.iter().zip(&last).any(|(n, l)| n < l);
                if down {
                    decreases += 1;
                    assert!(m.resets() > resets, "{kind}: {last:?} → {now:?} uncounted");
                }
                resets = m.resets();
                last = now;
            }
            assert!(decreases >= 2, "{kind}: {decreases} decreases in a year");
            assert!(m.resets() as usize >= decreases);
        }
    }

    #[test]
    fn flow_times_the_step_is_the_consumption() {
        for kind in METERS {
            let mut m = meter(8, kind, MeterFaults::NONE);
            let t0 = local_ns(2026, 2, 2, 0.0);
            m.report(t0);
            for i in 1..500 {
                let rec = m.report(t0 + i * QUARTER_HOUR);
                let rate = match kind {
                    Kind::Heat | Kind::Power => get(&rec, "power"),
                    _ => get(&rec, "flow"),
                };
                let step = m.last_increment();
                // Rates are rounded to 0.001 (0.1 kW for heat).
                let tolerance = if kind == Kind::Heat { 0.05 } else { 0.0005 } * 0.25;
                assert!(
                    (rate * 0.25 - step).abs() <= tolerance + 1e-12,
                    "{kind}: {rate} {step}"
                );
            }
        }
    }

    #[test]
    fn a_leak_raises_the_minimum_night_flow_and_it_stays_raised() {
        let faults = MeterFaults {
            leak_per_day: 0.02,
            reset_per_day: 0.0,
        };
        let t0 = local_ns(2026, 3, 1, 0.0);
        let days = 240;
        // A meter whose leak starts in the middle of the run (several ids tried, in order).
        let (mut m, start_day) = (0..100)
            .find_map(|id| {
                let mut m = meter(id, Kind::Water, faults);
                for i in 0..(days * 96) {
                    m.report(t0 + i * QUARTER_HOUR);
                }
                let since = m.leak_since_ns()?;
                let day = (since - t0) / NS_PER_DAY;
                (30..days - 30)
                    .contains(&day)
                    .then(|| (meter(id, Kind::Water, faults), day))
            })
            .expect("a meter that starts leaking");
        // The minimum of the 02:00–04:00 flows of each night.
        let mut night_min = Vec::new();
        for day in 0..days {
            let mut min = f64::MAX;
            for q in 0..96 {
                let rec = m.report(t0 + (day * 96 + q) * QUARTER_HOUR);
                if (8..=16).contains(&q) {
                    min = min.min(get(&rec, "flow"));
                }
            }
            night_min.push(min);
        }
        let leak = m.leak_rate();
        assert!(m.leaking() && leak >= 0.005);
        let before = &night_min[..start_day as usize];
        let after = &night_min[start_day as usize + 1..];
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(before) < 0.2 * leak, "before {}", mean(before));
        assert!(
            after.iter().all(|&f| f >= leak - 0.0015),
            "leak {leak}: {after:?}"
        );
        assert!(mean(after) > mean(before) + 0.9 * leak);
    }

    #[test]
    fn heat_follows_the_heating_season_and_the_carrier_balances_the_energy() {
        let mut m = meter(4, Kind::Heat, MeterFaults::NONE);
        let day_energy = |m: &mut Meter, y, mo, d| {
            let t = local_ns(y, mo, d, 0.0);
            m.report(t);
            (1..=96)
                .map(|q| {
                    m.report(t + q * QUARTER_HOUR);
                    m.last_increment()
                })
                .sum::<f64>()
        };
        let january = day_energy(&mut m, 2026, 1, 20);
        let july = day_energy(&mut m, 2026, 7, 20);
        assert!(
            january > 4.0 * july,
            "January {january} kWh, July {july} kWh"
        );
        // Energy = 1.163 × carrier volume × (supply − return), step by step.
        let t = local_ns(2026, 2, 3, 0.0);
        let mut last = m.report(t);
        for q in 1..96 {
            let rec = m.report(t + q * QUARTER_HOUR);
            let volume = get(&rec, "volume") - get(&last, "volume");
            let dt = get(&rec, "supply_temperature") - get(&rec, "return_temperature");
            let energy = m.last_increment();
            let implied = WATER_KWH_PER_M3_K * volume * dt;
            // Up to the registers' resolution and the temperatures' noise.
            assert!(
                (implied - energy).abs() < 0.05 * energy + 1.163 * 0.01 * dt + 1.0,
                "{implied} {energy}"
            );
            last = rec;
        }
    }

    #[test]
    fn household_use_peaks_morning_and_evening_and_the_fleet_mean_is_the_profiles() {
        for kind in [Kind::Water, Kind::Power] {
            let profile = MeterProfile::typical(kind);
            let (mut by_hour, mut total) = ([0.0; 24], 0.0);
            let t0 = local_ns(2025, 1, 1, 0.0);
            let (meters, days) = (100, 365);
            for id in 0..meters {
                let mut m = meter(id, kind, MeterFaults::NONE);
                m.report(t0);
                for i in 1..=(days * 24) {
                    m.report(t0 + i * 3600 * NS_PER_S);
                    by_hour[((i - 1) % 24) as usize] += m.last_increment();
                    total += m.last_increment();
                }
            }
            let daily = total / (meters as f64 * days as f64);
            assert!(
                (daily / profile.daily_mean - 1.0).abs() < 0.12,
                "{kind}: {daily} per day vs {}",
                profile.daily_mean
            );
            let night = by_hour[3];
            assert!(
                by_hour[7] > 2.0 * night && by_hour[20] > 2.0 * night,
                "{kind} {by_hour:?}"
            );
        }
        // Gas: heating makes winter days several times summer ones.
        let mut m = meter(5, Kind::Gas, MeterFaults::NONE);
        let day = |m: &mut Meter, mo| {
            let t = local_ns(2026, mo, 12, 0.0);
            m.report(t);
            m.report(t + NS_PER_DAY);
            m.last_increment()
        };
        let (jan, jul) = (day(&mut m, 1), day(&mut m, 7));
        assert!(jan > 3.0 * jul, "gas January {jan} July {jul}");
    }

    #[test]
    fn power_meters_report_current_from_power_and_voltage() {
        let mut m = meter(6, Kind::Power, MeterFaults::NONE);
        let t0 = local_ns(2026, 4, 7, 0.0);
        for q in 0..200 {
            let rec = m.report(t0 + q * QUARTER_HOUR);
            let (p, v, i) = (
                get(&rec, "power"),
                get(&rec, "voltage"),
                get(&rec, "current"),
            );
            assert!(
                (i - p * 1000.0 / (v * POWER_FACTOR)).abs() < 0.02,
                "{rec:?}"
            );
        }
    }

    #[test]
    fn a_district_input_is_its_consumers_plus_losses() {
        let loss = 0.23;
        let mut input = DistrictInput::new(Kind::Water, loss, 12_345.678);
        let mut meters: Vec<Meter> = (0..25)
            .map(|id| {
                let faults = MeterFaults {
                    leak_per_day: 0.2,
                    reset_per_day: 0.1,
                };
                meter(id, Kind::Water, faults)
            })
            .collect();
        let t0 = local_ns(2026, 5, 5, 0.0);
        for m in &mut meters {
            m.report(t0);
        }
        let start = input.register();
        let mut consumers = 0.0;
        for q in 1..=96 {
            let t = t0 + q * QUARTER_HOUR;
            let step: f64 = meters
                .iter_mut()
                .map(|m| {
                    m.report(t);
                    m.last_increment()
                })
                .sum();
            consumers += step;
            let rec = input.report(t, step, 900.0);
            assert!((get(&rec, "flow") - step * (1.0 + loss) * 4.0).abs() < 1e-9);
        }
        let through = input.register() - start;
        let expect = consumers * (1.0 + loss);
        assert!(
            ((through - expect) / expect).abs() < 1e-9,
            "{through} vs {expect}"
        );
        assert!(
            consumers > 5.0,
            "25 households use some water in a day: {consumers}"
        );
    }

    /// Timing: `cargo test --release --lib meter::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        use super::super::{Detector, Station};
        use std::time::Instant;
        let t0 = local_ns(2026, 1, 1, 0.0);
        let n = 200_000;
        for kind in METERS {
            let mut ms: Vec<Meter> = (0..1000)
                .map(|id| meter(id, kind, MeterFaults::NONE))
                .collect();
            let start = Instant::now();
            let mut sink = 0.0;
            for i in 0..n {
                let m = &mut ms[i % 1000];
                sink += m.report(t0 + (i / 1000) as i64 * QUARTER_HOUR)[0].1;
            }
            let ns = start.elapsed().as_nanos() as f64 / n as f64;
            println!("{kind}: {ns:.0} ns per report ({sink:.0})");
        }
        let mut s = Station::new(SEED, 1, 1);
        let start = Instant::now();
        let mut sink = 0.0;
        for i in 0..n {
            sink += s.report(t0 + i as i64 * 60 * NS_PER_S)[0].1;
        }
        println!(
            "air: {:.0} ns per report ({sink:.0})",
            start.elapsed().as_nanos() as f64 / n as f64
        );
        for (lanes, interval) in [(1, 60.0), (3, 60.0), (3, 900.0)] {
            let mut d = Detector::new(SEED, 1, lanes, 1800.0, 60.0);
            let start = Instant::now();
            let mut sink = 0.0;
            for i in 0..n {
                sink += d.report(t0 + i as i64 * 60 * NS_PER_S, interval)[0][0].1;
            }
            println!(
                "traffic {lanes} lanes, {interval} s: {:.0} ns per report ({sink:.0})",
                start.elapsed().as_nanos() as f64 / n as f64
            );
        }
    }
}
