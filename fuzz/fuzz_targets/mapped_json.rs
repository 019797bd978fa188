#![no_main]
//! Mapped JSON: the ChirpStack, Tasmota and ThingsBoard routes of config/routes.example.toml.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::process("application/7/device/0101010101010101/event/up", data);
    common::process("tele/plug-1/SENSOR", data);
    common::process("v1/devices/aq-7/telemetry", data);
});
