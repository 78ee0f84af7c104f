//! Bytes from another node never panic the wire decoder (issue 20, point 8): any byte string
//! decodes to a value or to an error, and a length prefix that claims more than is there (or
//! more than the decode limit) allocates nothing large. For a long run:
//! `PROPTEST_CASES=1000000 cargo test -p foundation-actors --test untrusted_wire`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeMap;

use foundation_actors::wire;
use proptest::prelude::*;

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Message {
    from: String,
    lock: String,
    tokens: Vec<u64>,
    meta: BTreeMap<String, Vec<u8>>,
    lease: Option<(u64, bool)>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_to_a_value_or_an_error(bytes in prop_oneof![
        any::<Vec<u8>>(),
        // Varint length prefixes that claim gigabytes.
        prop::collection::vec(prop_oneof![Just(0xFFu8), Just(0xFB), Just(0xFC), Just(0xFD), any::<u8>()], 0..40),
    ]) {
        let _ = wire::decode::<Message>(&bytes);
        let _ = wire::decode::<String>(&bytes);
        let _ = wire::decode::<Vec<Vec<u8>>>(&bytes);
        let _ = wire::decode::<serde_json::Value>(&bytes);
    }

    #[test]
    fn what_is_encoded_decodes_back(from in ".{0,20}", tokens in prop::collection::vec(any::<u64>(), 0..10), lease in any::<Option<(u64, bool)>>()) {
        let message = Message { from, lock: "l".into(), tokens, meta: BTreeMap::new(), lease };
        let bytes = wire::encode(&message, 1 << 20).unwrap();
        prop_assert_eq!(wire::decode::<Message>(&bytes).unwrap(), message);
        // Cut short anywhere: an error, never a panic.
        for cut in 0..bytes.len() {
            prop_assert!(wire::decode::<Message>(&bytes[..cut]).is_err());
        }
    }
}
