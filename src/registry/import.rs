//! The registry's CSV, as a city keeps its devices in a spreadsheet: a header row, then one device
//! per row. Columns in any order, named exactly:
//!
//! | column | required | what |
//! |---|---|---|
//! | `id` | yes | the sensor id in its topics; unique; no `/ + #`, spaces or control characters |
//! | `kind` | yes | `air`, `traffic`, `water`, `heat`, `power`, `gas`, or `status` (health only) |
//! | `city`, `district` | yes | as in its topics |
//! | `sphere` | yes | one of the standard's eight keys; a reading kind's own (air → ecology, ...) |
//! | `expected_interval` | yes | how often it reports at least: `15m`, `1h` (whole seconds, 1s–366d) |
//! | `population` | no | people served (whole number) |
//! | `role` | no | `consumer` (default) or `district_input` (meters only) |
//! | `free_flow_speed` | no | km/h, traffic only, above 0 and at most 300 |
//! | `register_max` | no | the register's size in the canonical unit, meters only, above 0 |
//! | `latitude`, `longitude` | no | degrees (WGS 84), both or neither |
//!
//! Every problem is named by row (the header is row 1, as a spreadsheet counts), column and what
//! was wrong; a file with any problem is refused whole.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::{Role, SensorInfo};
use crate::model::{Kind, Sphere};
use crate::registry::store::parse_sphere;

/// The columns, in the order `qala simulate --registry-csv` writes them; the first
/// [`REQUIRED`] are required.
pub const COLUMNS: [&str; 12] = [
    "id",
    "kind",
    "city",
    "district",
    "sphere",
    "expected_interval",
    "population",
    "role",
    "free_flow_speed",
    "register_max",
    "latitude",
    "longitude",
];

/// Columns a file must have: the first six of [`COLUMNS`].
const REQUIRED: usize = 6;

/// Problems reported before giving up (a wrong column would otherwise repeat on every row).
const MAX_PROBLEMS: usize = 20;

/// One problem of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Row in the file, the header being row 1 (0: the file as a whole).
    pub row: u64,
    /// The column's name (empty: the row as a whole).
    pub column: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, self.column.is_empty()) {
            (0, _) => write!(f, "{}", self.message),
            (r, true) => write!(f, "row {r}: {}", self.message),
            (r, false) => write!(f, "row {r}, column {}: {}", self.column, self.message),
        }
    }
}

/// The file is refused: every problem found (up to 20), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub problems: Vec<Problem>,
    /// More problems were found than listed.
    pub truncated: bool,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the registry file is refused:")?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        if self.truncated {
            write!(f, "\n  ... and more (the first {MAX_PROBLEMS} are listed)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ImportError {}

fn problem(row: u64, column: &str, message: impl Into<String>) -> Problem {
    Problem {
        row,
        column: column.to_owned(),
        message: message.into(),
    }
}

/// Reads and validates a registry CSV (UTF-8, comma-separated, a header row).
pub fn parse_csv(input: impl std::io::Read) -> Result<Vec<SensorInfo>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let refuse = |p: Problem| ImportError {
        problems: vec![p],
        truncated: false,
    };
    let headers = reader
        .headers()
        .map_err(|e| refuse(problem(1, "", format!("cannot read the header row: {e}"))))?
        .clone();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, name) in headers.iter().enumerate() {
        let name = name.trim_start_matches('\u{feff}');
        if !COLUMNS.contains(&name) {
            return Err(refuse(problem(
                1,
                name,
                format!("unknown column (known: {})", COLUMNS.join(", ")),
            )));
        }
        if index.insert(name, i).is_some() {
            return Err(refuse(problem(1, name, "the column is given twice")));
        }
    }
    let missing: Vec<&str> = COLUMNS[..REQUIRED]
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return Err(refuse(problem(
            1,
            "",
            format!("required column(s) missing: {}", missing.join(", ")),
        )));
    }

    let mut problems = Vec::new();
    let mut truncated = false;
    let mut sensors = Vec::new();
    let mut first_row: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let row = e.position().map_or(0, |p| p.line());
                problems.push(problem(row, "", format!("not a CSV row: {e}")));
                break;
            }
        };
        let row = record.position().map_or(0, |p| p.line());
        let field = |c: &str| index.get(c).and_then(|i| record.get(*i)).unwrap_or("");
        let id = field("id");
        let repeated = !id.is_empty() && first_row.contains_key(id);
        if repeated {
            problems.push(problem(
                row,
                "id",
                format!("{id:?} is already on row {}: ids are unique", first_row[id]),
            ));
        } else if !id.is_empty() {
            first_row.insert(id.to_owned(), row);
        }
        match device(row, &field) {
            Ok(s) if !repeated => sensors.push(s),
            Ok(_) => {}
            Err(mut p) => problems.append(&mut p),
        }
        if problems.len() >= MAX_PROBLEMS {
            truncated = true;
            break;
        }
    }
    if problems.is_empty() && sensors.is_empty() {
        problems.push(problem(0, "", "the file has a header but no devices"));
    }
    if !problems.is_empty() {
        if problems.len() > MAX_PROBLEMS {
            problems.truncate(MAX_PROBLEMS);
            truncated = true;
        }
        return Err(ImportError {
            problems,
            truncated,
        });
    }
    Ok(sensors)
}

/// One row: every problem it has, or the device.
fn device<'a>(row: u64, field: &impl Fn(&str) -> &'a str) -> Result<SensorInfo, Vec<Problem>> {
    let mut problems = Vec::new();
    let need = |column: &str, problems: &mut Vec<Problem>| -> Option<String> {
        let v = field(column);
        if v.is_empty() {
            problems.push(problem(row, column, "is empty; it is required"));
            return None;
        }
        Some(v.to_owned())
    };
    let id = need("id", &mut problems);
    if let Some(id) = &id {
        if let Some(why) = bad_topic_level(id) {
            problems.push(problem(row, "id", format!("{id:?} {why}")));
        }
    }
    let city = need("city", &mut problems);
    let district = need("district", &mut problems);
    for (column, v) in [("city", &city), ("district", &district)] {
        if let Some(v) = v {
            if let Some(why) = bad_topic_level(v) {
                problems.push(problem(row, column, format!("{v:?} {why}")));
            }
        }
    }
    let kind = need("kind", &mut problems).and_then(|k| match k.parse::<Kind>() {
        Ok(k) => Some(k),
        Err(()) => {
            problems.push(problem(
                row,
                "kind",
                format!("{k:?} is not a kind (known: {})", Kind::known_list()),
            ));
            None
        }
    });
    let sphere = need("sphere", &mut problems).and_then(|s| match parse_sphere(&s) {
        Some(sp) => Some(sp),
        None => {
            problems.push(problem(
                row,
                "sphere",
                format!(
                    "{s:?} is not a sphere (known: {})",
                    Sphere::ALL.map(Sphere::as_str).join(", ")
                ),
            ));
            None
        }
    });
    if let (Some(k), Some(sp)) = (kind, sphere) {
        if k != Kind::Status && k.sphere() != sp {
            problems.push(problem(
                row,
                "sphere",
                format!(
                    "{sp} does not go with kind {k}: {k} sensors belong to {} (only status devices may be of any sphere)",
                    k.sphere()
                ),
            ));
        }
    }
    let expected_interval = need("expected_interval", &mut problems).and_then(|t| {
        match humantime::parse_duration(&t) {
            Ok(d) if d < Duration::from_secs(1) || d > Duration::from_secs(366 * 86_400) => {
                problems.push(problem(
                    row,
                    "expected_interval",
                    format!("{t:?} is out of range: 1s to 366d"),
                ));
                None
            }
            Ok(d) if d.subsec_nanos() != 0 => {
                problems.push(problem(
                    row,
                    "expected_interval",
                    format!("{t:?} is not whole seconds"),
                ));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(problem(
                    row,
                    "expected_interval",
                    format!("{t:?} is not a duration ({e}); write e.g. 15m, 1h, 1d"),
                ));
                None
            }
        }
    });
    let population = optional(row, "population", field, &mut problems, |v| {
        v.parse::<u32>()
            .map_err(|_| format!("{v:?} is not a whole number of people (0 to 4294967295)"))
    });
    let role = optional(row, "role", field, &mut problems, |v| match v {
        "consumer" => Ok(Role::Consumer),
        "district_input" => Ok(Role::DistrictInput),
        _ => Err(format!(
            "{v:?} is not a role (known: consumer, district_input)"
        )),
    })
    .unwrap_or_default();
    let meter = matches!(
        kind,
        Some(Kind::Water | Kind::Heat | Kind::Power | Kind::Gas)
    );
    if role == Role::DistrictInput && kind.is_some() && !meter {
        problems.push(problem(
            row,
            "role",
            "district_input is for meters (water, heat, power, gas)",
        ));
    }
    let free_flow_speed = optional(row, "free_flow_speed", field, &mut problems, |v| {
        bounded(
            v,
            |x| x > 0.0 && x <= 300.0,
            "km/h is out of range: above 0, at most 300",
        )
    });
    if free_flow_speed.is_some() && kind.is_some_and(|k| k != Kind::Traffic) {
        problems.push(problem(
            row,
            "free_flow_speed",
            "only traffic detectors have a free-flow speed",
        ));
    }
    let register_max = optional(row, "register_max", field, &mut problems, |v| {
        bounded(v, |x| x > 0.0, "must be above 0")
    });
    if register_max.is_some() && kind.is_some() && !meter {
        problems.push(problem(
            row,
            "register_max",
            "only meters (water, heat, power, gas) have a register",
        ));
    }
    let latitude = optional(row, "latitude", field, &mut problems, |v| {
        bounded(
            v,
            |x| (-90.0..=90.0).contains(&x),
            "is out of range: -90 to 90 degrees",
        )
    });
    let longitude = optional(row, "longitude", field, &mut problems, |v| {
        bounded(
            v,
            |x| (-180.0..=180.0).contains(&x),
            "is out of range: -180 to 180 degrees",
        )
    });
    if field("latitude").is_empty() != field("longitude").is_empty() {
        let missing = if field("latitude").is_empty() {
            "latitude"
        } else {
            "longitude"
        };
        problems.push(problem(
            row,
            missing,
            "is empty: give latitude and longitude together, or neither",
        ));
    }
    match (id, kind, city, district, sphere, expected_interval) {
        (Some(sensor_id), Some(kind), Some(city), Some(district), Some(sphere), Some(every))
            if problems.is_empty() =>
        {
            Ok(SensorInfo {
                sensor_id,
                kind: kind.as_str().to_owned(),
                city,
                district,
                sphere,
                expected_interval: every,
                population,
                role,
                free_flow_speed,
                register_max,
                latitude,
                longitude,
            })
        }
        _ => Err(problems),
    }
}

/// An optional column: None when empty; a problem when it does not parse.
fn optional<'a, T>(
    row: u64,
    column: &str,
    field: &impl Fn(&str) -> &'a str,
    problems: &mut Vec<Problem>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let v = field(column);
    if v.is_empty() {
        return None;
    }
    match parse(v) {
        Ok(x) => Some(x),
        Err(m) => {
            problems.push(problem(row, column, m));
            None
        }
    }
}

/// A finite number that `ok` accepts; else `"{v} {why}"`.
fn bounded(v: &str, ok: impl Fn(f64) -> bool, why: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && ok(x) => Ok(x),
        Ok(x) if x.is_finite() => Err(format!("{v} {why}")),
        _ => Err(format!("{v:?} is not a number")),
    }
}

/// Why `v` cannot be one level of a topic (and so not an id, a city or a district).
fn bad_topic_level(v: &str) -> Option<&'static str> {
    if v.contains(['/', '+', '#']) {
        Some("cannot be a topic level: no / + #")
    } else if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not contain spaces or control characters")
    } else {
        None
    }
}

/// Writes devices as a registry CSV (the header, then one row each), as the import reads it.
pub fn write_csv(out: impl std::io::Write, sensors: &[SensorInfo]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for s in sensors {
        w.write_record([
            s.sensor_id.as_str(),
            s.kind.as_str(),
            s.city.as_str(),
            s.district.as_str(),
            s.sphere.as_str(),
            &humantime::format_duration(s.expected_interval).to_string(),
            &s.population.map(|p| p.to_string()).unwrap_or_default(),
            s.role.as_str(),
            &opt(s.free_flow_speed),
            &opt(s.register_max),
            &opt(s.latitude),
            &opt(s.longitude),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id,kind,city,district,sphere,expected_interval,population,role,free_flow_speed,register_max,latitude,longitude\n";

    fn refused(rows: &str) -> Vec<String> {
        parse_csv(format!("{HEADER}{rows}").as_bytes())
            .expect_err("refused")
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_good_file_gives_every_field() {
        let s = parse_csv(
            format!(
                "{HEADER}w-1,water,almaty,medeu,housing_utilities,1h,3,consumer,,100000,43.25,76.95\n\
                 det-1,traffic,almaty,medeu,transport,5m,,,55.5,,,\n\
                 cam-7,status,almaty,medeu,safety,10m,,,,,,\n"
            )
            .as_bytes(),
        )
        .expect("valid");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            SensorInfo {
                sensor_id: "w-1".into(),
                kind: "water".into(),
                city: "almaty".into(),
                district: "medeu".into(),
                sphere: Sphere::HousingUtilities,
                expected_interval: Duration::from_secs(3600),
                population: Some(3),
                role: Role::Consumer,
                free_flow_speed: None,
                register_max: Some(100_000.0),
                latitude: Some(43.25),
                longitude: Some(76.95),
            }
        );
        assert_eq!(s[1].free_flow_speed, Some(55.5));
        assert_eq!(s[1].expected_interval, Duration::from_secs(300));
        assert_eq!(
            (s[2].kind.as_str(), s[2].sphere),
            ("status", Sphere::Safety)
        );
    }

    #[test]
    fn columns_in_any_order_and_only_the_required_ones() {
        let s = parse_csv(
            "sphere,expected_interval,id,district,city,kind\nsocial,15m,sch-1,north,talgar,status\n"
                .as_bytes(),
        )
        .expect("valid");
        assert_eq!(s[0].sensor_id, "sch-1");
        assert_eq!(s[0].sphere, Sphere::Social);
        assert_eq!(s[0].role, Role::Consumer);
        assert_eq!(s[0].population, None);
    }

    #[test]
    fn each_error_names_its_row_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "w-1,water,almaty,medeu,ecolgy,1h,,,,,,",
                "row 2, column sphere: \"ecolgy\" is not a sphere (known: city_management, safety, transport, social, ecology, housing_utilities, economy, infrastructure)",
            ),
            (
                "w-1,steam,almaty,medeu,housing_utilities,1h,,,,,,",
                "row 2, column kind: \"steam\" is not a kind (known: air, traffic, water, heat, power, gas, status)",
            ),
            (
                "w-1,water,almaty,medeu,ecology,1h,,,,,,",
                "row 2, column sphere: ecology does not go with kind water: water sensors belong to housing_utilities (only status devices may be of any sphere)",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,soon,,,,,,",
                "row 2, column expected_interval: \"soon\" is not a duration",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,500ms,,,,,,",
                "row 2, column expected_interval: \"500ms\" is out of range: 1s to 366d",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,-3,,,,,",
                "row 2, column population: \"-3\" is not a whole number of people",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,boss,,,,",
                "row 2, column role: \"boss\" is not a role (known: consumer, district_input)",
            ),
            (
                "aq-1,air,almaty,medeu,ecology,1h,,district_input,,,,",
                "row 2, column role: district_input is for meters",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,,60,,,",
                "row 2, column free_flow_speed: only traffic detectors have a free-flow speed",
            ),
            (
                "d-1,traffic,almaty,medeu,transport,1h,,,0,,,",
                "row 2, column free_flow_speed: 0 km/h is out of range",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,,,-5,,",
                "row 2, column register_max: -5 must be above 0",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,,,,91,76",
                "row 2, column latitude: 91 is out of range: -90 to 90 degrees",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,,,,43,181",
                "row 2, column longitude: 181 is out of range: -180 to 180 degrees",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,,,,43,",
                "row 2, column longitude: is empty: give latitude and longitude together",
            ),
            (
                "w-1,water,almaty,medeu,housing_utilities,1h,,,,,abc,76",
                "row 2, column latitude: \"abc\" is not a number",
            ),
            (
                ",water,almaty,medeu,housing_utilities,1h,,,,,,",
                "row 2, column id: is empty; it is required",
            ),
            (
                "w/1,water,almaty,medeu,housing_utilities,1h,,,,,,",
                "row 2, column id: \"w/1\" cannot be a topic level",
            ),
            (
                "w-1,water,almaty,,housing_utilities,1h,,,,,,",
                "row 2, column district: is empty; it is required",
            ),
        ];
        for (row, want) in cases {
            let got = refused(&format!("{row}\n"));
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{row}\n  want: {want}\n  got:  {got:?}"
            );
        }
    }

    #[test]
    fn duplicates_short_rows_and_bad_headers_are_named() {
        let got = refused(
            "w-1,water,a,b,housing_utilities,1h,,,,,,\n\
             w-2,water,a,b,housing_utilities,1h,,,,,,\n\
             w-1,gas,a,b,housing_utilities,1h,,,,,,\n",
        );
        assert_eq!(
            got,
            ["row 4, column id: \"w-1\" is already on row 2: ids are unique"]
        );
        let got = refused("w-1,water,a,b\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("row 2: not a CSV row"), "{got:?}");

        let e = parse_csv("id,kind,city,district,sphre,expected_interval\n".as_bytes())
            .expect_err("typo");
        assert!(
            e.to_string()
                .contains("row 1, column sphre: unknown column"),
            "{e}"
        );
        let e =
            parse_csv("id,kind,city,district,expected_interval\n".as_bytes()).expect_err("missing");
        assert!(
            e.to_string()
                .contains("row 1: required column(s) missing: sphere"),
            "{e}"
        );
        let e = parse_csv(HEADER.as_bytes()).expect_err("empty");
        assert!(e.to_string().contains("no devices"), "{e}");
    }

    #[test]
    fn every_problem_is_listed_up_to_a_limit() {
        let rows: String = (0..30)
            .map(|i| format!("w-{i},water,a,b,nowhere,1h,,,,,,\n"))
            .collect();
        let e = parse_csv(format!("{HEADER}{rows}").as_bytes()).expect_err("refused");
        assert_eq!(e.problems.len(), 20);
        assert!(e.truncated);
        assert_eq!(e.problems[19].row, 21);
    }

    #[test]
    fn written_csv_reads_back_the_same() {
        let s = parse_csv(
            format!(
                "{HEADER}w-1,water,almaty,medeu,housing_utilities,1h 30m,3,consumer,,100000,43.25,76.95\n\
                 w-in,water,almaty,medeu,housing_utilities,15m,12000,district_input,,,,\n\
                 det-1,traffic,almaty,medeu,transport,5m,,,55.5,,,\n"
            )
            .as_bytes(),
        )
        .expect("valid");
        let mut out = Vec::new();
        write_csv(&mut out, &s).expect("write");
        assert_eq!(parse_csv(&out[..]).expect("read back"), s);
    }
}
