//! `Rules::parse` never panics, whatever the text.

use super::super::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = Rules::parse(&text);
    }

    #[test]
    fn on_rule_shaped_text(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("key"), Just("key_prefix"), Just("service"), Just("namespace"),
                Just("partition"), Just("operator"), Just("policy"), Just("intentions"),
                Just("="), Just("{"), Just("}"), Just("["), Just("]"), Just(":"), Just(","),
                Just("\"read\""), Just("\"write\""), Just("\"\""), Just("\"x\""), Just("\n"),
                Just("\"key\""), Just("1"), Just("${x}"), Just("<<EOF\nx\nEOF\n"),
            ],
            0..40,
        )
    ) {
        let text = parts.join(" ");
        if let Ok(r) = Rules::parse(&text) {
            let a = Authorizer::new(&[r], Access::Deny);
            let _ = a.allows(Resource::Key, "x", Access::Read);
            let _ = a.allows_key_write_prefix("");
        }
    }
}
