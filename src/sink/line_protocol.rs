//! InfluxDB line protocol encoder: one line per reading, measurement = kind, tags `city`,
//! `district`, `sensor_id`, `sphere` (sorted by key, as InfluxDB prefers), canonical metrics as
//! float fields (plus `receive_time=true` when the gateway's receive time stood in for a missing
//! device time), nanosecond timestamp. Pure: appends to a buffer.

use std::fmt::Write;

use crate::model::{Reading, TimeSource};
use crate::normalize::units::Quantity;

/// Appends `reading` as one line (with its trailing newline).
pub fn encode(buf: &mut String, reading: &Reading) {
    let s = &reading.sensor;
    escape(buf, s.kind.as_str(), Ctx::Measurement);
    for (key, value) in [
        ("city", s.city.as_str()),
        ("district", s.district.as_str()),
        ("sensor_id", s.sensor_id.as_str()),
        ("sphere", s.kind.sphere().as_str()),
    ] {
        buf.push(',');
        buf.push_str(key);
        buf.push('=');
        escape(buf, value, Ctx::Tag);
    }
    for (i, (def, v)) in reading.values.iter().enumerate() {
        buf.push(if i == 0 { ' ' } else { ',' });
        escape(buf, def.name, Ctx::Tag);
        if def.quantity == Quantity::Flag {
            buf.push_str(if *v != 0.0 { "=true" } else { "=false" });
        } else {
            // f64 Display is the shortest round-trip text, never in exponent form.
            let _ = write!(buf, "={v}");
        }
    }
    if reading.time_source == TimeSource::Receive {
        // The device sent no time; the gateway's receive time stands in, and says so.
        buf.push_str(",receive_time=true");
    }
    let _ = writeln!(buf, " {}", reading.time_ns);
}

#[derive(Clone, Copy)]
enum Ctx {
    Measurement,
    Tag,
}

/// Line protocol escaping: measurements escape `,` and space; tag keys, tag values and field keys
/// also `=`; a backslash before those is escaped too. Newlines cannot be escaped and never reach
/// here (identities with control characters are refused when normalised).
fn escape(buf: &mut String, text: &str, ctx: Ctx) {
    if !text.contains([',', ' ', '=', '\\']) {
        buf.push_str(text);
        return;
    }
    for c in text.chars() {
        match (c, ctx) {
            (',' | ' ' | '\\', _) | ('=', Ctx::Tag) => {
                buf.push('\\');
                buf.push(c);
            }
            _ => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, SensorRef, TimeSource};
    use crate::normalize::catalog::lookup;

    fn reading(city: &str, district: &str, id: &str) -> Reading {
        Reading {
            sensor: SensorRef {
                city: city.into(),
                district: district.into(),
                kind: Kind::Air,
                sensor_id: id.into(),
            },
            time_ns: 1_700_000_000_000_000_000,
            time_source: TimeSource::Device,
            values: vec![
                (lookup(Kind::Air, "pm2_5").expect("pm2_5"), 12.5),
                (lookup(Kind::Air, "pm10").expect("pm10"), 20.0),
                (lookup(Kind::Air, "co").expect("co"), 0.000_000_1),
            ],
        }
    }

    #[test]
    fn encodes_tags_fields_and_time() {
        let mut buf = String::new();
        encode(&mut buf, &reading("almaty", "almaly", "st-1"));
        assert_eq!(
            buf,
            "air,city=almaty,district=almaly,sensor_id=st-1,sphere=ecology pm2_5=12.5,pm10=20,co=0.0000001 1700000000000000000\n"
        );
        let mut received = reading("almaty", "almaly", "st-1");
        received.time_source = TimeSource::Receive;
        buf.clear();
        encode(&mut buf, &received);
        assert!(
            buf.ends_with(",co=0.0000001,receive_time=true 1700000000000000000\n"),
            "{buf}"
        );
    }

    #[test]
    fn flags_are_boolean_fields() {
        let mut r = reading("almaty", "medeu", "m-1");
        r.sensor.kind = Kind::Water;
        r.values = vec![
            (
                crate::normalize::catalog::lookup(Kind::Water, "volume").expect("volume"),
                5.0,
            ),
            (
                crate::normalize::catalog::lookup(Kind::Water, "leak_alarm").expect("leak"),
                1.0,
            ),
            (
                crate::normalize::catalog::lookup(Kind::Water, "tamper_alarm").expect("tamper"),
                0.0,
            ),
        ];
        let mut buf = String::new();
        encode(&mut buf, &r);
        assert!(
            buf.contains(" volume=5,leak_alarm=true,tamper_alarm=false "),
            "{buf}"
        );
    }

    #[test]
    fn escapes_commas_spaces_equals_and_backslashes_in_tags() {
        let mut buf = String::new();
        encode(&mut buf, &reading("nur sultan", "a,b", "x=1\\y"));
        assert!(
            buf.starts_with(
                r"air,city=nur\ sultan,district=a\,b,sensor_id=x\=1\\y,sphere=ecology "
            ),
            "{buf}"
        );
    }
}
