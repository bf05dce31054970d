//! UKG Pro `GET /personnel/v1/person-details`, as developer.ukg.com documents
//! the Pro HCM REST API: HTTP Basic for the service account and the customer
//! API key in `US-Customer-Api-Key`, `page` and `per_Page` (default and most
//! 10,000), the page a bare array of person details (`employeeId`,
//! `companyId`, `emailAddress`, …). Quirk: both credentials on every request;
//! either one missing is a 401.

use serde_json::{Value, json};

use super::common::{Resp, Server};
use super::{Recipe, assert_same_users, basic, json_status, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "ukg-pro.toml",
    secrets: &[
        ("UKG_USER", "svc_agentsync"),
        ("UKG_PASSWORD", "ukg service password"),
        ("UKG_CUSTOMER_API_KEY", "A1B2C"),
    ],
    beside: None,
};

const PEOPLE: usize = 2345;

fn person(i: usize) -> Value {
    json!({
        "employeeId": format!("EE{:07}", 500 + i),
        "companyId": "C0MP1",
        "firstName": "Agent",
        "lastName": format!("N{i}"),
        "emailAddress": if i % 200 == 17 { json!("") } else { json!(format!("agent.n{i}@acme.com")) },
        "alternateEmailAddress": null,
    })
}

pub fn replica() -> Server {
    Server::start(|req| {
        if req.path() != "/personnel/v1/person-details" {
            return json_status(404, &json!({"message": "Not found"}));
        }
        let account = basic(RECIPE.secrets[0].1, RECIPE.secrets[1].1);
        if req.header("authorization") != Some(account.as_str())
            || req.header("us-customer-api-key") != Some(RECIPE.secrets[2].1)
        {
            return json_status(
                401,
                &json!({"message": "Authorization has been denied for this request."}),
            );
        }
        let page: usize = req
            .query("page")
            .map_or(Some(1), |p| p.parse().ok())
            .unwrap_or(0);
        let per_page: usize = req
            .query("per_Page")
            .map_or(Some(10_000), |p| p.parse().ok())
            .unwrap_or(0);
        if page == 0 || !(1..=10_000).contains(&per_page) {
            return json_status(400, &json!({"message": "Invalid paging parameters."}));
        }
        let people: Vec<Value> = (0..PEOPLE)
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(person)
            .collect();
        Resp::value(&Value::Array(people))
    })
}

#[test]
fn ukg_sends_the_account_and_the_customer_key_on_every_page() {
    let server = replica();
    let job = RECIPE.pointed_at(&server.base, None);
    let expected: Vec<_> = (0..PEOPLE)
        .map(person)
        .filter(|p| p["emailAddress"] != "")
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            (s("employeeId"), s("emailAddress"))
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    let mut pages: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query("page").unwrap())
        .collect();
    pages.sort();
    // Three pages of people, then the empty page that ends the listing.
    assert_eq!(pages, ["1", "2", "3", "4"]);
}
