//! Workday Report-as-a-Service: `GET /ccx/service/customreport2/{tenant}/
//! {owner}/{report}?format=json` with HTTP Basic (the integration system user
//! as `user@tenant`), the whole report in one answer as
//! `{"Report_Entry": [ … ]}` keyed by the report's column aliases.
//! Quirk: XML unless `format=json`.

use serde_json::{Value, json};

use super::common::{Resp, Server};
use super::{Recipe, assert_same_users, basic, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "workday-raas.toml",
    secrets: &[
        ("WORKDAY_USER", "ISU_agentsync@acme"),
        ("WORKDAY_PASSWORD", "workday isu password"),
    ],
    beside: None,
};

const WORKERS: usize = 3000;

fn entry(i: usize) -> Value {
    let mut e = json!({
        "Employee_ID": format!("{:06}", 21000 + i),
        "Worker": format!("Agent N{i}"),
    });
    // The other columns of a typical worker report.
    for column in 0..20 {
        e[format!("Column_{column:02}")] = json!(format!(
            "value of report column {column} for worker {i}, padded to width ........"
        ));
    }
    // A worker without a work email has no such key in the row.
    if i % 100 != 42 {
        e["Work_Email"] = json!(format!("agent.n{i}@acme.com"));
    }
    e
}

/// The report as JSON, made once.
fn report() -> String {
    let entries: Vec<Value> = (0..WORKERS).map(entry).collect();
    json!({"Report_Entry": entries}).to_string()
}

pub fn replica(report: String) -> Server {
    Server::start(move |req| {
        if req.path() != "/ccx/service/customreport2/acme/ISU_agentsync/Agent_Emails" {
            return Resp::status(404, "text/plain", "Not Found");
        }
        if req.header("authorization") != Some(&basic(RECIPE.secrets[0].1, RECIPE.secrets[1].1)) {
            return Resp::status(401, "text/plain", "Unauthorized");
        }
        if req.query("format").as_deref() != Some("json") {
            return Resp::status(
                200,
                "application/xml",
                "<wd:Report_Data xmlns:wd=\"urn:com.workday.report/Agent_Emails\"/>",
            );
        }
        Resp::json(report.clone())
    })
}

#[test]
fn workday_reads_the_whole_report_as_json_in_one_request() {
    let server = replica(report());
    let job = RECIPE.pointed_at(
        &format!("{}/ccx/service/customreport2/acme", server.base),
        None,
    );
    let expected: Vec<_> = (0..WORKERS)
        .map(entry)
        .filter(|e| e.get("Work_Email").is_some())
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("Employee_ID"), s("Work_Email"))
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    assert_eq!(server.request_count(), 1);
}
