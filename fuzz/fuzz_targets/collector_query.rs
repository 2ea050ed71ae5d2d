#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hipaa_fuzz::collector_query(data));
