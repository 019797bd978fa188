#![no_main]
//! Plain values, then the whole path on the plain-value route (with and without a unit).
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = qala::decode::plain_value(data, Some("pm2_5"), Some("mg/m3"));
    common::process("plain/almaty/almaly/air/pv-1/pm10", data);
    common::process("plain/almaty/almaly/traffic/pv-2/volume", data);
});
