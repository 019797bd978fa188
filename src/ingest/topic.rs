//! The default topic layout, `city/{city}/{district}/{kind}/{sensor_id}`.

use crate::model::{Kind, Reason, Rejection, SensorRef};

/// Parses a topic of the default layout into the sensor it names.
pub fn parse(topic: &str) -> Result<SensorRef, Rejection> {
    let bad = |why: String| {
        Rejection::new(
            Reason::BadTopic,
            format!(
                "topic {topic:?} {why} (layout: city/{{city}}/{{district}}/{{kind}}/{{sensor_id}})"
            ),
        )
    };
    let levels: Vec<&str> = topic.split('/').collect();
    if levels.len() != 5 {
        return Err(bad(format!("has {} levels", levels.len())));
    }
    if levels[0] != "city" {
        return Err(bad("does not start with \"city/\"".to_owned()));
    }
    for (name, level) in ["city", "district", "kind", "sensor_id"]
        .iter()
        .zip(&levels[1..])
    {
        if level.is_empty() {
            return Err(bad(format!("has an empty {name}")));
        }
        if level.chars().any(char::is_control) {
            return Err(bad(format!("has a control character in its {name}")));
        }
    }
    let kind: Kind = levels[3].parse().map_err(|()| {
        Rejection::new(
            Reason::UnknownKind,
            format!(
                "unknown kind {:?} in topic {topic:?} (known: air, traffic, water, heat, power, gas)",
                levels[3]
            ),
        )
    })?;
    Ok(SensorRef {
        city: levels[1].to_owned(),
        district: levels[2].to_owned(),
        kind,
        sensor_id: levels[4].to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_layout() {
        let s = parse("city/almaty/almaly/air/st-001").expect("valid");
        assert_eq!(
            s,
            SensorRef {
                city: "almaty".into(),
                district: "almaly".into(),
                kind: Kind::Air,
                sensor_id: "st-001".into()
            }
        );
    }

    #[test]
    fn refuses_other_layouts_naming_the_problem() {
        let e = parse("city/almaty/air/st-001").expect_err("4 levels");
        assert_eq!(e.reason, Reason::BadTopic);
        assert!(e.message.contains("has 4 levels"), "{}", e.message);
        let e = parse("town/almaty/almaly/air/x").expect_err("prefix");
        assert!(
            e.message.contains("does not start with \"city/\""),
            "{}",
            e.message
        );
        let e = parse("city/almaty//air/x").expect_err("empty");
        assert!(e.message.contains("empty district"), "{}", e.message);
        let e = parse("city/almaty/almaly/noise/x").expect_err("kind");
        assert_eq!(e.reason, Reason::UnknownKind);
        assert!(e.message.contains("\"noise\""), "{}", e.message);
    }
}
