//! The spec reader: the first byte picks the syntax, the rest is the text. Parsing, validation
//! and expansion must answer every input with a workflow or with errors, never a panic; a spec
//! that loads then goes through the check the server makes before storing it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torc_core::spec::{self, SpecFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = match pick % 4 {
        0 => SpecFormat::Yaml,
        1 => SpecFormat::Json,
        2 => SpecFormat::Json5,
        _ => SpecFormat::Kdl,
    };
    // The server refuses text that is not UTF-8; mutations that break it are kept in play.
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();
    match spec::load(text, format) {
        Ok(expanded) => {
            let _ = torc_http::server::input::spec(text, &expanded.def);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a failed load reports no problem");
            let _ = errors.to_string();
        }
    }
});
