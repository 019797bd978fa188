#![no_main]
//! SenML packs in JSON, then the whole path on the city layout (heat: energy sums, flows).
mod common;
use libfuzzer_sys::fuzz_target;
use qala::decode::senml::{decode_json, SenmlOptions};

fuzz_target!(|data: &[u8]| {
    let opts = SenmlOptions {
        sensor_from_name: true,
        strip_prefix: Some("urn:dev:".into()),
    };
    let _ = decode_json(data, common::NOW_NS, &opts);
    common::process("city/almaty/medeu/heat/h-7", data);
});
