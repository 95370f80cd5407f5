//! Any text through parse, check and compile: never a panic, never a stack overflow.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = merit::compile::compile("fuzz.merit", text);
    }
});
