#![no_main]
//! Line protocol, then the whole path on the line-protocol route.
mod common;
use libfuzzer_sys::fuzz_target;
use qala::decode::line::{decode, LineOptions};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, &LineOptions::default());
    common::process("lp/almaty", data);
});
