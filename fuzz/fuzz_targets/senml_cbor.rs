#![no_main]
//! SenML packs in CBOR, then the whole path on a senml-cbor route.
mod common;
use libfuzzer_sys::fuzz_target;
use qala::decode::senml::SenmlOptions;
use qala::decode::senml_cbor::decode_cbor;

fuzz_target!(|data: &[u8]| {
    let _ = decode_cbor(data, common::NOW_NS, &SenmlOptions::default());
    common::process("cbor/almaty/medeu/water/w-1", data);
});
