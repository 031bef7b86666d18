//! The ACL state's rules: bootstrap once, unique names and secrets, links kept valid, a
//! refusal changes nothing.

use super::*;

fn token(accessor: &str, secret: &str, policies: &[&str]) -> Token {
    Token {
        accessor_id: accessor.into(),
        secret_id: secret.into(),
        policies: policies
            .iter()
            .map(|id| Link {
                id: id.to_string(),
                name: String::new(),
            })
            .collect(),
        ..Token::default()
    }
}

fn policy(id: &str, name: &str) -> Policy {
    Policy {
        id: id.into(),
        name: name.into(),
        rules: "key_prefix \"\" { policy = \"read\" }".into(),
        ..Policy::default()
    }
}

#[test]
fn bootstrap_happens_once_with_the_management_policy() {
    let mut s = AclState::default();
    assert!(s.is_empty());
    let t = token("a1", "s1", &[MANAGEMENT_POLICY_ID]);
    assert!(matches!(
        s.apply(AclOp::Bootstrap(t), 5),
        Ok(AclAnswer::Token(_))
    ));
    assert_eq!(s.bootstrapped, Some(5));
    assert_eq!(s.policies[MANAGEMENT_POLICY_ID].name, "global-management");
    assert_eq!(
        s.token_by_secret("s1").map(|t| t.accessor_id.as_str()),
        Some("a1")
    );
    let again = s.apply(AclOp::Bootstrap(token("a2", "s2", &[])), 6);
    assert_eq!(
        again,
        Err("ACL bootstrap no longer allowed (reset index: 5)".into())
    );
    assert!(s.token_by_secret("s2").is_none());
}

#[test]
fn names_and_secrets_are_unique_and_a_refusal_changes_nothing() {
    let mut s = AclState::default();
    s.apply(AclOp::SetPolicy(policy("p1", "readers")), 1)
        .unwrap();
    let before = s.clone();
    let e = s
        .apply(AclOp::SetPolicy(policy("p2", "readers")), 2)
        .unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(s, before);
    s.apply(AclOp::SetToken(token("a1", "s1", &["p1"])), 3)
        .unwrap();
    let e = s
        .apply(AclOp::SetToken(token("a2", "s1", &[])), 4)
        .unwrap_err();
    assert!(e.contains("SecretID is already in use"), "{e}");
    let e = s
        .apply(AclOp::SetToken(token("a3", "s3", &["nope"])), 4)
        .unwrap_err();
    assert!(e.contains("cannot find policy nope"), "{e}");
    // Updating keeps the creation index.
    let updated = s
        .apply(AclOp::SetPolicy(policy("p1", "readers2")), 9)
        .unwrap();
    assert!(matches!(updated, AclAnswer::Policy(p) if p.create_index == 1 && p.modify_index == 9));
}

#[test]
fn deleting_a_policy_or_role_removes_the_links_to_it() {
    let mut s = AclState::default();
    s.apply(AclOp::SetPolicy(policy("p1", "one")), 1).unwrap();
    let role = Role {
        id: "r1".into(),
        name: "ops".into(),
        policies: vec![Link {
            id: "p1".into(),
            name: String::new(),
        }],
        ..Role::default()
    };
    s.apply(AclOp::SetRole(role), 2).unwrap();
    let mut t = token("a1", "s1", &["p1"]);
    t.roles = vec![Link {
        id: "r1".into(),
        name: String::new(),
    }];
    s.apply(AclOp::SetToken(t), 3).unwrap();
    assert_eq!(s.named_policies(&s.tokens["a1"].policies)[0].name, "one");
    s.apply(AclOp::DeletePolicy("p1".into()), 4).unwrap();
    assert!(s.tokens["a1"].policies.is_empty() && s.roles["r1"].policies.is_empty());
    s.apply(AclOp::DeleteRole("r1".into()), 5).unwrap();
    assert!(s.tokens["a1"].roles.is_empty());
    s.apply(AclOp::DeleteToken("a1".into()), 6).unwrap();
    assert!(s.token_by_secret("s1").is_none());
    assert!(s.apply(AclOp::DeleteToken("a1".into()), 7).is_err());
    assert!(
        s.apply(AclOp::DeletePolicy(MANAGEMENT_POLICY_ID.into()), 7)
            .is_err()
    );
}
