//! Request-body parsing and validation on arbitrary bytes: the same
//! functions the server's create and SSH-key handlers call. Any input must
//! come back as a parsed request or a 400 with a code and a message; a
//! panic, an abort or another status is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parasol::validate;

fuzz_target!(|data: &[u8]| {
    let errors = [
        validate::create_request(data).err(),
        validate::ssh_key_request(data).err(),
    ];
    for e in errors.into_iter().flatten() {
        assert_eq!(e.status.as_u16(), 400, "{e:?}");
        assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
    }
});
