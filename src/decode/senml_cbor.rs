//! SenML packs in CBOR (RFC 8428 §6): integer labels, resolved like JSON packs.
