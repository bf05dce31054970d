//! BambooHR `GET /api/gateway.php/{company}/v1/employees/directory`, as
//! documentation.bamboohr.com documents it: HTTP Basic with the API key as
//! the user name and any password, `{"fields": […], "employees": […]}` with
//! `id` (a string), `displayName`, `workEmail`, one answer for the whole
//! directory. Quirk: XML unless the request sends `Accept: application/json`.

use serde_json::{Value, json};

use super::common::{Resp, Server};
use super::{Recipe, assert_same_users, basic_user, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "bamboohr.toml",
    secrets: &[("BAMBOOHR_API_KEY", "b1a2m3b4o5o6h7r8api9key")],
    beside: None,
};

const EMPLOYEES: usize = 75;

fn employee(i: usize) -> Value {
    json!({
        "id": (4000 + i).to_string(),
        "displayName": format!("Agent {i}"),
        "firstName": "Agent",
        "lastName": format!("N{i}"),
        "jobTitle": "Support agent",
        // Some employees have no work email on file.
        "workEmail": if i % 15 == 4 { Value::Null } else { json!(format!("agent{i}@acme.com")) },
        "department": "Support",
    })
}

pub fn replica() -> Server {
    Server::start(|req| {
        if req.path() != "/api/gateway.php/acme/v1/employees/directory" {
            return Resp::status(404, "text/html", "<html>Not found</html>");
        }
        if basic_user(req).as_deref() != Some(RECIPE.secrets[0].1) {
            return Resp::status(401, "text/html", "<html>401 Unauthorized</html>");
        }
        let employees: Vec<Value> = (0..EMPLOYEES).map(employee).collect();
        let json_wanted = req
            .header("accept")
            .is_some_and(|a| a.contains("application/json"));
        if !json_wanted {
            let rows: String = employees
                .iter()
                .map(|e| format!("<employee id=\"{}\"/>", e["id"].as_str().unwrap()))
                .collect();
            return Resp::status(200, "text/xml", format!("<directory>{rows}</directory>"));
        }
        Resp::value(&json!({
            "fields": [
                {"id": "displayName", "type": "text", "name": "Display name"},
                {"id": "workEmail", "type": "email", "name": "Work Email"},
            ],
            "employees": employees,
        }))
    })
}

#[test]
fn bamboohr_reads_the_directory_as_json_with_the_key_as_user_name() {
    let server = replica();
    let job = RECIPE.pointed_at(&format!("{}/api/gateway.php/acme/v1", server.base), None);
    let expected: Vec<_> = (0..EMPLOYEES)
        .map(employee)
        .filter(|e| !e["workEmail"].is_null())
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("id"), s("workEmail"))
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    assert_eq!(server.request_count(), 1);
}
