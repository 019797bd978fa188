#![no_main]
//! The default JSON object decoder, then the whole path on the city layout.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = qala::decode::json::decode_object(data);
    common::process("city/almaty/almaly/air/st-1", data);
    common::process("city/almaty/almaly/traffic/d-1", data);
});
