//! The listing's reading of users and what it keeps for the writes.

use super::*;
use crate::config::UpdateMode;
use crate::sink::scim::tests::{agent, raw, sink};
use serde_json::json;

#[test]
fn reads_email_from_user_name_or_the_primary_email() {
    let user = json!({"id": "a1", "userName": "A@x.com", "externalId": "",
        "emails": [{"value": "first@x.com"}, {"value": "main@x.com", "primary": true}]});
    let a = agent(user.clone());
    assert_eq!(
        (a.id.as_str(), a.email.as_str(), a.external_id),
        ("a1", "A@x.com", None)
    );
    let by_emails = sink(UpdateMode::Put, EmailAttribute::Emails);
    assert_eq!(by_emails.agent_of(&raw(user)).unwrap().email, "main@x.com");
    let no_primary = json!({"id": "a2", "emails": [{"value": "first@x.com"}]});
    assert_eq!(
        by_emails.agent_of(&raw(no_primary)).unwrap().email,
        "first@x.com"
    );
    let work = json!({"id": "a4", "emails": [{"value": "home@x.com", "type": "home"},
        {"value": "work@x.com", "type": "work"}]});
    assert_eq!(by_emails.agent_of(&raw(work)).unwrap().email, "work@x.com");
    assert!(
        by_emails
            .agent_of(&raw(json!({"id": "a3"})))
            .unwrap_err()
            .contains("a3")
    );
    assert!(by_emails.agent_of(&raw(json!({"emails": []}))).is_err());
}

#[test]
fn a_put_keeps_the_resource_without_meta_and_groups() {
    // An escaped name, nested values, and the attributes a PUT leaves out.
    let text = r#"{"id": "a\"1", "userName": "a@x.com", "meta": {"version": "W/\"2\""},
        "groups": [{"value": "g"}], "na\u00efve": [1, {"x": null}], "externalId": "7"}"#;
    let user = RawValue::from_string(text.to_owned()).unwrap();
    let kept: Value = serde_json::from_str(for_put(&user).get()).unwrap();
    assert_eq!(
        kept,
        json!({"id": "a\"1", "userName": "a@x.com", "na\u{ef}ve": [1, {"x": null}], "externalId": "7"})
    );
    // Not an object: kept as it is.
    assert_eq!(for_put(&raw(json!([1, 2]))).get(), "[1,2]");
}

#[test]
fn listed_users_are_found_by_id() {
    let mut listed = ListedUsers::default();
    for id in ["b", "a", "c"] {
        listed.push(
            id,
            Listed {
                version: Some(format!("v{id}").into()),
                resource: None,
            },
        );
    }
    listed.seal();
    assert_eq!(listed.get("a").unwrap().version.as_deref(), Some("va"));
    assert_eq!(listed.get("c").unwrap().version.as_deref(), Some("vc"));
    assert!(listed.get("d").is_none());
    let change = |id: &str| {
        crate::plan::Change::setting(
            &Agent {
                id: id.into(),
                email: format!("{id}@x.com"),
                external_id: None,
            },
            Some("1".into()),
        )
    };
    listed.retain_for(&[change("c"), change("a"), change("z")]);
    assert!(listed.get("b").is_none());
    assert_eq!(listed.get("a").unwrap().version.as_deref(), Some("va"));
    assert_eq!(listed.get("c").unwrap().version.as_deref(), Some("vc"));
}

#[test]
fn entries_that_share_a_hash_are_dropped() {
    let mut listed = ListedUsers::default();
    let version = |v: &str| Listed {
        version: Some(v.into()),
        resource: None,
    };
    listed.push("a", version("va"));
    let a = listed.hash("a");
    listed.entries.push((a ^ 1, version("x")));
    listed.entries.push((a ^ 1, version("y")));
    listed.seal();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed.get("a").unwrap().version.as_deref(), Some("va"));
}

#[test]
fn totals_may_be_strings_and_resources_absent() {
    let page: ListResponse = serde_json::from_str(r#"{"totalResults": "3"}"#).unwrap();
    assert_eq!((page.total_results, page.resources.len()), (3, 0));
    let page: ListResponse =
        serde_json::from_str(r#"{"totalResults": 0, "Resources": null}"#).unwrap();
    assert_eq!(page.total_results, 0);
    assert!(serde_json::from_str::<ListResponse>(r#"{"totalResults": "many"}"#).is_err());
    assert!(serde_json::from_str::<ListResponse>(r#"{"totalResults": -1}"#).is_err());
}
