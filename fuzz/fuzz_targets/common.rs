//! Shared by the fuzz targets: the example routes (plus a CBOR one) and a fixed receive time.
//! Each target feeds arbitrary bytes to one decoder and then through the whole normalise path
//! of the route that uses it; neither may panic, whatever the bytes.

use std::sync::OnceLock;

use qala::ingest::route::{RouteSettings, Routes};
use qala::normalize::{self, Policy};

/// 2026-11-20T10:00:00Z
pub const NOW_NS: i64 = 1_795_168_800_000_000_000;

pub fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct File {
            routes: Vec<RouteSettings>,
        }
        let mut text = include_str!("../../config/routes.example.toml").to_owned();
        text.push_str(
            "\n[[routes]]\nfilter = \"cbor/#\"\ntemplate = \"cbor/{city}/{district}/{kind}/{sensor_id}\"\nformat = \"senml-cbor\"\n[routes.senml]\nsensor_from_name = true\nstrip_prefix = \"urn:dev:\"\n",
        );
        let file: File = toml::from_str(&text).expect("routes parse");
        Routes::compile(&file.routes).expect("routes compile")
    })
}

/// The whole path for one message on `topic`; the result does not matter, only that it returns.
pub fn process(topic: &str, data: &[u8]) {
    let policy = Policy {
        missing_timestamp: normalize::MissingTimestamp::ReceiveTime,
        ..Policy::default()
    };
    let _ = normalize::process_routed(routes(), topic, data, NOW_NS, &policy);
}
